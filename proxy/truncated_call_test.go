package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// A whole answer that reached its token limit inside a tool call
// (finish_reason "length"; a Response "incomplete" for
// max_output_tokens) holds the call's arguments cut short. The call is
// never relayed (LangChain's streaming parser would close and run it),
// but the client is told why, with a status the SDKs do not retry (the
// same request would be cut at the same place, and paid again): 400
// tool_call_truncated, x-should-retry false, naming the limit to raise.
// Arguments cut short in an answer that did not hit the limit, or
// unreadable otherwise (NaN), stay a 502 upstream_error.
func TestToolCallCutByTokenLimit(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	chat := func(choices ...string) string {
		return `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[` + strings.Join(choices, ",") + `]}`
	}
	chatChoice := func(i int, content, args, finish string) string {
		c := `null`
		if content != "" {
			c = jsonStr(content)
		}
		calls := ""
		if args != "-" {
			calls = `,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"shell","arguments":` + jsonStr(args) + `}}]`
		}
		return `{"index":` + string(rune('0'+i)) + `,"message":{"role":"assistant","content":` + c + calls + `},"finish_reason":"` + finish + `"}`
	}
	legacy := `{"index":0,"message":{"role":"assistant","content":null,"function_call":{"name":"shell","arguments":"{\"command\":\"ls /srv"}},"finish_reason":"length"}`
	resp := func(status, reason string, items ...string) string {
		inc := `null`
		if reason != "" {
			inc = `{"reason":"` + reason + `"}`
		}
		return `{"id":"resp_1","object":"response","created_at":1,"status":"` + status + `","incomplete_details":` + inc + `,"model":"gpt-4o","output":[` + strings.Join(items, ",") + `]}`
	}
	respCall := func(args string) string {
		return `{"id":"fc_1","type":"function_call","status":"incomplete","arguments":` + jsonStr(args) + `,"call_id":"call_1","name":"shell"}`
	}
	mcpCall := `{"id":"mcp_1","type":"mcp_call","server_label":"ops","name":"shell","arguments":"{\"command\":\"ls /srv","status":"incomplete"}`
	text := `{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Listing /srv now","annotations":[]}]}`
	const chatPath, chatBody = "/v1/chat/completions", `{"model":"gpt-4o","max_completion_tokens":20,"messages":[{"role":"user","content":"x"}]}`
	const chatBody2 = `{"model":"gpt-4o","n":2,"max_completion_tokens":20,"messages":[{"role":"user","content":"x"}]}` // two choices
	const respPath, respBody = "/v1/responses", `{"model":"gpt-4o","max_output_tokens":20,"input":"x"}`
	for _, c := range []struct {
		name, path, body, answer string
		truncated                bool
		limit                    string // the setting the message names
	}{
		{"chat", chatPath, chatBody, chat(chatChoice(0, "Listing /srv now", `{"command":"ls /srv`, "length")), true, "max_completion_tokens"},
		{"chat cut after a key", chatPath, chatBody, chat(chatChoice(0, "", `{"command":"ls /srv","x":`, "length")), true, "max_completion_tokens"},
		{"chat cut in an escape", chatPath, chatBody, chat(chatChoice(0, "", `{"command":"ls /srv\u00`, "length")), true, "max_completion_tokens"},
		{"chat cut before the brace", chatPath, chatBody, chat(chatChoice(0, "", `{"command":"ls /srv"`, "length")), true, "max_completion_tokens"},
		{"chat bare array", chatPath, chatBody, chat(chatChoice(0, "", `["ls /srv"`, "length")), true, "max_completion_tokens"},
		{"chat legacy function_call", chatPath, chatBody, chat(legacy), true, "max_completion_tokens"},
		{"chat second choice", chatPath, chatBody2, chat(chatChoice(0, "ok", "-", "stop"), chatChoice(1, "", `{"command":"ls /srv`, "length")), true, "max_completion_tokens"},
		{"responses", respPath, respBody, resp("incomplete", "max_output_tokens", text, respCall(`{"command":"ls /srv`)), true, "max_output_tokens"},
		{"responses mcp", respPath, respBody, resp("incomplete", "max_output_tokens", mcpCall), true, "max_output_tokens"},
		// not the token limit: the upstream's answer is unreadable
		{"chat finished as tool_calls", chatPath, chatBody, chat(chatChoice(0, "", `{"command":"ls /srv`, "tool_calls")), false, ""},
		{"chat length, NaN", chatPath, chatBody, chat(chatChoice(0, "", `{"command":"ls /srv","x":NaN}`, "length")), false, ""},
		{"chat length, NaN cut short", chatPath, chatBody, chat(chatChoice(0, "", `{"command":"ls /srv","x":NaN`, "length")), false, ""},
		{"chat length, trailing text", chatPath, chatBody, chat(chatChoice(0, "", `{"command":"ls /srv"} x`, "length")), false, ""},
		{"chat length on another choice", chatPath, chatBody2, chat(chatChoice(0, "ok /srv", "-", "length"), chatChoice(1, "", `{"command":"ls /srv`, "tool_calls")), false, ""},
		{"responses completed", respPath, respBody, resp("completed", "", respCall(`{"command":"ls /srv`)), false, ""},
		{"responses content filter", respPath, respBody, resp("incomplete", "content_filter", respCall(`{"command":"ls /srv`)), false, ""},
	} {
		h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.answer) })
		before := len(h.sink.ofType(audit.TypeToolCall))
		res, b := h.do("POST", c.path, tok, c.body)
		if strings.Contains(string(b), "/srv") {
			t.Errorf("%s: the answer reached the client: %s", c.name, b)
		}
		var e errorBody
		_ = json.Unmarshal(b, &e)
		switch {
		case c.truncated && (res.StatusCode != http.StatusBadRequest || e.Error.Code != CodeToolCallTruncated || res.Header.Get("X-Should-Retry") != "false"):
			t.Errorf("%s: %d %s (x-should-retry %q), want 400 %s", c.name, res.StatusCode, b, res.Header.Get("X-Should-Retry"), CodeToolCallTruncated)
		case c.truncated && (!strings.Contains(e.Error.Message, c.limit) || !strings.Contains(e.Error.Message, "shell")):
			t.Errorf("%s: the message does not name the tool and %s: %s", c.name, c.limit, e.Error.Message)
		case !c.truncated && (res.StatusCode != http.StatusBadGateway || e.Error.Code != CodeUpstreamError):
			t.Errorf("%s: %d %s, want 502 %s", c.name, res.StatusCode, b, CodeUpstreamError)
		}
		evs := h.sink.ofType(audit.TypeToolCall)
		if len(evs) != before+1 || evs[len(evs)-1].Decision != "deny" || evs[len(evs)-1].Details["arguments"] != "" {
			t.Errorf("%s: want one tool.call deny event without arguments, got %d", c.name, len(evs)-before)
		}
	}
}

