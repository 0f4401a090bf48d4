package tracing

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pamctl/pamctl/proxy"
)

// A caller without a valid access token cannot make pamctl adopt its
// trace or its sampling decision: with sample_ratio 0, a flood of refused
// calls carrying "sampled" traceparents records nothing (it would fill the
// exporter's queue, evicting the spans of real calls, and bill the
// collector 1/ratio times over), and at any ratio a refused call's spans
// start their own trace instead of joining one the caller named. A caller
// with a valid token still joins its trace and sampling decision.
func TestOnlyAuthenticatedCallersJoinTheirTrace(t *testing.T) {
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tp := "00-" + clientTrace + "-00f067aa0ba902b7-01"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`))
	}))
	defer up.Close()
	for _, ratio := range []float64{0, 1} {
		exp := tracetest.NewInMemoryExporter()
		prov := sdktrace.NewTracerProvider(append(providerOptions(ratio, "test"), sdktrace.WithSyncer(exp))...)
		p, err := proxy.New(proxy.Options{Verifier: verifier{}, Keys: keys{}, Audit: sink{}, Holds: holder{},
			Upstreams: []proxy.Upstream{{Name: "openai", URL: up.URL + "/v1"}}, Observer: NewWithProvider(prov, prov.Shutdown),
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{"bad", ""} {
			if code := call(t, p, tok, tp); code != 401 {
				t.Fatalf("token %q: %d", tok, code)
			}
		}
		for _, s := range exp.GetSpans() {
			if ratio == 0 {
				t.Errorf("ratio 0: a refused call with a sampled traceparent recorded %s", s.Name)
			}
			if s.SpanContext.TraceID().String() == clientTrace || s.Parent.IsRemote() {
				t.Errorf("ratio %v: refused call span %s joined the caller's trace", ratio, s.Name)
			}
		}
		exp.Reset()
		if code := call(t, p, "good", tp); code != 200 {
			t.Fatalf("good token: %d", code)
		}
		joined := 0
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() == clientTrace {
				joined++
			}
		}
		if joined < 3 {
			t.Errorf("ratio %v: an authenticated call with a sampled traceparent recorded %d spans in its trace: %v", ratio, joined, names(exp.GetSpans()))
		}
		// A valid token refused for its scope (403) is still a caller
		// pamctl knows: it joins its trace.
		exp.Reset()
		if code := callBody(t, p, "good", tp, `{"model":"gpt-5","messages":[{"role":"user","content":"x"}]}`); code != 403 {
			t.Fatalf("out of scope: %d", code)
		}
		if spans := exp.GetSpans(); len(spans) == 0 || spans[len(spans)-1].SpanContext.TraceID().String() != clientTrace {
			t.Errorf("ratio %v: a 403 to a valid token did not join the caller's trace: %v", ratio, names(spans))
		}
		prov.Shutdown(t.Context())
	}
}
