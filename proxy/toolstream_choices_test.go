package proxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// choiceChunk is a chat chunk of choice ci alone.
func choiceChunk(ci int, delta, finish string) string {
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	return sseData(fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":%d,"delta":%s,"finish_reason":%s}]}`, ci, delta, f))
}

// chatCallDelta is a delta with one whole tool_calls fragment.
func chatCallDelta(index int, id, name, args string) string {
	return fmt.Sprintf(`{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":%s}}]}`, index, id, name, jsonStr(args))
}

// sdkReadings are the calls a chat stream gives an agent, read as the
// SDKs that merge tool_calls fragments by index read it: openai-agents
// (Python) takes each chunk's choices[0] by position, keeps the last
// name given and joins the arguments; openai-agents-js takes the choice
// with index 0 and joins names and arguments; both read on after
// finish_reason. Each reading is "name arguments".
func sdkReadings(stream string) []string {
	type acc struct{ name, args string }
	byPos, byIdx := map[float64]*acc{}, map[float64]*acc{}
	for _, ev := range strings.Split(stream, "\n\n") {
		d, ok := strings.CutPrefix(strings.TrimSpace(ev), "data: ")
		if !ok || d == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Index float64
				Delta struct {
					ToolCalls []struct {
						Index    float64
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				}
			}
		}
		if json.Unmarshal([]byte(d), &c) != nil {
			continue
		}
		for pos, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				if pos == 0 {
					a := byPos[tc.Index]
					if a == nil {
						a = &acc{}
						byPos[tc.Index] = a
					}
					if tc.Function.Name != "" {
						a.name = tc.Function.Name
					}
					a.args += tc.Function.Arguments
				}
				if ch.Index == 0 {
					a := byIdx[tc.Index]
					if a == nil {
						a = &acc{}
						byIdx[tc.Index] = a
					}
					a.name += tc.Function.Name
					a.args += tc.Function.Arguments
				}
			}
		}
	}
	var out []string
	for _, m := range []map[float64]*acc{byPos, byIdx} {
		for _, a := range m {
			out = append(out, a.name+" "+a.args)
		}
	}
	return out
}

