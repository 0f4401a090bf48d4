package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// Whole answers and streams judge a call's arguments as the agent would
// see them, after response masking: the same rules decide the same way
// whichever way the answer travels.
func TestToolRulesSeeMaskedArgumentsInAnswersAndStreams(t *testing.T) {
	rs := []rules.Rule{
		// Never matches: the masker has replaced the address already.
		{Name: "raw-address", Target: rules.TargetToolCall, Tool: "mail_a", Pattern: `@example\.com`, Action: rules.Deny},
		// Matches the placeholder the agent would get.
		{Name: "any-address", Target: rules.TargetToolCall, Tool: "mail_b", Pattern: `\[EMAIL\]`, Action: rules.Deny},
	}
	args := `{"to":"ops@example.com"}`
	whole := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"call_a","type":"function","function":{"name":"mail_a","arguments":` + jsonStr(args) + `}},` +
		`{"id":"call_b","type":"function","function":{"name":"mail_b","arguments":` + jsonStr(args) + `}}` +
		`]},"finish_reason":"tool_calls"}]}`
	streamed := append(interleave(toolFrags(0, "call_a", "mail_a", args), toolFrags(1, "call_b", "mail_b", args)),
		chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
	for _, stream := range []bool{false, true} {
		h := newHarness(t, withRules(t, rs), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
		if stream {
			h.up.set(writeEvents(streamed))
		} else {
			h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, whole) })
		}
		cl := h.client(h.mint(grant{scope: "model:gpt-4o"}))
		params := openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("mail ops")}}
		var msg openai.ChatCompletionMessage
		if stream {
			s := cl.Chat.Completions.NewStreaming(context.Background(), params)
			var acc openai.ChatCompletionAccumulator
			for s.Next() {
				acc.AddChunk(s.Current())
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			msg = acc.Choices[0].Message
		} else {
			cc, err := cl.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			msg = cc.Choices[0].Message
		}
		if len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "mail_a" || strings.Contains(msg.ToolCalls[0].Function.Arguments, "@example.com") {
			t.Fatalf("stream=%v: calls %+v", stream, msg.ToolCalls)
		}
		if !strings.Contains(msg.Content, "mail_b") || !strings.Contains(msg.Content, "any-address") {
			t.Fatalf("stream=%v: content %q", stream, msg.Content)
		}
		var decisions []string
		for _, e := range h.sink.ofType(audit.TypeToolCall) {
			decisions = append(decisions, e.Target+"="+e.Decision)
		}
		if strings.Join(decisions, " ") != "mail_a=allow mail_b=deny" {
			t.Fatalf("stream=%v: decisions %v", stream, decisions)
		}
	}
}
