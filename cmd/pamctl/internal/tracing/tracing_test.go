package tracing

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/proxy/rules"
)

type verifier struct{}

func (verifier) Verify(raw string) (*token.Claims, error) {
	if raw != "good" {
		return nil, token.ErrInvalid
	}
	return &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice-subject", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Use: token.UseAccess, Scope: "model:gpt-4o", Req: "req_grant42"}, nil
}

type keys struct{}

func (keys) ProviderKey(context.Context, string) (string, error) { return "sk-upstream", nil }

type sink struct{}

func (sink) Append(context.Context, *audit.Event) error { return nil }

type holder struct{}

func (holder) Hold(context.Context, proxy.HoldRequest) (proxy.HoldDecision, error) {
	return proxy.HoldDecision{ID: "hold_1", Approved: true}, nil
}

const prompt = "the launch codes are swordfish-7781"

// setup runs a proxy with a Tracer over an in-memory exporter and an
// upstream that records the traceparent it got.
func setup(t *testing.T, rs []rules.Rule) (*tracetest.InMemoryExporter, http.Handler, func() string) {
	t.Helper()
	var mu sync.Mutex
	var got string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Get("Traceparent")
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, ev := range []string{
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"echo: ` + prompt + `"},"finish_reason":null}]}`,
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`,
			} {
				io.WriteString(w, "data: "+ev+"\n\n")
				w.(http.Flusher).Flush()
				time.Sleep(5 * time.Millisecond)
			}
			io.WriteString(w, "data: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"echo: `+prompt+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`)
	}))
	t.Cleanup(up.Close)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr := NewWithProvider(tp, tp.Shutdown)
	opts := proxy.Options{Verifier: verifier{}, Keys: keys{}, Audit: sink{}, Holds: holder{},
		Upstreams: []proxy.Upstream{{Name: "openai", URL: up.URL + "/v1"}}, Observer: tr, Logger: slog.New(slog.DiscardHandler)}
	if rs != nil {
		eng, err := rules.Compile(rs)
		if err != nil {
			t.Fatal(err)
		}
		opts.Rules = eng
	}
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return exp, p, func() string { mu.Lock(); defer mu.Unlock(); return got }
}

func call(t *testing.T, h http.Handler, tok, traceparent string) int {
	t.Helper()
	return callBody(t, h, tok, traceparent, `{"model":"gpt-4o","messages":[{"role":"user","content":"`+prompt+`"}]}`)
}

func callBody(t *testing.T, h http.Handler, tok, traceparent, body string) int {
	t.Helper()
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestSpanTreeAndPropagation(t *testing.T) {
	exp, h, upstreamTP := setup(t, []rules.Rule{{Name: "hold-codes", Literals: []string{"launch codes"}, Action: rules.RequireApproval,
		Approvers: rules.Approvers{Groups: []string{"security"}}}})
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	if code := call(t, h, "good", "00-"+clientTrace+"-00f067aa0ba902b7-01"); code != 200 {
		t.Fatalf("call: %d", code)
	}
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	root, ok := byName["pamctl.proxy chat"]
	if !ok {
		t.Fatalf("no call span in %v", names(spans))
	}
	// The client's traceparent is honoured: same trace, its span the parent.
	if root.SpanContext.TraceID().String() != clientTrace || root.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("call span %s parent %s: client traceparent not honoured", root.SpanContext.TraceID(), root.Parent.SpanID())
	}
	for _, stage := range []string{"auth", "rules", "hold", "upstream", "mask", "audit"} {
		s, ok := byName["pamctl."+stage]
		if !ok {
			t.Errorf("no %s span in %v", stage, names(spans))
			continue
		}
		if s.Parent.SpanID() != root.SpanContext.SpanID() || s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Errorf("%s span is not a child of the call span", stage)
		}
	}
	// The upstream got a traceparent of the same trace naming the upstream span.
	want := "00-" + clientTrace + "-" + byName["pamctl.upstream"].SpanContext.SpanID().String() + "-01"
	if got := upstreamTP(); got != want {
		t.Fatalf("upstream traceparent %q, want %q", got, want)
	}
	// No prompt or answer text, subject or grant in any span.
	for _, s := range spans {
		for _, kv := range s.Attributes {
			v := kv.Value.Emit()
			for _, bad := range []string{"swordfish", "launch codes", "alice-subject", "req_grant42", "sk-upstream"} {
				if strings.Contains(v, bad) || strings.Contains(s.Name, bad) {
					t.Errorf("span %s attribute %s carries %q", s.Name, kv.Key, bad)
				}
			}
		}
		for _, ev := range s.Events {
			if strings.Contains(ev.Name, "swordfish") {
				t.Errorf("span %s event %s carries the prompt", s.Name, ev.Name)
			}
		}
	}
	if attr(root, "gen_ai.request.model") != "gpt-4o" || attr(root, "pamctl.rule") != "hold-codes" {
		t.Errorf("call span attributes: %v", root.Attributes)
	}
}