// A choice's calls end at its finish_reason: a tool_calls (or legacy
// function_call) fragment of that choice after it ends the stream as
// malformed. Otherwise the second batch went out numbered from 0 again,
// and SDKs that merge fragments by index and read on after finish_reason
// glued it to the first: "sh" {"command":"rm -rf /srv"} and "ell" ""
// (each judged alone, allowed) ran as shell rm -rf, which no-rm-rf
// denies. The calls after the end are each one tool.call event, deny,
// "after the end"; calls judged before keep their verdict's.
func TestChatStreamCallsAfterFinishRefused(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	rm := `{"command":"rm -rf /srv"}`
	for _, c := range []struct {
		name   string
		events []string
		want   []string
	}{
		{"a second batch", []string{chatChunk(chatCallDelta(0, "call_1", "sh", rm), ""), chatChunk(`{}`, "tool_calls"),
			chatChunk(chatCallDelta(0, "call_2", "ell", ""), ""), chatChunk(`{}`, "tool_calls"), "data: [DONE]\n\n"},
			[]string{"sh allow ", "ell deny after the end"}},
		{"a second batch under the first one's id", []string{chatChunk(chatCallDelta(0, "call_1", "read_file", rm), ""), chatChunk(`{}`, "tool_calls"),
			chatChunk(chatCallDelta(0, "call_1", "shell", ""), ""), chatChunk(`{}`, "tool_calls"), "data: [DONE]\n\n"},
			[]string{"read_file allow ", "shell deny after the end"}},
		// Refused by the relay first (text at the index of a call that
		// ended), and still recorded as a call of its own.
		{"a second batch with arguments", []string{chatChunk(chatCallDelta(0, "call_1", "sh", rm), ""), chatChunk(`{}`, "tool_calls"),
			chatChunk(chatCallDelta(0, "call_2", "ell", `{"x":1}`), ""), chatChunk(`{}`, "tool_calls"), "data: [DONE]\n\n"},
			[]string{"sh allow ", "ell deny after the end"}},
		{"a new index without an id after the end", []string{chatChunk(chatCallDelta(0, "call_1", "sh", rm), ""), chatChunk(`{}`, "tool_calls"),
			chatChunk(`{"tool_calls":[{"index":1,"function":{"name":"ell"}}]}`, ""), "data: [DONE]\n\n"},
			[]string{"sh allow ", "ell deny after the end"}},
		{"a call after the choice ended stop", []string{chatChunk(`{"content":"done"}`, ""), chatChunk(`{}`, "stop"),
			chatChunk(chatCallDelta(0, "call_1", "shell", rm), ""), "data: [DONE]\n\n"},
			[]string{"shell deny after the end"}},
		{"a call in the finishing chunk, then another", []string{chatChunk(chatCallDelta(0, "call_1", "sh", rm), "tool_calls"),
			chatChunk(chatCallDelta(1, "call_2", "ell", ""), ""), "data: [DONE]\n\n"},
			[]string{"sh allow ", "ell deny after the end"}},
		{"a legacy function_call after the end", []string{chatChunk(`{"function_call":{"name":"sh","arguments":"{\"command\":\"rm -rf /srv\"}"}}`, ""), chatChunk(`{}`, "function_call"),
			chatChunk(`{"function_call":{"name":"ell","arguments":""}}`, ""), "data: [DONE]\n\n"},
			[]string{"sh allow ", "ell deny after the end"}},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(c.events))
		_, b := h.do("POST", "/v1/chat/completions", tok, streamReq)
		s := string(b)
		if !strings.Contains(s, CodeToolCallMalformed) || strings.Contains(s, "[DONE]") || strings.Contains(s, `"ell"`) {
			t.Errorf("%s: not refused:\n%s", c.name, s)
		}
		for _, r := range sdkReadings(s) {
			if strings.Contains(r, "shell") || strings.Contains(r, "rm -rf") && !strings.HasPrefix(r, "sh ") && !strings.HasPrefix(r, "read_file ") {
				t.Errorf("%s: an SDK reads the call %q; the client saw:\n%s", c.name, r, s)
			}
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

// Tool calls on a choice other than 0 when the request did not ask for
// more than one (n absent, or 1) end the stream: SDKs that read each
// chunk's first choice by position (openai-agents) merge that choice's
// calls, index by index, into choice 0's. Each is one tool.call event,
// deny, "choice not asked for". With n ≥ 2 they are judged, and
// numbered across the stream's choices, so no reader merges two calls;
// one id in two choices ends the stream (call_id twice), as it does in
// one choice.
func TestChatStreamOtherChoiceCalls(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	rm := `{"command":"rm -rf /srv"}`
	req := func(n string) string {
		return `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true` + n + `}`
	}
	twoChoices := func(id0, id1 string) []string {
		return []string{
			choiceChunk(0, chatCallDelta(0, id0, "read_file", rm), ""),
			choiceChunk(1, chatCallDelta(0, id1, "shell", ""), ""),
			choiceChunk(0, `{}`, "tool_calls"),
			choiceChunk(1, `{}`, "tool_calls"),
			"data: [DONE]\n\n",
		}
	}
	for _, c := range []struct {
		name, req string
		events    []string
		refused   bool
		want      []string
	}{
		{"n absent", req(""), twoChoices("call_1", "call_2"), true, []string{"read_file deny never finished", "shell deny choice not asked for"}},
		{"n 1", req(`,"n":1`), twoChoices("call_1", "call_2"), true, []string{"read_file deny never finished", "shell deny choice not asked for"}},
		{"n null", req(`,"n":null`), twoChoices("call_1", "call_2"), true, []string{"read_file deny never finished", "shell deny choice not asked for"}},
		{"choice 1 alone", req(""), []string{choiceChunk(1, chatCallDelta(0, "call_1", "shell", rm), ""), choiceChunk(1, `{}`, "tool_calls"), "data: [DONE]\n\n"},
			true, []string{"shell deny choice not asked for"}},
		{"a legacy function_call on choice 1", req(""), []string{choiceChunk(1, `{"function_call":{"name":"shell","arguments":""}}`, ""), "data: [DONE]\n\n"},
			true, []string{"shell deny choice not asked for"}},
		{"n 2, one id in two choices", req(`,"n":2`), twoChoices("call_1", "call_1"), true, []string{"read_file deny call_id twice", "shell deny call_id twice"}},
		{"n 2, two ids", req(`,"n":2`), twoChoices("call_1", "call_2"), false, []string{"read_file allow ", "shell allow "}},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(c.events))
		_, b := h.do("POST", "/v1/chat/completions", tok, c.req)
		s := string(b)
		if refused := strings.Contains(s, CodeToolCallMalformed); refused != c.refused || refused && (strings.Contains(s, "[DONE]") || strings.Contains(s, `"shell"`)) {
			t.Errorf("%s: refused %v, want %v:\n%s", c.name, refused, c.refused, s)
		}
		for _, r := range sdkReadings(s) {
			if strings.HasPrefix(r, "shell") && strings.Contains(r, "rm -rf") || strings.HasPrefix(r, "read_fileshell") {
				t.Errorf("%s: an SDK reads the call %q; the client saw:\n%s", c.name, r, s)
			}
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
