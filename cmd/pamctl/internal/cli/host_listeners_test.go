package cli

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
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

// sendOptionsStar sends "OPTIONS * HTTP/1.1" with Host host ("" sends an
// HTTP/1.0 request without one) to the listener of u and returns the
// status and body.
func sendOptionsStar(t *testing.T, u, host string) (int, string) {
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
	req := "OPTIONS * HTTP/1.0\r\n\r\n"
	if host != "" {
		req = "OPTIONS * HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// `OPTIONS *` (a request for the server itself, not a path) got Go's
// http.Server answer, 200 with an empty body, whatever the Host, on the
// broker, proxy and metrics listeners, while every path answered a
// foreign Host 421: a page rebound to a loopback listener learnt that a
// server answers there. It now meets each listener's Host check (421 to
// a foreign Host) and otherwise gets an answer that says nothing (400, no
// methods listed), as from the listener's mux; never Go's 200.
func TestOptionsStarMeetsTheHostCheck(t *testing.T) {
	s := startServerWith(t, func(c *Config) {
		c.Metrics.Addr = "127.0.0.1:0"
		c.Broker.Hostnames = []string{"pam.example.com"}
		c.Proxy.Hostnames = []string{"pam-proxy.example.com"}
		c.Metrics.Hostnames = []string{"pam-metrics.example.com"}
	})
	for _, l := range []struct {
		name, url, name1 string
		noHost           int // the answer to an HTTP/1.0 request without a Host
	}{
		{"broker", s.app.BrokerURL(), "pam.example.com", http.StatusMisdirectedRequest},
		{"proxy", s.app.ProxyURL(), "pam-proxy.example.com", http.StatusBadRequest},
		{"metrics", s.app.MetricsURL(), "pam-metrics.example.com", http.StatusBadRequest},
	} {
		for _, h := range []string{"rebound.attacker.example", "rebound.attacker.example:80", l.name1 + ".attacker.example"} {
			if code, body := sendOptionsStar(t, l.url, h); code != http.StatusMisdirectedRequest {
				t.Errorf("%s OPTIONS * with Host %q: %d %q, want 421", l.name, h, code, body)
			}
		}
		u, err := url.Parse(l.url)
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(u.Host)
		for _, h := range []string{"127.0.0.1:" + port, "localhost:" + port, l.name1} {
			if code, body := sendOptionsStar(t, l.url, h); code != http.StatusBadRequest || strings.TrimSpace(body) != "" {
				t.Errorf("%s OPTIONS * with Host %q: %d %q, want 400 saying nothing", l.name, h, code, body)
			}
		}
		if code, body := sendOptionsStar(t, l.url, ""); code != l.noHost {
			t.Errorf("%s OPTIONS * without a Host: %d %q, want %d", l.name, code, body, l.noHost)
		}
	}
}
