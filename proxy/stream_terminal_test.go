package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Every shape of a stream's end is held until the audit event is appended:
// the ones the relay classifies itself (chat [DONE], a Responses event
// whose type or name ends the stream, a chat chunk named as an end) and
// the ones it leaves to the proxy (an "error" object, a chat error event),
// with masking on and off. (A case variant of "type" ends the stream with
// upstream_error: TestStreamSplitsThatWouldRejoinEndTheStream.)
func TestStreamEndsAreHeldUntilAudited(t *testing.T) {
	chunk := func(id, content string) string {
		return `{"id":"` + id + `","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}`
	}
	delta := func(seq int, text string) string {
		return fmt.Sprintf(`{"type":"response.output_text.delta","sequence_number":%d,"item_id":"msg_1","output_index":0,"content_index":0,"delta":%q,"logprobs":[]}`, seq, text)
	}
	completed := `{"type":"response.completed","sequence_number":9,"response":{"id":"resp_ZZEND","object":"response","status":"completed","model":"gpt-4o","output":[]}}`
	for _, tc := range []struct {
		name, path, end string
	}{
		{"chat done", "/v1/chat/completions", "data: " + chunk("c1", "hello") + "\n\ndata: [DONE]\n\n"},
		{"chat chunk named as an end", "/v1/chat/completions", "data: " + chunk("c1", "hello") + "\n\nevent: response.completed\ndata: " + chunk("ZZEND", "x") + "\n\n"},
		{"chat chunk named error", "/v1/chat/completions", "data: " + chunk("c1", "hello") + "\n\nevent: error\ndata: " + chunk("ZZEND", "x") + "\n\n"},
		{"chat error object", "/v1/chat/completions", "data: " + chunk("c1", "hello") + "\n\ndata: {\"error\":{\"message\":\"ZZEND\",\"type\":\"server_error\"}}\n\n"},
		{"responses completed", "/v1/responses", "event: response.output_text.delta\ndata: " + delta(1, "hello") + "\n\nevent: response.completed\ndata: " + completed + "\n\n"},
		{"responses completed unnamed", "/v1/responses", "data: " + delta(1, "hello") + "\n\ndata: " + completed + "\n\n"},
		{"responses named end, other type", "/v1/responses", "event: response.output_text.delta\ndata: " + delta(1, "hello") + "\n\nevent: response.failed\ndata: " + delta(2, "ZZEND") + "\n\n"},
		{"responses error object", "/v1/responses", "event: response.output_text.delta\ndata: " + delta(1, "hello") + "\n\ndata: {\"error\":{\"message\":\"ZZEND\"}}\n\n"},
		// Escaped in the text, the same to every client's decoder.
		{"responses completed escaped", "/v1/responses", "data: " + delta(1, "hello") + "\n\ndata: " + strings.Replace(completed, `"response.completed"`, `"respons\u0065.completed"`, 1) + "\n\n"},
		{"responses type escaped", "/v1/responses", "data: " + delta(1, "hello") + "\n\ndata: " + strings.Replace(completed, `"type"`, `"\u0074ype"`, 1) + "\n\n"},
		{"chat error object escaped", "/v1/chat/completions", "data: " + chunk("c1", "hello") + "\n\ndata: {\"\u0065rror\":{\"message\":\"ZZEND\",\"type\":\"server_error\"}}\n\n"},
		{"responses error event", "/v1/responses", "event: response.output_text.delta\ndata: " + delta(1, "hello") + "\n\nevent: error\ndata: {\"type\":\"error\",\"code\":\"ZZEND\",\"message\":\"boom\",\"sequence_number\":3}\n\n"},
	} {
		for _, v := range []struct{ masked, tools bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			masked := v.masked
			var more []harnessOption
			if v.tools {
				// The tool-call firewall relays the events it let
				// through as they came.
				more = append(more, withRules(t, toolRules))
			}
			t.Run(fmt.Sprintf("%s/masked=%v/tools=%v", tc.name, masked, v.tools), func(t *testing.T) {
				h := echoHarness(t, azureKey, masked, func(w http.ResponseWriter, _ string) {
					w.Header().Set("Content-Type", "text/event-stream")
					_, _ = io.WriteString(w, tc.end)
					// The relay then waits for more: what it let go of
					// reaches the client before the upstream ends.
					w.(http.Flusher).Flush()
					time.Sleep(100 * time.Millisecond)
				}, more...)
				body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`
				if tc.path == "/v1/responses" {
					body = `{"model":"gpt-4o","stream":true,"input":"hi"}`
				}
				marker := "ZZEND"
				if tc.name == "chat done" {
					marker = "[DONE]"
				}
				assertAuditedBeforeEnd(t, h, "model:*", tc.path, body, marker)
			})
		}
	}
}
