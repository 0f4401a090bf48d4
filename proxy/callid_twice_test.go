package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// Two calls under one call_id (different item ids, or two tool_calls of
// one chat choice with one id) are ambiguous: the SDKs key a call's
// output by its call_id, so which call a result answers, and which one
// ran, is anyone's guess. The answer is refused (a stream ends with
// upstream_tool_call_malformed, a whole answer gets 502) and every call
// not already judged under that id is one tool.call event, deny, reason
// "call_id twice"; a call judged before the second appeared keeps its
// verdict's event.
func TestCallIDTwiceRefused(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell tool:pwd"})
	ls := respItemJSON("fc_1", "call_1", "shell", `{"command":"ls"}`)
	pwd2 := respItemJSON("fc_2", "call_1", "pwd", `{}`)
	streamed := func(final ...string) []string {
		seq := 0
		evs := append([]string{respCreated()}, respCall(&seq, 0, "fc_1", "call_1", "shell", `{"command":"ls"}`)...)
		return append(evs, respCompleted(seq+1, final...))
	}
	seq := 0
	twoDone := append([]string{respCreated()}, respCall(&seq, 0, "fc_1", "call_1", "shell", `{"command":"ls"}`)...)
	twoDone = append(twoDone, respCall(&seq, 1, "fc_2", "call_1", "pwd", `{}`)...)
	twoDone = append(twoDone, respCompleted(seq+1, ls, pwd2))
	chatTwice := []string{
		chatChunk(`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":\"ls\"}"}}]}`, ""),
		chatChunk(`{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"pwd","arguments":"{}"}}]}`, ""),
		chatChunk(`{}`, "tool_calls"), "data: [DONE]\n\n",
	}
	for _, c := range []struct {
		name   string
		chat   bool
		events []string
		want   []string
	}{
		{"responses: two items done, one call_id", false, twoDone, []string{"shell allow ", "pwd deny call_id twice"}},
		{"responses: the final output's two late items", false, append([]string{respCreated()}, respCompleted(1, respItemJSON("fc_1", "call_1", "shell", `{"command":"ls"}`), pwd2)),
			[]string{"shell deny call_id twice", "pwd deny call_id twice"}},
		{"responses: the shown item and a late one", false, streamed(ls, pwd2), []string{"shell allow ", "pwd deny call_id twice"}},
		{"responses: a late one only, under the shown call_id", false, streamed(pwd2), []string{"shell allow ", "pwd deny call_id twice"}},
		{"responses: the shown item and another call under its id and call_id", false, streamed(ls, respItemJSON("fc_1", "call_1", "pwd", `{}`)),
			[]string{"shell allow ", "pwd deny call_id twice"}},
		{"chat: two calls of one choice, one id", true, chatTwice, []string{"shell deny call_id twice", "pwd deny call_id twice"}},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(c.events))
		path, body := "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`
		if c.chat {
			path, body = "/v1/chat/completions", streamReq
		}
		_, b := h.do("POST", path, tok, body)
		s := string(b)
		if !strings.Contains(s, CodeToolCallMalformed) || strings.Contains(s, "pwd") || strings.Contains(s, "response.completed") || strings.Contains(s, "[DONE]") {
			t.Errorf("%s: not refused:\n%s", c.name, s)
		}
		var got []string
		for _, ev := range h.sink.ofType(audit.TypeToolCall)[before:] {
			got = append(got, toolCallSummary(ev))
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: tool.call events %q, want %q", c.name, got, c.want)
		}
	}

	// Not ambiguous: the same item shown and repeated in the final
	// output. (One id in two chat choices is: TestChatStreamOtherChoiceCalls.)
	for name, c := range map[string]struct {
		path   string
		events []string
	}{
		"responses: the shown item repeated": {"/v1/responses", streamed(ls)},
	} {
		h.up.set(writeBytes(c.events))
		body := streamReq
		if c.path == "/v1/responses" {
			body = `{"model":"gpt-4o","input":"x","stream":true}`
		}
		_, b := h.do("POST", c.path, tok, body)
		if strings.Contains(string(b), `"error"`) {
			t.Errorf("%s: refused:\n%s", name, b)
		}
	}
}

