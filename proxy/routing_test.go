package proxy

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

func twoUpstreams(t *testing.T) (*harness, *fakeUpstream) {
	azure := newFakeUpstream(t, "azure")
	h := newHarness(t, func(o *Options) {
		o.Upstreams = append(o.Upstreams, Upstream{Name: "azure", URL: azure.srv.URL + "/v1", KeyName: "azure", Organization: "org-pamctl", Project: "proj-agents"})
	})
	return h, azure
}

func TestModelPrefixRoutesToUpstream(t *testing.T) {
	h, azure := twoUpstreams(t)
	tok := h.mint(grant{scope: "model:azure/gpt-4o", req: "req_az"})

	res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"azure/gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
		"OpenAI-Organization", "org-of-the-client")
	if res.StatusCode != 200 || !strings.Contains(string(b), "Hello from azure") {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	if h.up.count() != 0 || azure.count() != 1 {
		t.Fatalf("routed to openai %d times, azure %d times", h.up.count(), azure.count())
	}
	got := azure.requests()[0]
	var sent struct {
		Model    string            `json:"model"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(got.Body, &sent); err != nil || sent.Model != "gpt-4o" || len(sent.Messages) != 1 {
		t.Fatalf("azure got body %s", got.Body)
	}
	if got.Header.Get("OpenAI-Organization") != "org-pamctl" || got.Header.Get("OpenAI-Project") != "proj-agents" {
		t.Fatalf("upstream org/project headers: %v", got.Header)
	}
	ev := h.sink.last(t)
	if ev.Model != "gpt-4o" || ev.Target != "azure" || ev.Details["client_model"] != "azure/gpt-4o" {
		t.Fatalf("audit event %+v", ev)
	}

	// The qualified scope does not cover the default upstream's gpt-4o.
	res, b = h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 403 || apiErr(t, b).Code != CodeModelNotInScope {
		t.Fatalf("unqualified model with a qualified scope: %d %s", res.StatusCode, b)
	}
}

func TestModelsListIsFilteredToScope(t *testing.T) {
	h, azure := twoUpstreams(t)
	tok := h.mint(grant{scope: "model:gpt-4o* model:azure/o3 model:ft:gpt-4o:acme::x1 endpoint:/v1/audio/*"})
	res, b := h.do("GET", "/v1/models", tok, "")
	if res.StatusCode != 200 {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	var list modelList
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	// gpt-4o* covers both gpt-4o models on every upstream; azure/o3 is named
	// exactly; the fine-tuned model is in no upstream's list but is named
	// exactly in the scope, so it is listed too.
	want := []string{"azure/gpt-4o", "azure/gpt-4o-mini", "azure/o3", "ft:gpt-4o:acme::x1", "gpt-4o", "gpt-4o-mini"}
	if list.Object != "list" || !slices.Equal(ids, want) {
		t.Fatalf("models %v, want %v", ids, want)
	}
	for _, up := range []*fakeUpstream{h.up, azure} {
		if r := up.requests(); len(r) != 1 || r[0].Path != "/v1/models" || r[0].Header.Get("Authorization") != "Bearer "+vaultedKey {
			t.Fatalf("upstream %s model list request: %+v", up.name, r)
		}
	}
	if ev := h.sink.last(t); ev.Response != "6 models" || ev.Status != 200 {
		t.Fatalf("audit event %+v", ev)
	}
}

func TestRetrieveModelInScope(t *testing.T) {
	h, azure := twoUpstreams(t)
	azure.set(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, `{"id":"`+strings.TrimPrefix(r.URL.Path, "/v1/models/")+`","object":"model","created":1,"owned_by":"azure"}`)
	})
	tok := h.mint(grant{scope: "model:azure/gpt-4o"})
	res, b := h.do("GET", "/v1/models/azure/gpt-4o", tok, "")
	if res.StatusCode != 200 || !strings.Contains(string(b), `"id":"gpt-4o"`) {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	if r := azure.requests(); len(r) != 1 || r[0].Path != "/v1/models/gpt-4o" {
		t.Fatalf("azure got %+v", r)
	}
	res, b = h.do("GET", "/v1/models/o3", tok, "")
	if res.StatusCode != 403 || apiErr(t, b).Code != CodeModelNotInScope {
		t.Fatalf("model outside scope: %d %s", res.StatusCode, b)
	}
}

// TestEndpointScopeForwardsOtherPaths: an endpoint: scope opens a path
// beyond the default set; its (binary) answer passes through unchanged and
// is audited.
func TestEndpointScopeForwardsOtherPaths(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/*", req: "req_audio"})
	res, b := h.do("POST", "/v1/audio/speech?format=mp3", tok, `{"model":"tts-1","input":"hello","voice":"alloy"}`)
	if res.StatusCode != 200 || len(b) != 100000 || res.Header.Get("Content-Type") != "audio/mpeg" {
		t.Fatalf("got %d, %d bytes, %v", res.StatusCode, len(b), res.Header)
	}
	r := h.checkForwarded("/v1/audio/speech")
	if !strings.Contains(string(r.Body), `"tts-1"`) {
		t.Fatalf("upstream body %s", r.Body)
	}
	ev := h.sink.last(t)
	if ev.Status != 200 || ev.Endpoint != "POST /v1/audio/speech" || ev.Decision != "allow" || ev.Reasons[0] != "scope endpoint:/v1/audio/speech" {
		t.Fatalf("audit event %+v", ev)
	}
	// A JSON answer of such an endpoint is buffered and its usage counted.
	res, b = h.do("POST", "/v1/audio/transcriptions", tok, `{"model":"gpt-4o-transcribe"}`)
	if res.StatusCode != 200 || !strings.Contains(string(b), `"text":"hello"`) {
		t.Fatalf("transcription: %d %s", res.StatusCode, b)
	}
	if ev := h.sink.last(t); ev.Usage == nil || ev.Usage.TotalTokens != 11 || ev.Usage.InputTokens != 9 {
		t.Fatalf("audit event %+v", ev)
	}
	// A path the scope does not name stays closed.
	res, b = h.do("POST", "/v1/images/generations", tok, `{"model":"dall-e-3","prompt":"x"}`)
	if res.StatusCode != 403 || apiErr(t, b).Code != CodeEndpointNotAllowed {
		t.Fatalf("images: %d %s", res.StatusCode, b)
	}
}

func TestTraceIngest(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o traces:write", req: "req_trace"})
	batch := `{"data":[
		{"object":"trace","id":"trace_0123456789abcdef0123456789abcdef","workflow_name":"Agent workflow","group_id":null,"metadata":null},
		{"object":"trace.span","id":"span_1","trace_id":"trace_0123456789abcdef0123456789abcdef","parent_id":null,
		 "started_at":"2026-11-25T12:00:00Z","ended_at":"2026-11-25T12:00:01Z",
		 "span_data":{"type":"generation","model":"gpt-4o","input":[{"role":"user","content":"hi"}],"output":[]},"error":null},
		{"object":"trace.span","id":"span_2","trace_id":"trace_0123456789abcdef0123456789abcdef","parent_id":"span_1",
		 "span_data":{"type":"function","name":"lookup"},"error":{"message":"tool failed","data":null}}]}`
	res, b := h.do("POST", "/v1/traces/ingest", tok, batch, "OpenAI-Beta", "traces=v1")
	if res.StatusCode != 204 || len(b) != 0 {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	if h.up.count() != 0 {
		t.Fatal("traces were forwarded upstream")
	}
	spans := h.sink.ofType(audit.TypeTraceSpan)
	if len(spans) != 3 || len(h.sink.ofType(audit.TypeProxyCall)) != 0 {
		t.Fatalf("%d trace.span events, %d in all", len(spans), len(h.sink.all()))
	}
	gen, fn := spans[1], spans[2]
	if gen.Grant != "req_trace" || gen.Actor == nil || gen.Actor.Subject != "alice@example.com" || gen.Model != "gpt-4o" ||
		gen.Details["span_type"] != "generation" || gen.Details["trace_id"] != "trace_0123456789abcdef0123456789abcdef" ||
		!strings.Contains(gen.Details["span"], `"input"`) {
		t.Fatalf("generation span event %+v", gen)
	}
	if fn.Details["parent_id"] != "span_1" || fn.Details["name"] != "lookup" || !strings.Contains(fn.Error, "tool failed") {
		t.Fatalf("function span event %+v", fn)
	}
	if spans[0].Details["workflow"] != "Agent workflow" || spans[0].Details["object"] != "trace" {
		t.Fatalf("trace event %+v", spans[0])
	}

	for _, bad := range []string{`{"data":`, `{"items":[]}`, `{"data":[1]}`} {
		res, b := h.do("POST", "/v1/traces/ingest", tok, bad)
		if res.StatusCode != 400 {
			t.Fatalf("bad batch %s: %d %s", bad, res.StatusCode, b)
		}
	}
	if res, _ := h.do("POST", "/v1/traces/ingest", "", batch); res.StatusCode != 401 {
		t.Fatalf("traces without a token: %d", res.StatusCode)
	}
}

// HTTP methods are case-sensitive, and the routes, the stored-answer checks
// and the stream relay know GET and POST only: a method with a lower-case
// letter would reach the upstream as an "other" endpoint, past them, and an
// upstream that folds case would serve it as GET or POST. It is refused
// before anything goes upstream, and the refusal is audited.
func TestLowerCaseMethodIsRefused(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/* endpoint:/v1/chat/completions/*"})
	for _, c := range []struct{ method, path, body string }{
		{"get", "/v1/responses/resp_1?stream=true", ""},
		{"Get", "/v1/responses/resp_1", ""},
		{"post", "/v1/chat/completions", chatBody},
		{"pOST", "/v1/chat/completions/chatcmpl_1", `{"metadata":{}}`},
	} {
		res, b := h.do(c.method, c.path, tok, c.body)
		if res.StatusCode != http.StatusMethodNotAllowed || apiErr(t, b).Code != CodeMethodNotAllowed {
			t.Fatalf("%s %s: %d %s", c.method, c.path, res.StatusCode, b)
		}
		if ev := h.sink.last(t); ev.Status != http.StatusMethodNotAllowed || ev.Grant == "" {
			t.Fatalf("%s %s audited as %+v", c.method, c.path, ev)
		}
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	// The upper-case spellings are routed as before.
	if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		t.Fatalf("POST: %d %s", res.StatusCode, b)
	}
}

// A method override header would let an upstream or gateway that honours
// it serve another route than the one pamctl classified: a POST to a
// stored answer's cancel route replayed as GET ...?stream=true. None
// reaches the upstream.
func TestMethodOverrideHeadersAreNotForwarded(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/*"})
	override := []string{"X-HTTP-Method-Override", "GET", "X-HTTP-Method", "GET", "X-Method-Override", "GET",
		"X_HTTP_Method_Override", "GET", "X-Forwarded-Method", "GET", "X-Original-Method", "GET", "X-Envoy-Original-Method", "GET",
		"X-HTTP-Verb", "GET", "Method", "GET", "X-Original-URL", "/v1/responses/resp_1?stream=true", "X-Rewrite-URL", "/v1/x",
		"X-Forwarded-Uri", "/v1/x", "X_Forwarded_Path", "/v1/x", "X_HTTP_Verb", "GET", "X-Forwarded-Prefix", "/v1", "X-Envoy-Original-Path", "/v1/x"}
	if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody, override...); res.StatusCode != 200 {
		t.Fatalf("chat: %d %s", res.StatusCode, b)
	}
	h.do("POST", "/v1/responses/resp_1/cancel", tok, "", override...)
	reqs := h.up.requests()
	if len(reqs) != 2 {
		t.Fatalf("the upstream got %d requests, want 2", len(reqs))
	}
	for _, r := range reqs {
		for k, v := range r.Header {
			if routeOverride(k) {
				t.Fatalf("%s %s reached the upstream with %s: %q", r.Method, r.Path, k, v)
			}
		}
		for i := 0; i < len(override); i += 2 {
			if v := r.Header.Values(override[i]); len(v) > 0 {
				t.Fatalf("%s %s reached the upstream with %s: %q", r.Method, r.Path, override[i], v)
			}
		}
		if r.Header.Get("User-Agent") == "" && r.Header.Get("Content-Type") == "" {
			t.Fatalf("%s %s: the ordinary headers were dropped too: %v", r.Method, r.Path, r.Header)
		}
	}
	// In the query, where a framework reads _method and its kind.
	for _, q := range []string{"_method=GET", "x-http-method-override=GET", "a=1;X_HTTP_METHOD=GET", "%5Fmethod=GET", "limit=1&_Method"} {
		res, b := h.do("POST", "/v1/chat/completions?"+q, tok, chatBody)
		if res.StatusCode != http.StatusMethodNotAllowed || apiErr(t, b).Code != CodeMethodNotAllowed {
			t.Fatalf("query %q: %d %s", q, res.StatusCode, b)
		}
	}
	if n := len(h.up.requests()); n != 2 {
		t.Fatalf("the upstream got %d requests after the query overrides, want 2", n)
	}
}

// Paths are case-sensitive as well: one that differs from a model,
// stored-answer or trace route only in letter case would be an "other"
// endpoint to pamctl (no model scope, no masking of the stream, no stored
// answer checks) and the route itself to an upstream that folds case. It
// is refused before anything goes upstream; ids keep their case.
func TestRouteCaseVariantsAreRefused(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/* traces:write"})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/Chat/completions", chatBody},
		{"POST", "/v1/Responses", `{"model":"o3-pro","input":"hi"}`},
		{"GET", "/v1/Responses/resp_1?stream=true", ""},
		{"GET", "/v1/CHAT/completions/chatcmpl-1", ""},
		{"POST", "/v1/responses/resp_1/Cancel", ""},
		{"GET", "/v1/Models", ""},
		{"POST", "/v1/traces/Ingest", `{"data":[]}`},
	} {
		res, b := h.do(c.method, c.path, tok, c.body)
		if res.StatusCode != http.StatusNotFound || apiErr(t, b).Code != "unknown_url" {
			t.Fatalf("%s %s: %d %s", c.method, c.path, res.StatusCode, b)
		}
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	// An id in upper case is still an id.
	if res, b := h.do("GET", "/v1/chat/completions/chatcmpl-AbC", tok, ""); res.StatusCode == http.StatusNotFound && apiErr(t, b).Code == "unknown_url" {
		t.Fatalf("an upper-case id was refused: %s", b)
	}
}
