package cli

import (
	"bufio"
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

// getNoHost sends an HTTP/1.0 GET of path without a Host header (an
// HAProxy httpchk, a load balancer's monitor) to the listener of u and
// returns the status.
func getNoHost(t *testing.T, u, path string) int {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A health check without a Host (HTTP/1.0: HAProxy's httpchk default)
// reads the probes of every listener and the metrics listener (review:
// the Host check on every path answered it 421); a browser always sends a
// Host, so nothing else of the broker or the proxy answers one without.
func TestProbesAnswerARequestWithoutHost(t *testing.T) {
	s := startServerWith(t, func(c *Config) {
		c.Metrics.Addr = "127.0.0.1:0"
		c.Broker.Hostnames = []string{"pam.example.com"}
		c.Proxy.Hostnames = []string{"pam-proxy.example.com"}
	})
	for _, tc := range []struct {
		name, url, path string
		served          bool
	}{
		{"broker", s.app.BrokerURL(), "/healthz", true},
		{"broker", s.app.BrokerURL(), "/readyz", true},
		{"broker", s.app.BrokerURL(), "/.well-known/jwks.json", false},
		{"broker", s.app.BrokerURL(), "/ui/", false},
		{"proxy", s.app.ProxyURL(), "/healthz", true},
		{"proxy", s.app.ProxyURL(), "/readyz", true},
		{"proxy", s.app.ProxyURL(), "/v1/models", false},
		{"metrics", s.app.MetricsURL(), "/healthz", true},
		{"metrics", s.app.MetricsURL(), "/readyz", true},
		{"metrics", s.app.MetricsURL(), "/metrics", true},
	} {
		code := getNoHost(t, tc.url, tc.path)
		if served := code != http.StatusMisdirectedRequest; served != tc.served {
			t.Errorf("%s %s without a Host: %d, want served=%v", tc.name, tc.path, code, tc.served)
		}
	}
}
