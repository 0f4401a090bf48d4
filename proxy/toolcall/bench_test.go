package toolcall

import (
	"context"
	"testing"
)

// BenchmarkRewriteAnswer: what judging costs a whole answer, beside the
// judge's own work: an answer without tool calls (skipped unread) and one
// with three parallel calls (decoded, judged, re-encoded).
func BenchmarkRewriteAnswer(b *testing.B) {
	allow := JudgeFunc(func(context.Context, Call) (Verdict, error) { return Verdict{}, nil })
	bodies := map[string]string{
		"no-calls": `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, here is a short answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`,
		"three-calls": `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
			`{"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":\"ls -la\"}"}},` +
			`{"id":"call_2","type":"function","function":{"name":"shell","arguments":"{\"command\":\"git status\"}"}},` +
			`{"id":"call_3","type":"function","function":{"name":"http","arguments":"{\"url\":\"https://api.example.com\"}"}}` +
			`]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`,
	}
	for _, name := range []string{"no-calls", "three-calls"} {
		body := []byte(bodies[name])
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := RewriteAnswer(context.Background(), EndpointChat, body, allow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
