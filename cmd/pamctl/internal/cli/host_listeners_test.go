package cli

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
)

// getHost GETs u with Host host and returns the status.
func getHost(t *testing.T, u, host string) int {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Every listener applies its Host check to all it serves, the probes
// included (review: the broker's /healthz answered 421 to a foreign Host
// while its /readyz, the proxy's probes and the whole metrics listener
// answered any Host, so a web page rebound to a loopback listener read
// /readyz and /metrics). An IP literal (the kubelet's probes and
// Prometheus' scrapes by pod IP), localhost and the configured names pass.
func TestListenersCheckTheHostOfEveryPath(t *testing.T) {
	s := startServerWith(t, func(c *Config) {
		c.Metrics.Addr = "127.0.0.1:0"
		c.Broker.Hostnames = []string{"pam.example.com"}
		c.Proxy.Hostnames = []string{"pam-proxy.example.com"}
		c.Metrics.Hostnames = []string{"pam-metrics.example.com"}
	})
	port := func(u string) string {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(p.Host)
		return port
	}
	for _, l := range []struct {
		name  string
		url   string
		paths []string
		names []string // configured names it answers to
	}{
		{"broker", s.app.BrokerURL(), []string{"/healthz", "/readyz", "/.well-known/jwks.json"}, []string{"pam.example.com"}},
		{"proxy", s.app.ProxyURL(), []string{"/healthz", "/readyz"}, []string{"pam-proxy.example.com"}},
		{"metrics", s.app.MetricsURL(), []string{"/healthz", "/readyz", "/metrics"}, []string{"pam-metrics.example.com", "pam.example.com", "pam-proxy.example.com"}},
	} {
		p := port(l.url)
		for _, path := range l.paths {
			for _, h := range []string{"rebound.attacker.example", "rebound.attacker.example:" + p, "localhost:" + p + ".attacker.example", "pam.example.com.attacker.example"} {
				if code := getHost(t, l.url+path, h); code != http.StatusMisdirectedRequest {
					t.Errorf("%s %s with Host %q: %d, want 421", l.name, path, h, code)
				}
			}
			ok := append([]string{"127.0.0.1:" + p, "10.1.2.3:" + p, "[::1]:" + p, "localhost:" + p}, l.names...)
			for _, h := range ok {
				if code := getHost(t, l.url+path, h); code == http.StatusMisdirectedRequest {
					t.Errorf("%s %s with Host %q: 421", l.name, path, h)
				}
			}
		}
	}
}
