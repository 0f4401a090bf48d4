package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// storedScopes may read stored answers back, beside tool scopes.
const storedScopes = toolScopes + " endpoint:/v1/responses/* endpoint:/v1/chat/completions/*"

// TestStoredResponseToolCallsJudged: a background response's tool calls
// reach the agent only through GET /v1/responses/{id}; reading it back
// must not skip the firewall that judged the POST.
func TestStoredResponseToolCallsJudged(t *testing.T) {
	rs := append([]rules.Rule{
		{Name: "argv-rm", Target: rules.TargetToolCall, Tool: "local_shell", Arguments: &rules.ArgumentMatch{Path: "$.command[0]", Pattern: `^rm$`}, Action: rules.Deny},
	}, toolRules...)
	h := newHarness(t, withRules(t, rs), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/responses/resp_1":
			writeJSON(w, responsesToolAnswer)
		case "/v1/chat/completions/chatcmpl-1":
			writeJSON(w, chatToolAnswer)
		default:
			http.NotFound(w, r)
		}
	})
	tok := h.mint(grant{scope: storedScopes})

	res, body := h.do("GET", "/v1/responses/resp_1", tok, "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	var r struct {
		Output []struct {
			Type    string `json:"type"`
			Name    string `json:"name"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	want := []string{"function_call", "message", "message", "message", "custom_tool_call"}
	if len(r.Output) != len(want) {
		t.Fatalf("%s", body)
	}
	for i, typ := range want {
		if r.Output[i].Type != typ {
			t.Fatalf("item %d is %q: %s", i, r.Output[i].Type, body)
		}
	}
	if !strings.Contains(r.Output[1].Content[0].Text, `rule "no-rm-rf"`) {
		t.Errorf("the denied call's explanation: %s", body)
	}
	for _, leak := range []string{"rm -rf", `"rm"`, "deleted", "tok-abcdef123456"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("%q reached the client: %s", leak, body)
		}
	}
	if evs := h.sink.ofType(audit.TypeToolCall); len(evs) != 5 {
		t.Fatalf("tool.call events: %+v", evs)
	}
	ev := h.sink.last(t)
	if ev.Type != audit.TypeProxyCall || ev.Decision != "allow" {
		t.Fatalf("the call's event: %+v", ev)
	}

	// A stored chat completion is judged as chat: rm -rf is replaced, the
	// key in the http call is masked.
	res, body = h.do("GET", "/v1/chat/completions/chatcmpl-1", tok, "")
	if res.StatusCode != 200 || strings.Contains(string(body), "rm -rf") || strings.Contains(string(body), "tok-abcdef123456") ||
		!strings.Contains(string(body), "ls -la") || strings.Contains(string(body), "ops@example.com") {
		t.Fatalf("stored chat: %d %s", res.StatusCode, body)
	}
}

// TestStoredAnswerMaskedWithoutJudge: without tool scopes or tool_call
// rules a stored answer is still masked like the POST's answer, and its
// usage (counted when it was made) is not counted again.
func TestStoredAnswerMaskedWithoutJudge(t *testing.T) {
	h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	const stored = `{"id":"resp_9","object":"response","status":"completed","model":"gpt-4o","output":[` +
		`{"type":"message","id":"m1","role":"assistant","content":[{"type":"output_text","text":"mail ops@example.com","annotations":[]}]}],` +
		`"usage":{"input_tokens":400,"output_tokens":600,"total_tokens":1000}}`
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, stored) })
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/*", limits: &token.Limits{Tokens: 1500}})
	for i := range 3 {
		res, body := h.do("GET", "/v1/responses/resp_9", tok, "")
		if res.StatusCode != 200 || strings.Contains(string(body), "ops@example.com") || !strings.Contains(string(body), "mail [EMAIL]") {
			t.Fatalf("read %d: %d %s", i, res.StatusCode, body)
		}
	}
}

// TestStoredAnswerRefusals: stored answers need their endpoint: scope, are
// never relayed as a stream, and one that arrives as a stream anyway is
// withheld.
func TestStoredAnswerRefusals(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	var sse bool
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, "response.output_item.done", `{"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc_2","call_id":"call_2","name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}}`)
			return
		}
		writeJSON(w, responsesToolAnswer)
	})
	tok := h.mint(grant{scope: storedScopes})
	before := h.up.count()
	for _, q := range []string{"?stream=true", "?stream=True", "?stream=1", "?stream=", "?stream=false&stream=true", "?starting_after=3&stream=true"} {
		res, body := h.do("GET", "/v1/responses/resp_1"+q, tok, "")
		if res.StatusCode != 400 || !strings.Contains(string(body), CodeUnsupportedShape) || !strings.Contains(string(body), "without stream=true") {
			t.Errorf("%s: %d %s", q, res.StatusCode, body)
		}
	}
	if n := h.up.count(); n != before {
		t.Fatalf("refused reads reached the upstream: %d", n-before)
	}
	if res, body := h.do("GET", "/v1/responses/resp_1?stream=false", tok, ""); res.StatusCode != 200 || strings.Contains(string(body), "rm -rf") {
		t.Fatalf("stream=false: %d %s", res.StatusCode, body)
	}

	sse = true
	if res, body := h.do("GET", "/v1/responses/resp_1", tok, ""); res.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "rm -rf") ||
		!strings.Contains(string(body), CodeUpstreamUnexpectedStream) {
		t.Fatalf("a stored answer sent as a stream: %d %s", res.StatusCode, body)
	}
	sse = false

	noEndpoint := h.mint(grant{scope: toolScopes})
	if res, body := h.do("GET", "/v1/responses/resp_1", noEndpoint, ""); res.StatusCode != 403 || !strings.Contains(string(body), "endpoint:/v1/responses/resp_1") {
		t.Fatalf("without the endpoint scope: %d %s", res.StatusCode, body)
	}
}

