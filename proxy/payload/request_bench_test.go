package payload

import (
	"strconv"
	"strings"
	"testing"
)

// BenchmarkParseRequest parses the usual chat request (fast path), an
// agent's Responses request with tools (generic path), and a chat request
// whose prompt masking rewrites it.
func BenchmarkParseRequest(b *testing.B) {
	chat := []byte(chatBody())
	responses := []byte(`{"model":"gpt-4.1","instructions":"You are a coding agent.","tools":[{"type":"function","name":"read_file","description":"Read a file","parameters":{"type":"object","properties":{"path":{"type":"string","description":"The path"}},"required":["path"]}}],` +
		`"input":[{"role":"user","content":[{"type":"input_text","text":` + jsonStr(strings.Repeat("Please fix the failing test in the router package. ", 10)) + `}]},` +
		`{"type":"function_call","call_id":"c1","name":"read_file","arguments":"{\"path\":\"router.go\"}"},{"type":"function_call_output","call_id":"c1","output":` + jsonStr(strings.Repeat("func route() {}\n", 40)) + `}]}`)
	b.Run("chat", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(chat)))
		for b.Loop() {
			if _, err := ParseRequest(EndpointChat, chat); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("responses", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(responses)))
		for b.Loop() {
			if _, err := ParseRequest(EndpointResponses, responses); err != nil {
				b.Fatal(err)
			}
		}
	})
	m := testMasker(b)
	masked := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail bob@example.com about ` + strings.Repeat("the design notes ", 40) + `"}]}`)
	b.Run("chat-rewrite", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := ParseRequest(EndpointChat, masked)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.Rewrite(func(s string) string { o, _ := m.Mask(s); return o }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParseRequestManyProperties parses a chat request whose one tool
// has 60,000 schema property names (under MaxValues) and one with 700,000
// (the red team's 7.6 MB body, refused as too complex).
func BenchmarkParseRequestManyProperties(b *testing.B) {
	for _, n := range []int{60_000, 700_000} {
		body := manyProps(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				ParseRequest(EndpointChat, body)
			}
		})
	}
}

func manyProps(n int) []byte {
	b := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{`)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendInt(b, int64(i), 16)
		b = append(b, `":{}`...)
	}
	return append(b, `}}}}]}`...)
}