// The same for whole answers: 502, and each call under the twice-used
// id one tool.call event (deny, call_id twice), none judged, in one
// choice or across choices; two items without a call_id under distinct
// ids pass.
func TestCallIDTwiceRefusedWholeAnswer(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell tool:pwd"})
	chatAnswer := func(choices ...string) string {
		return `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[` + strings.Join(choices, ",") + `]}`
	}
	choice := func(i int, calls ...string) string {
		return fmt.Sprintf(`{"index":%d,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[%s]}}`, i, strings.Join(calls, ","))
	}
	call := func(id, name, args string) string {
		return fmt.Sprintf(`{"id":%q,"type":"function","function":{"name":%q,"arguments":%s}}`, id, name, jsonStr(args))
	}
	resp := func(items ...string) string {
		return `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o","output":[` + strings.Join(items, ",") + `]}`
	}
	mcp := func(id string) string {
		return `{"id":"` + id + `","type":"mcp_call","server_label":"gh","name":"search","arguments":"{}","status":"completed"}`
	}
	for _, c := range []struct {
		name, path, answer string
		refused            bool
		want               []string
	}{
		{"chat: one id twice in a choice", "/v1/chat/completions", chatAnswer(choice(0, call("call_1", "shell", `{"command":"ls"}`), call("call_1", "pwd", `{}`))),
			true, []string{"shell deny call_id twice", "pwd deny call_id twice"}},
		{"chat: one id in two choices (n 2)", "/v1/chat/completions", chatAnswer(choice(0, call("call_1", "shell", `{"command":"ls"}`)), choice(1, call("call_1", "pwd", `{}`))),
			true, []string{"shell deny call_id twice", "pwd deny call_id twice"}},
		{"chat: two ids in two choices (n 2)", "/v1/chat/completions", chatAnswer(choice(0, call("call_1", "shell", `{"command":"ls"}`)), choice(1, call("call_2", "pwd", `{}`))),
			false, []string{"shell allow ", "pwd allow "}},
		// With one choice asked for, calls on any other are refused
		// (each recorded, "choice not asked for"): SDKs read the first.
		{"chat: calls on choice 1 (n absent)", "/v1/chat/completions", chatAnswer(choice(0, call("call_1", "shell", `{"command":"ls"}`)), choice(1, call("call_2", "pwd", `{}`))),
			true, []string{"pwd deny choice not asked for"}},
		{"chat: a legacy function_call on choice 1 (n absent)", "/v1/chat/completions", chatAnswer(choice(0), `{"index":1,"finish_reason":"function_call","message":{"role":"assistant","content":null,"function_call":{"name":"pwd","arguments":"{}"}}}`),
			true, []string{"pwd deny choice not asked for"}},
		{"chat: the only choice, index 1 (n absent)", "/v1/chat/completions", chatAnswer(choice(1, call("call_1", "pwd", `{}`))),
			true, []string{"pwd deny choice not asked for"}},
		{"responses: two items, one call_id", "/v1/responses", resp(respItemJSON("fc_1", "call_1", "shell", `{"command":"ls"}`), respItemJSON("fc_2", "call_1", "pwd", `{}`)),
			true, []string{"shell deny call_id twice", "pwd deny call_id twice"}},
		{"responses: the same item twice", "/v1/responses", resp(respItemJSON("fc_1", "call_1", "shell", `{"command":"ls"}`), respItemJSON("fc_1", "call_1", "shell", `{"command":"ls"}`)),
			true, []string{"shell deny call_id twice"}},
		{"responses: two mcp calls, one id", "/v1/responses", resp(mcp("mcp_1"), mcp("mcp_1")[:len(mcp("mcp_1"))-1]+`,"x":1}`),
			true, []string{"mcp:gh/search deny call_id twice", "mcp:gh/search deny call_id twice"}},
		{"responses: two mcp calls, two ids", "/v1/responses", resp(mcp("mcp_1"), mcp("mcp_2")),
			false, []string{"mcp:gh/search deny scope", "mcp:gh/search deny scope"}},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.answer) })
		body := `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`
		if strings.Contains(c.name, "(n 2)") {
			body = `{"model":"gpt-4o","n":2,"messages":[{"role":"user","content":"x"}]}`
		}
		if c.path == "/v1/responses" {
			body = `{"model":"gpt-4o","input":"x"}`
		}
		res, b := h.do("POST", c.path, tok, body)
		if c.refused != (res.StatusCode == 502) || c.refused && strings.Contains(string(b), "pwd") {
			t.Errorf("%s: %d %s", c.name, res.StatusCode, b)
		}
		var got []string
		for _, ev := range h.sink.ofType(audit.TypeToolCall)[before:] {
			got = append(got, toolCallSummary(ev))
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: tool.call events %q, want %q", c.name, got, c.want)
		}
	}
}
