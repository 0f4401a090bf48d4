package metrics

import (
	"context"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

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
