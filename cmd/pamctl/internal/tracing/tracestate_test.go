package tracing

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pamctl/pamctl/proxy"
)

// With tracing on, the client's tracestate never reaches the upstream.
// The header allowlist drops it, but the call span is the child of the
// client's traceparent and would inherit its TraceState, which Forward
// injects: an agent would choose a header's content upstream (up to 32
// members of 256 bytes, past the forwarded headers' bound). The trace is
// still joined: the upstream's traceparent carries the client's trace id.
func TestClientTracestateNotForwarded(t *testing.T) {
	var mu sync.Mutex
	var got, gotParent string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Get("Tracestate")
		gotParent = r.Header.Get("Traceparent")
		mu.Unlock()
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer up.Close()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	tr := NewWithProvider(tp, tp.Shutdown)
	p, err := proxy.New(proxy.Options{Verifier: verifier{}, Keys: keys{}, Audit: sink{}, Holds: holder{},
		Upstreams: []proxy.Upstream{{Name: "openai", URL: up.URL + "/v1"}}, Observer: tr, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer good")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req.Header.Set("Tracestate", "gw=route-to-gpt-4-turbo,acct=other-project")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != "" {
		t.Errorf("the upstream got the client's tracestate %q", got)
	}
	if !strings.HasPrefix(gotParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
		t.Errorf("the upstream's traceparent %q is not in the client's trace", gotParent)
	}
}
