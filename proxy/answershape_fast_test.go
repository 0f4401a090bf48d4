package proxy

import (
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/payload"
)

const usualChatAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"service_tier":"default","system_fingerprint":"fp_1"}`

// usualAnswerAgrees fails when the fast shape check passes an answer the
// full check (notObject, then the chat rule's walk) withholds.
func usualAnswerAgrees(t *testing.T, body string) bool {
	t.Helper()
	if !payload.UsualChatAnswer([]byte(body)) {
		return false
	}
	if what := notObject([]byte(body)); what != "" {
		t.Fatalf("UsualChatAnswer passed %s, which is %s", body, what)
	}
	if err := chatAnswerShape.check(body); err != nil {
		t.Fatalf("UsualChatAnswer passed %s, which the shape check withholds: %v", body, err)
	}
	return true
}

// The usual completion skips the long shape check; nothing it passes is
// withheld by that check, and what the check withholds is not passed.
func TestUsualChatAnswer(t *testing.T) {
	for _, c := range []struct {
		body string
		fast bool
	}{
		{usualChatAnswer, true},
		{strings.Replace(usualChatAnswer, `"object":"chat.completion",`, ``, 1), true},
		{strings.Replace(usualChatAnswer, `"chat.completion"`, `null`, 1), true},
		{strings.Replace(usualChatAnswer, `"choices":[`, `"choices":null,"x":[`, 1), false},
		// Withheld by the full check: not passed.
		{strings.Replace(usualChatAnswer, `"chat.completion"`, `"response"`, 1), false},
		{strings.Replace(usualChatAnswer, `"chat.completion"`, `"chat.completion.chunk"`, 1), false},
		{strings.Replace(usualChatAnswer, `"chat.completion"`, `5`, 1), false},
		{strings.Replace(usualChatAnswer, `"chat.completion"`, `"chat.\u0063ompletion"`, 1), false},
		{strings.Replace(usualChatAnswer, `"id":`, `"output":[{"type":"function_call"}],"id":`, 1), false},
		{strings.Replace(usualChatAnswer, `"id":`, `"Output":[{"type":"function_call"}],"id":`, 1), false},
		{strings.Replace(usualChatAnswer, `"id":`, `"type":"function_call","id":`, 1), false},
		{strings.Replace(usualChatAnswer, `"message":`, `"delta":{"tool_calls":[{"index":0}]},"message":`, 1), false},
		{strings.Replace(usualChatAnswer, `"choices":[`, `"choices":{"0":`, 1), false},
		{`"chat.completion"`, false},
		{usualChatAnswer + "x", false},
		{"\ufeff" + usualChatAnswer, false},
	} {
		if got := usualAnswerAgrees(t, c.body); got != c.fast {
			t.Errorf("UsualChatAnswer(%s) = %v, want %v", c.body, got, c.fast)
		}
	}
}

func FuzzUsualChatAnswer(f *testing.F) {
	f.Add(usualChatAnswer)
	f.Add(strings.Replace(usualChatAnswer, `"chat.completion"`, `"response"`, 1))
	f.Add(`{"object":"chat.completion","choices":[]}`)
	f.Fuzz(func(t *testing.T, body string) { usualAnswerAgrees(t, body) })
}

// BenchmarkChatAnswerShape is the shape check of the usual chat answer.
func BenchmarkChatAnswerShape(b *testing.B) {
	c := &call{kind: epChat}
	body := []byte(usualChatAnswer)
	b.ReportAllocs()
	for b.Loop() {
		if err := answerShapeError(c, body); err != nil {
			b.Fatal(err)
		}
	}
}
