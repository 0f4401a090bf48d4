package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// TestDataMemberMaskedEverywhere (red team F2): a member named like a
// base64 payload ("data") or a structural member, holding an object,
// nested anywhere in a chat or Responses answer, reached the client
// unmasked: masking skipped the whole subtree by its name. openai-python
// keeps such members (model_extra, to_dict()), so an agent that logs the
// answer logged the address. Every route that masks answers must mask it:
// chat and Responses calls, buffered and streamed, and stored answers.
func TestDataMemberMaskedEverywhere(t *testing.T) {
	const secret = "victim.doe@corp-secret.org"
	note := `{"note":"mail ` + secret + `"}`
	chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,` +
		`"message":{"role":"assistant","content":"ok","data":` + note + `},"finish_reason":"stop"}]}`
	resp := `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o","output":[{"type":"message","id":"m","role":"assistant",` +
		`"content":[{"type":"output_text","text":"ok","annotations":[],"data":` + note + `}],"result":` + note + `}]}`
	msgs := `{"object":"list","data":[{"id":"m","role":"assistant","content":"ok","data":` + note + `}]}`
	h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		stream := strings.Contains(string(b), `"stream":true`)
		switch r.URL.Path {
		case "/v1/chat/completions":
			if stream {
				w.Header().Set("Content-Type", "text/event-stream")
				sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"ok","data":`+note+`},"finish_reason":null}]}`)
				sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"data":`+note+`}`)
				sseWrite(w, "", "[DONE]")
				return
			}
			writeJSON(w, chat)
		case "/v1/chat/completions/chatcmpl-1":
			writeJSON(w, chat)
		case "/v1/chat/completions/chatcmpl-1/messages":
			writeJSON(w, msgs)
		case "/v1/responses", "/v1/responses/resp_1":
			if stream {
				w.Header().Set("Content-Type", "text/event-stream")
				sseWrite(w, "response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":1,"item_id":"m","output_index":0,"content_index":0,"delta":"ok","data":`+note+`}`)
				sseWrite(w, "response.completed", `{"type":"response.completed","sequence_number":2,"response":`+resp+`}`)
				return
			}
			writeJSON(w, resp)
		default:
			http.NotFound(w, r)
		}
	})
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/* endpoint:/v1/chat/completions/*"})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions", chatWith("hi")},
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/responses", `{"model":"gpt-4o","input":"hi"}`},
		{"POST", "/v1/responses", `{"model":"gpt-4o","stream":true,"input":"hi"}`},
		{"GET", "/v1/chat/completions/chatcmpl-1", ""},
		{"GET", "/v1/chat/completions/chatcmpl-1/messages", ""},
		{"GET", "/v1/responses/resp_1", ""},
	} {
		res, b := h.do(c.method, c.path, tok, c.body)
		if res.StatusCode != 200 || strings.Contains(string(b), secret) || !strings.Contains(string(b), "mail [EMAIL]") {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, res.StatusCode, b)
		}
	}
}
