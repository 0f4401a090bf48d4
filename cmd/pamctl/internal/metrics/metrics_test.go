package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/proxy"
)

func cycle(m *Metrics, st *proxy.CallStats) {
	ctx := m.CallBegin(context.Background(), http.Header{})
	m.StageBegin(ctx, proxy.StageAuth)
	m.StageEnd(ctx, proxy.StageAuth)
	m.StageBegin(ctx, proxy.StageHold)
	m.StageEnd(ctx, proxy.StageHold)
	m.StageBegin(ctx, proxy.StageUpstream)
	m.FirstByte(ctx)
	m.StageBegin(ctx, proxy.StageAudit)
	m.StageEnd(ctx, proxy.StageAudit)
	m.CallEnd(ctx, st)
}

// Model labels stay bounded, holds are counted and limit codes become
// rejections; a hold the call never ended still leaves the gauge at 0.
func TestObserverLabelsAndHolds(t *testing.T) {
	m := New(Options{Models: []string{"gpt-4o", "gpt-*"}})
	cycle(m, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o", Status: 200, Rule: "hold-codes", Decision: "allow",
		HasUsage: true, TokensIn: 5, TokensOut: 7, MaskedOut: map[string]int{"EMAIL": 2}})
	cycle(m, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o-mini", Status: 429, Decision: "deny", Code: proxy.CodeRateLimitExceeded})
	ctx := m.CallBegin(context.Background(), nil)
	m.StageBegin(ctx, proxy.StageHold)
	if g := testutil.ToFloat64(m.holdPending); g != 1 {
		t.Fatalf("held calls %v, want 1", g)
	}
	m.CallEnd(ctx, &proxy.CallStats{Endpoint: "chat", Status: 499, Code: proxy.CodeClientClosed})
	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{testutil.ToFloat64(m.requests.WithLabelValues("chat", "gpt-4o", "200", "allow")), 1, "allowed gpt-4o"},
		{testutil.ToFloat64(m.requests.WithLabelValues("chat", OtherModel, "429", "deny")), 1, "unlisted model as other"},
		{testutil.ToFloat64(m.requests.WithLabelValues("chat", "none", "499", "error")), 1, "error before a decision"},
		{testutil.ToFloat64(m.tokens.WithLabelValues("gpt-4o", "in")), 5, "tokens in"},
		{testutil.ToFloat64(m.tokens.WithLabelValues("gpt-4o", "out")), 7, "tokens out"},
		{testutil.ToFloat64(m.masked.WithLabelValues("EMAIL", "response")), 2, "masked"},
		{testutil.ToFloat64(m.rules.WithLabelValues("hold-codes", "allow")), 1, "rule decision"},
		{testutil.ToFloat64(m.limits.WithLabelValues(proxy.CodeRateLimitExceeded)), 1, "limit rejection"},
		{testutil.ToFloat64(m.holdPending), 0, "held calls after the end"},
		{float64(testutil.CollectAndCount(m.holdSeconds)), 1, "hold histogram"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.requests); n != 3 {
		t.Errorf("%d request series, want 3", n)
	}
	// A reload that names a new model gives it its own label.
	m.SetModels([]string{"gpt-4o-mini"})
	cycle(m, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o-mini", Status: 200})
	cycle(m, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o", Status: 200})
	if a, b := testutil.ToFloat64(m.requests.WithLabelValues("chat", "gpt-4o-mini", "200", "allow")), testutil.ToFloat64(m.requests.WithLabelValues("chat", OtherModel, "200", "allow")); a != 1 || b != 1 {
		t.Errorf("after SetModels: gpt-4o-mini %v, other %v; want 1 and 1", a, b)
	}
}

// BenchmarkObserver is the metrics observer's cost per proxied call.
func BenchmarkObserver(b *testing.B) {
	m := New(Options{Models: []string{"gpt-4o"}})
	st := &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o", Upstream: "openai", Status: 200, HasUsage: true, TokensIn: 5, TokensOut: 7}
	b.ReportAllocs()
	for b.Loop() {
		cycle(m, st)
	}
}

// The dashboard and docs/operations.md use exactly the metric names the
// registry has: a renamed metric cannot leave a blank panel behind.
func TestDashboardAndDocsNameRealMetrics(t *testing.T) {
	m := New(Options{Sinks: func() []auditsink.Status { return []auditsink.Status{{Name: "siem", Type: "http", Lag: 3}} },
		QueueDepth: func() int { return 0 },
		Proxies: func() []ProxyStatus {
			return []ProxyStatus{{Label: "prx_1", State: "live", LastContact: time.Unix(1700000000, 0)}}
		},
		// A proxy-role process's series (a broker has none), documented
		// in the same table.
		Link:        func() LinkStatus { return LinkStatus{Refusal: "revocations_stale", SpoolBytes: 42} },
		RecordKinds: []string{"requests", "other"}})
	cycle(m, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o", Status: 429, Rule: "r", Decision: "deny", Code: proxy.CodeRateLimitExceeded,
		HasUsage: true, MaskedIn: map[string]int{"EMAIL": 1}})
	m.TokenVerified(true, true)
	m.Appended(&audit.Event{Type: audit.TypeGrantRevoked}, time.Millisecond, nil)
	m.Appended(&audit.Event{Type: audit.TypeRequestCreated}, time.Millisecond, errors.New("x"))
	m.Appended(&audit.Event{Type: audit.TypeRequestApproved}, time.Millisecond, nil)
	m.Appended(&audit.Event{Type: audit.TypeTokenIssued}, time.Millisecond, nil)
	m.Committed(3)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "pamctl_") {
			have[f.GetName()] = true
		}
	}
	if len(have) < 20 {
		t.Fatalf("only %d pamctl_ metrics gathered: %v", len(have), have)
	}
	name := regexp.MustCompile(`pamctl_[a-z_]+`)
	for _, file := range []string{"../../../../docs/grafana/pamctl.json", "../../../../docs/operations.md"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, n := range name.FindAllString(string(b), -1) {
			base := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suf); ok && have[b] {
					base = b
				}
			}
			used[base] = true
			if !have[base] && base != "pamctl_" {
				t.Errorf("%s names %s, which pamctl does not export", file, n)
			}
		}
		if strings.HasSuffix(file, ".md") {
			for n := range have {
				if !used[n] {
					t.Errorf("%s does not document %s", file, n)
				}
			}
		}
	}
}

