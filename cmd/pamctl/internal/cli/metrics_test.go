package cli

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics and returns every sample as name{k="v",...}
// (labels sorted) -> value; histograms as their _count.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+`"`+l.GetValue()+`"`)
			}
			sort.Strings(ls)
			key := name + "{" + strings.Join(ls, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func proxyCall(t *testing.T, s *testServer, tok, model string) int {
	t.Helper()
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"my mail is alice@example.com"}]}`
	req, _ := http.NewRequest("POST", s.app.ProxyURL()+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// A known set of calls leaves exactly these counts on /metrics.
func TestMetricsCountKnownCalls(t *testing.T) {
	s := startServerWith(t, func(c *Config) { c.Metrics.Addr = "127.0.0.1:0" })
	if s.app.MetricsURL() == "" {
		t.Fatal("metrics listener not bound")
	}
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--reason", "eval", "--nowait", "-o", "json").must(t, "request")
	id := between(r.out, `"id": "`, `"`)
	if id == "" {
		id = between(r.out, `"id":"`, `"`)
	}
	s.as(t, "bob", "", "approve", id, "--reason", "ok").must(t, "approve")
	tok := strings.TrimSpace(s.as(t, "alice", "", "token").must(t, "token").out)

	for range 2 {
		if code := proxyCall(t, s, tok, "gpt-4o"); code != 200 {
			t.Fatalf("call: %d", code)
		}
	}
	if code := proxyCall(t, s, tok, "o1-secret-model"); code != 403 {
		t.Fatalf("out-of-scope call: %d", code)
	}
	if code := proxyCall(t, s, "not-a-token", "gpt-4o"); code != 401 {
		t.Fatalf("bad token: %d", code)
	}
	s.as(t, "alice", "", "revoke", id).must(t, "revoke")
	if code := proxyCall(t, s, tok, "gpt-4o"); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}

	got := scrape(t, s.app.MetricsURL())
	want := map[string]float64{
		`pamctl_proxy_requests_total{decision="allow",endpoint="chat",model="gpt-4o",status="200"}`: 2,
		// Models outside the policies' scopes are one bounded label value.
		`pamctl_proxy_requests_total{decision="deny",endpoint="chat",model="other",status="403"}`: 1,
		// Refused before the body was read: no model yet.
		`pamctl_proxy_requests_total{decision="deny",endpoint="other",model="none",status="401"}`: 2,
		`pamctl_proxy_request_duration_seconds{endpoint="chat"}`:                                  3,
		`pamctl_proxy_overhead_seconds{endpoint="chat"}`:                                          3,
		`pamctl_proxy_upstream_duration_seconds{upstream="openai"}`:                               2,
		`pamctl_proxy_time_to_first_byte_seconds{upstream="openai"}`:                              2,
		`pamctl_proxy_held_calls{}`:                                                               0,
		`pamctl_requests_total{state="created"}`:                                                  1,
		`pamctl_requests_total{state="approved"}`:                                                 1,
		`pamctl_tokens_issued_total{}`:                                                            1,
		`pamctl_revocations_total{kind="grant"}`:                                                  1,
		`pamctl_audit_queue_depth{}`:                                                              0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	// Token checks: 4 calls with the real token before it was revoked
	// and one after (5 valid checks, all but the first from the cache),
	// and one invalid.
	valid := got[`pamctl_proxy_token_verifications_total{cached="false",result="valid"}`] + got[`pamctl_proxy_token_verifications_total{cached="true",result="valid"}`]
	if valid != 4 || got[`pamctl_proxy_token_verifications_total{cached="true",result="valid"}`] != 3 ||
		got[`pamctl_proxy_token_verifications_total{cached="false",result="invalid"}`] != 1 {
		t.Errorf("token verifications: valid %v, %v", valid, got)
	}
	if got[`pamctl_proxy_tokens_total{direction="in",model="gpt-4o"}`] <= 0 || got[`pamctl_proxy_tokens_total{direction="out",model="gpt-4o"}`] <= 0 {
		t.Errorf("tokens by model missing")
	}
	if got[`pamctl_audit_append_duration_seconds{}`] < 7 || got[`pamctl_audit_commit_batch_events{}`] < 1 {
		t.Errorf("audit append metrics: %v %v", got[`pamctl_audit_append_duration_seconds{}`], got[`pamctl_audit_commit_batch_events{}`])
	}
	// Bounded labels: no subject, grant or request id anywhere.
	for k := range got {
		for _, bad := range []string{id, "alice", "bob", "o1-secret-model"} {
			if strings.Contains(k, bad) {
				t.Errorf("label carries %q: %s", bad, k)
			}
		}
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}