// The same in streams: a chat stream whose choice finished "length", or a
// Responses stream that ended "incomplete" for max_output_tokens (or
// showed the call's item "incomplete"), ends with an error event
// tool_call_truncated naming the limit, not upstream_tool_call_malformed
// ("Retry the request"); the call is never shown.
func TestToolCallCutByTokenLimitStream(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	const cut = `{"command":"ls /srv`
	chatStream := func(finish string) []string {
		ev := []string{chatChunk(`{"role":"assistant","content":"Listing now"}`, "")}
		ev = append(ev, toolFrags(0, "call_1", "shell", cut)...)
		return append(ev, chatChunk(`{}`, finish), sseData("[DONE]"))
	}
	respStream := func(itemDone, terminal string) []string {
		seq := 0
		ev := []string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)}
		calls := respCall(&seq, 0, "fc_1", "call_1", "shell", cut)
		ev = append(ev, calls[:len(calls)-2]...) // added, the deltas
		item := `{"id":"fc_1","type":"function_call","status":"` + itemDone + `","arguments":` + jsonStr(cut) + `,"call_id":"call_1","name":"shell"}`
		if itemDone != "" {
			ev = append(ev, calls[len(calls)-2], respEv(seq+1, `"type":"response.output_item.done","output_index":0,"item":`+item))
			seq++
		} else {
			item = strings.Replace(item, `"status":""`, `"status":"incomplete"`, 1)
		}
		return append(ev, respEv(seq+1, terminal+`,"output":[`+item+`]}`))
	}
	incomplete := func(reason string) string {
		return `"type":"response.incomplete","response":{"id":"resp_1","object":"response","status":"incomplete","incomplete_details":{"reason":"` + reason + `"}`
	}
	const completed = `"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed"`
	for _, c := range []struct {
		name, path, body string
		events           []string
		want, limit      string
	}{
		{"chat", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}`, chatStream("length"), CodeToolCallTruncated, "max_completion_tokens"},
		{"chat finished as tool_calls", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}`, chatStream("tool_calls"), CodeToolCallMalformed, ""},
		{"responses, item not done", "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`, respStream("", incomplete("max_output_tokens")), CodeToolCallTruncated, "max_output_tokens"},
		{"responses, item done incomplete", "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`, respStream("incomplete", incomplete("max_output_tokens")), CodeToolCallTruncated, "max_output_tokens"},
		{"responses completed", "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`, respStream("completed", completed), CodeToolCallMalformed, ""},
		{"responses content filter", "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`, respStream("", incomplete("content_filter")), CodeToolCallMalformed, ""},
	} {
		h.up.set(writeBytes(c.events))
		res, b := h.do("POST", c.path, tok, c.body)
		got := string(b)
		if strings.Contains(got, "/srv") {
			t.Errorf("%s: the call reached the client: %s", c.name, b)
		}
		i := strings.LastIndex(got, "event: error\ndata: ")
		var e errorBody
		if i < 0 || json.Unmarshal([]byte(strings.TrimSpace(got[i+len("event: error\ndata: "):])), &e) != nil {
			t.Errorf("%s: %d, no error event at the end: %s", c.name, res.StatusCode, b)
			continue
		}
		if e.Error.Code != c.want || !strings.Contains(e.Error.Message, c.limit) {
			t.Errorf("%s: error %s %q, want %s naming %q", c.name, e.Error.Code, e.Error.Message, c.want, c.limit)
		}
	}
}