// The enrolled proxies are counted by state; only live ones report their
// last contact, labelled by the label they are given (one per proxy, never
// a subject).
func TestProxiesEnrolled(t *testing.T) {
	m := New(Options{Proxies: func() []ProxyStatus {
		return []ProxyStatus{
			{Label: "prx_a", State: "live", LastContact: time.Unix(1700000000, 0)},
			{Label: "prx_b", State: "live", LastContact: time.Unix(1700000100, 0)},
			{Label: "prx_c", State: "revoked", LastContact: time.Unix(1600000000, 0)},
		}
	}})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = mt.GetGauge().GetValue()
		}
	}
	for k, want := range map[string]float64{
		"pamctl_proxies_enrolled/live": 2, "pamctl_proxies_enrolled/revoked": 1, "pamctl_proxies_enrolled/expired": 0,
		"pamctl_proxy_last_contact_timestamp_seconds/prx_a": 1700000000,
		"pamctl_proxy_last_contact_timestamp_seconds/prx_b": 1700000100,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if _, ok := got["pamctl_proxy_last_contact_timestamp_seconds/prx_c"]; ok {
		t.Error("a revoked proxy reports its last contact")
	}
}

// A series keeps its labels for as long as the process runs, so a model
// label is the config's own string, never the call's: that one may be a
// slice of the call's whole body, which the series would then pin.
func TestModelLabelIsTheConfigsString(t *testing.T) {
	m := New(Options{Models: []string{"gpt-4o"}})
	body := `{"model":"gpt-4o","messages":[` + strings.Repeat(" ", 1<<20) + `]}`
	name := body[10:16]
	if label := m.model(name); label != name || unsafe.StringData(label) == unsafe.StringData(name) {
		t.Fatalf("label %q shares the call's bytes (or differs from %q)", label, name)
	}
}

// The forged-record counter exports every kind it is given at 0, and
// counts a kind outside them as the last ("other"): its label stays bounded
// whatever a caller passes.
func TestRecordForgedKindsAreBounded(t *testing.T) {
	m := New(Options{RecordKinds: []string{"requests", "sessions", "other"}})
	m.RecordForged("sessions")
	m.RecordForged("requests/req_1")
	m.RecordForged("x\"y")
	got := map[string]float64{}
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pamctl_store_forged_records_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"requests": 0, "sessions": 1, "other": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
}
