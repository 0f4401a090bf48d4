package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/link"
)

// A proxy-role process serves its own /metrics: its calls, the spool it
// ships from and its gate, with the same bounded labels as the broker's.
func TestProxyRoleServesMetrics(t *testing.T) {
	dir := t.TempDir()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	defer up.Close()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", up.URL)
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	if _, err := admin.VaultSet(context.Background(), "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}
	p := startRoleProxy(t, b.ts.app.BrokerURL(), filepath.Join(dir, "proxy"), mintIDToken(t, b, dir, "proxy-a"), 2*time.Second,
		func(c *Config) { c.Metrics.Addr = "127.0.0.1:0" })
	if p.app.MetricsURL() == "" {
		t.Fatal("the proxy role bound no metrics listener")
	}
	waitUntil(t, "enrollment", 15*time.Second, func() bool { code, _ := p.app.link.Refusal(); return code == "" })
	// Its metrics listener answers the probes too, with the proxy port's
	// readiness (the broker link's included).
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(p.app.MetricsURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
			t.Fatalf("metrics %s: %d %q", path, resp.StatusCode, b)
		}
	}
	// Both listeners check the Host of the probes and /metrics as the
	// proxy checks a call's: a page rebound to them reads nothing.
	for _, u := range []string{p.app.MetricsURL() + "/healthz", p.app.MetricsURL() + "/readyz", p.app.MetricsURL() + "/metrics",
		p.app.ProxyURL() + "/healthz", p.app.ProxyURL() + "/readyz"} {
		if code := getHost(t, u, "rebound.attacker.example"); code != http.StatusMisdirectedRequest {
			t.Errorf("%s with a foreign Host: %d, want 421", u, code)
		}
		if code := getHost(t, u, "10.0.0.7"); code != http.StatusOK {
			t.Errorf("%s by IP (the kubelet's probe): %d", u, code)
		}
	}
	// And `OPTIONS *` meets the same check (Go's http.Server answered it
	// 200 to any Host): 421 to a foreign Host, 400 saying nothing by IP.
	for _, u := range []string{p.app.MetricsURL(), p.app.ProxyURL()} {
		if code, body := sendOptionsStar(t, u, "rebound.attacker.example"); code != http.StatusMisdirectedRequest {
			t.Errorf("%s OPTIONS * with a foreign Host: %d %q, want 421", u, code, body)
		}
		if code, body := sendOptionsStar(t, u, "10.0.0.7"); code != http.StatusBadRequest || strings.TrimSpace(body) != "" {
			t.Errorf("%s OPTIONS * by IP: %d %q, want 400 saying nothing", u, code, body)
		}
	}

	b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	r := b.ts.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--reason", "metrics", "-o", "json").must(t, "request")
	var req map[string]any
	json.Unmarshal([]byte(r.out), &req)
	id, _ := req["id"].(string)
	tok := strings.TrimSpace(b.ts.as(t, "alice", "", "token", id).must(t, "token").out)
	for range 3 {
		if code, body, _ := p.call(t, tok); code != http.StatusOK {
			t.Fatalf("call: %d %s", code, body)
		}
	}
	if code, _, _ := p.call(t, "not-a-token"); code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", code)
	}

	got := scrape(t, p.app.MetricsURL())
	want := map[string]float64{
		`pamctl_proxy_requests_total{decision="allow",endpoint="chat",model="gpt-4o",status="200"}`: 3,
		`pamctl_proxy_requests_total{decision="deny",endpoint="other",model="none",status="401"}`:   1,
		`pamctl_proxy_time_to_first_byte_seconds{upstream="openai"}`:                                3,
		`pamctl_audit_events_total{type="proxy.call"}`:                                              3,
		`pamctl_proxy_link_ready{}`:                             1,
		`pamctl_proxy_link_refusing{code="proxy_not_enrolled"}`: 0,
		`pamctl_proxy_link_refusing{code="audit_spool_full"}`:   0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got[`pamctl_proxy_spool_bytes{}`]; !ok {
		t.Error("pamctl_proxy_spool_bytes missing")
	}
	// The broker's own series have no meaning here and are absent.
	for k := range got {
		if strings.HasPrefix(k, "pamctl_audit_queue_depth") || strings.HasPrefix(k, "pamctl_proxies_enrolled") {
			t.Errorf("proxy role exports the broker's %s", k)
		}
		if strings.Contains(k, "alice") || strings.Contains(k, id) {
			t.Errorf("unbounded label: %s", k)
		}
	}

	// The broker's unauthenticated /metrics names the proxy by its
	// enrollment's fingerprint, never by the id.
	eid := p.app.link.Enrollment().ID
	ps := b.ts.app.proxyStatus()
	if len(ps) != 1 || ps[0].Label != link.Fingerprint(eid) || strings.Contains(ps[0].Label, eid) {
		t.Errorf("broker metrics label the proxy %+v; want the fingerprint %s of enrollment %s", ps, link.Fingerprint(eid), eid)
	}

	// The gate's reason shows while it refuses: stop the broker and the
	// revocation stream goes stale.
	b.ts.stop()
	p2 := p.app
	waitUntil(t, "the gate to refuse", 15*time.Second, func() bool { code, _ := p2.link.Refusal(); return code != "" })
	got = scrape(t, p.app.MetricsURL())
	if got[`pamctl_proxy_link_ready{}`] != 0 {
		t.Errorf("link_ready = %v while the gate refuses", got[`pamctl_proxy_link_ready{}`])
	}
	code, _ := p2.link.Refusal()
	if got[`pamctl_proxy_link_refusing{code="`+code+`"}`] != 1 {
		t.Errorf("refusing{code=%q} not 1: %v", code, got)
	}
}
