package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// An upstream that splits an address over a case-variant member (a chat
// delta's Content, a Responses event's Type), over a field's end (a
// choice's finish, a Responses text's .done), or over two item ids of one
// Responses output gets its stream ended with upstream_error, told apart
// in the message and the audit detail; some client would otherwise rejoin
// the address (the relay masked each part alone).
func TestStreamSplitsThatWouldRejoinEndTheStream(t *testing.T) {
	chunk := func(delta, finish string) string {
		return `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}`
	}
	delta := func(typ, rest string) string {
		return `{"` + typ + `":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,` + rest + `}`
	}
	for _, tc := range []struct {
		name, path, first, second, message, detail string
	}{
		{"Content", "chat", chunk(`{"content":"mail bob"}`, "null"), chunk(`{"Content":"@example.org"}`, "null"), "in another letter case", "JSON the proxy cannot read"},
		{"after the finish", "chat", chunk(`{"content":"mail bob"}`, "null"), chunk(`{}`, `"stop"`) + "\n\ndata: " + chunk(`{"content":"@example.org"}`, "null"), "more text for a choice", "text after its end"},
		{"responses Type", "responses", delta("type", `"delta":"mail bob"`), delta("Type", `"delta":"@example.org"`), "in another letter case", "JSON the proxy cannot read"},
		{"responses one output, two items", "responses", delta("type", `"delta":"mail bob"`), strings.Replace(delta("type", `"delta":"@example.org"`), `"msg_1"`, `"msg_2"`, 1), "under two item ids", "one output under two items"},
		{"responses after done", "responses", delta("type", `"delta":"mail bob"`),
			`{"type":"response.output_text.done","item_id":"msg_1","output_index":0,"content_index":0,"text":"mail bob"}` + "\n\ndata: " + delta("type", `"delta":"@example.org"`), "more text for a choice or an output", "text after its end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				end := "data: [DONE]\n\n"
				if tc.path == "responses" {
					end = `data: {"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}}` + "\n\n"
				}
				_, _ = io.WriteString(w, "data: "+tc.first+"\n\ndata: "+tc.second+"\n\n"+end)
			})
			path, body := "/v1/chat/completions", streamReq
			if tc.path == "responses" {
				path, body = "/v1/responses", `{"model":"gpt-4o","stream":true,"input":"hi"}`
			}
			res, b := h.do("POST", path, h.mint(grant{scope: "model:gpt-4o"}), body)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, b)
			}
			if !strings.Contains(string(b), `"code":"upstream_error"`) || !strings.Contains(string(b), tc.message) {
				t.Errorf("the stream did not end with the upstream_error event: %q", b)
			}
			if strings.Contains(string(b), "example.org") {
				t.Errorf("the address's second half reached the client: %q", b)
			}
			if e := h.sink.last(t); !strings.Contains(e.Error, "upstream_error") || !strings.Contains(e.Details["detail"], tc.detail) {
				t.Errorf("audit: error %q, detail %q", e.Error, e.Details["detail"])
			}
		})
	}
}