// Without a client traceparent the call starts its own trace, and the
// upstream still gets one; a refused call has no upstream span.
func TestNewTraceAndRefusal(t *testing.T) {
	exp, h, upstreamTP := setup(t, nil)
	if code := call(t, h, "good", ""); code != 200 {
		t.Fatalf("call: %d", code)
	}
	spans := exp.GetSpans()
	var root tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "pamctl.proxy chat" {
			root = s
		}
	}
	if root.Parent.IsValid() || !root.SpanContext.IsValid() {
		t.Fatalf("call span should start a trace: %+v", root.Parent)
	}
	if tp := upstreamTP(); !strings.Contains(tp, root.SpanContext.TraceID().String()) {
		t.Fatalf("upstream traceparent %q", tp)
	}
	exp.Reset()
	if code := call(t, h, "bad", ""); code != 401 {
		t.Fatalf("bad token: %d", code)
	}
	for _, s := range exp.GetSpans() {
		if s.Name == "pamctl.upstream" {
			t.Fatal("a refused call has an upstream span")
		}
	}
	// call and auth (refusals without a token are audited per source and
	// minute, not per call).
	if n := len(exp.GetSpans()); n != 2 {
		t.Fatalf("refused call spans: %v", names(exp.GetSpans()))
	}
}

// A stream's upstream span lasts until the stream was read to its end and
// ends before the audit commit; it is not masked as a whole (no mask span).
func TestStreamSpans(t *testing.T) {
	exp, h, _ := setup(t, nil)
	if code := callBody(t, h, "good", "", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"`+prompt+`"}]}`); code != 200 {
		t.Fatalf("stream: %d", code)
	}
	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	up, audit, root := byName["pamctl.upstream"], byName["pamctl.audit"], byName["pamctl.proxy chat"]
	if !up.SpanContext.IsValid() || !audit.SpanContext.IsValid() || !root.SpanContext.IsValid() {
		t.Fatalf("spans: %v", names(exp.GetSpans()))
	}
	if _, ok := byName["pamctl.mask"]; ok {
		t.Error("a stream has a mask span")
	}
	if up.EndTime.Sub(up.StartTime) < 10*time.Millisecond {
		t.Errorf("upstream span %v: ended before the stream did", up.EndTime.Sub(up.StartTime))
	}
	if up.EndTime.After(audit.StartTime) || audit.EndTime.After(root.EndTime) {
		t.Errorf("upstream ends %v, audit %v..%v, call ends %v", up.EndTime, audit.StartTime, audit.EndTime, root.EndTime)
	}
	if len(up.Events) != 1 || up.Events[0].Name != "response headers" {
		t.Errorf("upstream events: %v", up.Events)
	}
	for _, s := range exp.GetSpans() {
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.Emit(), "swordfish") {
				t.Errorf("span %s carries the prompt", s.Name)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{OTLPEndpoint: "https://otel:4318", SampleRatio: 0.5}, ""},
		{Config{OTLPEndpoint: "http://otel:4318", Insecure: true, SampleRatio: 1}, ""},
		{Config{OTLPEndpoint: "http://otel:4318", SampleRatio: 1}, "plaintext"},
		{Config{OTLPEndpoint: "otel:4318", SampleRatio: 1}, "http(s) URL"},
		{Config{OTLPEndpoint: "https://u:p@otel:4318", SampleRatio: 1}, "credentials"},
		{Config{OTLPEndpoint: "https://otel:4318/base?api_key=X", SampleRatio: 1}, "query"},
		{Config{OTLPEndpoint: "https://otel:4318/base?", SampleRatio: 1}, "query"},
		{Config{OTLPEndpoint: "https://otel:4318/base#k=X", SampleRatio: 1}, "query or fragment"},
		{Config{OTLPEndpoint: "https://otel:4318/base/", SampleRatio: 1}, ""},
		{Config{OTLPEndpoint: "https://otel:4318", SampleRatio: 1.5}, "between 0 and 1"},
	} {
		err := c.cfg.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if _, err := New(context.Background(), Config{OTLPEndpoint: "http://otel:4318"}, "test", nil); err == nil || !errors.Is(err, err) {
		t.Fatal("New accepted a plaintext endpoint without insecure")
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attr(s tracetest.SpanStub, k string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == k {
			return kv.Value.Emit()
		}
	}
	return ""
}

// The provider New builds cuts every attribute to maxAttributeBytes: a
// span a client's input reaches cannot hold megabytes in the exporter's
// queue (red team: a 2 MB model name per call filled 800 MB).
func TestProviderBoundsAttributes(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(append(providerOptions(1, "test"), sdktrace.WithSyncer(exp))...)
	tr := NewWithProvider(tp, tp.Shutdown)
	ctx := tr.CallBegin(context.Background(), http.Header{})
	tr.CallEnd(ctx, &proxy.CallStats{Endpoint: "chat", Model: strings.Repeat("M", 2<<20), Status: 403, Code: "model_not_in_scope"})
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	for _, a := range spans[0].Attributes {
		if n := len(a.Value.Emit()); n > maxAttributeBytes {
			t.Errorf("attribute %s holds %d bytes", a.Key, n)
		}
		if a.Key == "gen_ai.request.model" && !strings.HasPrefix(a.Value.AsString(), "MMMM") {
			t.Errorf("model attribute %q", a.Value.AsString())
		}
	}
}

// A collector's token goes in OTEL_EXPORTER_OTLP_HEADERS (the URL may not
// carry one): the exporter New builds sends it, to <endpoint>/v1/traces.
func TestExporterSendsHeadersFromTheEnvironment(t *testing.T) {
	got := make(chan *http.Request, 4)
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r
	}))
	defer col.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer collector-token")
	tr, err := New(context.Background(), Config{OTLPEndpoint: col.URL + "/base", Insecure: true, SampleRatio: 1}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := tr.CallBegin(context.Background(), http.Header{})
	tr.CallEnd(ctx, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o", Status: 200})
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.URL.Path != "/base/v1/traces" || r.Header.Get("Authorization") != "Bearer collector-token" {
			t.Fatalf("collector got %s with Authorization %q", r.URL.Path, r.Header.Get("Authorization"))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no export reached the collector")
	}
}
