package cli

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestProxyAnswersOnlyToItsNames: a proxy on loopback refuses a Host that
// is not one of its loopback names (a DNS-rebound page), answers to the
// ones it has and to proxy.hostnames, and /healthz is served once, by the
// listener.
func TestProxyAnswersOnlyToItsNames(t *testing.T) {
	s := startServerWith(t, func(c *Config) { c.Proxy.Hostnames = []string{"pam.internal"} })
	base := s.app.ProxyURL()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	get := func(path, host string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port, "pam.internal", "pam.internal:" + port} {
		if code, b := get("/v1/models", host); code != 401 {
			t.Fatalf("host %s: %d %s", host, code, b)
		}
	}
	for _, host := range []string{"rebind.attacker.example:" + port, "localhost:1"} {
		if code, b := get("/v1/models", host); code != http.StatusMisdirectedRequest || !strings.Contains(b, "host_not_allowed") {
			t.Fatalf("host %s: %d %s", host, code, b)
		}
	}
	if code, b := get("/healthz", "127.0.0.1:"+port); code != 200 || b != "ok\n" {
		t.Fatalf("healthz: %d %q", code, b)
	}
}