func TestClassifyStoredAnswers(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         endpointKind
	}{
		{"GET", "/v1/responses/resp_1", epStoredResponse},
		{"GET", "/v1/chat/completions/chatcmpl-1", epStoredChat},
		{"DELETE", "/v1/responses/resp_1", epOther},
		{"POST", "/v1/responses/resp_1/cancel", epStoredResponse},
		{"POST", "/v1/chat/completions/chatcmpl-1", epStoredChat},
		{"POST", "/v1/responses/resp_1/other", epOther},
		{"POST", "/v1/responses/cancel", epOther},
		{"DELETE", "/v1/chat/completions/chatcmpl-1", epOther},
		{"GET", "/v1/responses/resp_1/input_items", epItems},
		{"GET", "/v1/chat/completions/chatcmpl-1/messages", epChatMessages},
		{"GET", "/v1/responses/", epOther},
		{"GET", "/v1/chat/completions", epOther},
	} {
		if got := classify(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

// TestStoredAnswerHostileShapes: an upstream answering a stored read (or
// a cancel) with the object slightly off (no "object", a text type, a
// BOM, a list around it, another kind of object) never gets a proposed
// call past the judge: the answer is judged in the route's shape or
// withheld.
func TestStoredAnswerHostileShapes(t *testing.T) {
	var body, ctype string
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		io.WriteString(w, body)
	})
	tok := h.mint(grant{scope: storedScopes})
	noObject := strings.Replace(responsesToolAnswer, `"object":"response",`, "", 1)
	for _, tc := range []struct {
		name, ctype, body string
		withheld          bool
	}{
		{"no object", "application/json", noObject, false},
		{"text/plain", "text/plain", responsesToolAnswer, false},
		{"no content type", "", responsesToolAnswer, false},
		{"ndjson", "application/x-ndjson", responsesToolAnswer, false},
		{"object in another case", "application/json", strings.Replace(responsesToolAnswer, `"object":"response"`, `"object":"Response"`, 1), true},
		{"a list around it", "application/json", `{"object":"list","data":[` + responsesToolAnswer + `]}`, true},
		{"a chat completion instead", "application/json", chatToolAnswer, true},
		{"an item list", "application/json", `{"object":"list","data":[{"type":"function_call","id":"fc_2","call_id":"call_2","name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}]}`, true},
	} {
		for _, route := range []struct{ method, path string }{{"GET", "/v1/responses/resp_1"}, {"POST", "/v1/responses/resp_1/cancel"}} {
			body, ctype = tc.body, tc.ctype
			res, got := h.do(route.method, route.path, tok, "")
			if strings.Contains(string(got), "rm -rf") || strings.Contains(string(got), "tok-abcdef123456") {
				t.Errorf("%s, %s %s: a denied call or a key reached the client: %d %s", tc.name, route.method, route.path, res.StatusCode, got)
				continue
			}
			if tc.withheld != (res.StatusCode == http.StatusBadGateway) {
				t.Errorf("%s, %s %s: %d %s", tc.name, route.method, route.path, res.StatusCode, got)
			}
		}
	}
}

// Other methods on a stored answer's path are "other" endpoints (DELETE
// /v1/responses/ID is one), answered as they come; but one answered with
// events would replay a stored answer past the stored routes' masking and
// tool checks, so a stream there is withheld, whatever the method. A JSON
// answer still goes through.
func TestStoredPathStreamsWithheldForEveryMethod(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	sse := true
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, "response.output_item.done", `{"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc_2","call_id":"call_2","name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}}`)
			return
		}
		writeJSON(w, `{"id":"resp_1","object":"response.deleted","deleted":true}`)
	})
	tok := h.mint(grant{scope: storedScopes})
	for _, c := range []struct{ method, path string }{
		{"QUERY", "/v1/responses/resp_1?stream=true"},
		{"DELETE", "/v1/responses/resp_1"},
		{"PUT", "/v1/chat/completions/chatcmpl-1"},
		{"PATCH", "/v1/responses/resp_1/cancel"},
	} {
		res, body := h.do(c.method, c.path, tok, "")
		if res.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "rm -rf") || !strings.Contains(string(body), CodeUpstreamUnexpectedStream) {
			t.Fatalf("%s %s answered with a stream: %d %s", c.method, c.path, res.StatusCode, body)
		}
	}
	sse = false
	if res, body := h.do("DELETE", "/v1/responses/resp_1", tok, ""); res.StatusCode != 200 || !strings.Contains(string(body), `"deleted":true`) {
		t.Fatalf("DELETE: %d %s", res.StatusCode, body)
	}
}
