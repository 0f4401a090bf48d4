package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// TestLoneSurrogateAnswersWithheld (red team F9): an answer whose JSON
// holds a lone UTF-16 surrogate escape ("victim.doe\ud800@corp-secret.org")
// was relayed as written: Go reads U+FFFD there, so the e-mail detector
// found nothing, and the fast paths pass unchanged text on byte for byte;
// a client that drops lone surrogates reads the address. Such an answer is
// JSON the proxy cannot read as every client does: a buffered one is
// withheld with 502, a stream ends at that event with an error event,
// masking on or off (a vaulted key can be split the same way).
func TestLoneSurrogateAnswersWithheld(t *testing.T) {
	const lonely = `victim.doe\ud800@corp-secret.org`
	chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,` +
		`"message":{"role":"assistant","content":"mail ` + lonely + `"},"finish_reason":"stop"}]}`
	resp := `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o","output":[{"type":"message","id":"m","role":"assistant",` +
		`"content":[{"type":"output_text","text":"mail ` + lonely + `","annotations":[]}]}]}`
	serve := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		stream := strings.Contains(string(b), `"stream":true`)
		switch {
		case r.URL.Path == "/v1/chat/completions" && stream:
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hello "},"finish_reason":null}]}`)
			sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"mail `+lonely+`"},"finish_reason":null}]}`)
			sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`)
			sseWrite(w, "", "[DONE]")
		case r.URL.Path == "/v1/responses" && stream:
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, "response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":1,"item_id":"m","output_index":0,"content_index":0,"delta":"hello ","logprobs":[]}`)
			sseWrite(w, "response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":2,"item_id":"m","output_index":0,"content_index":0,"delta":"mail `+lonely+`","logprobs":[]}`)
			sseWrite(w, "response.completed", `{"type":"response.completed","sequence_number":3,"response":`+resp+`}`)
		case strings.HasPrefix(r.URL.Path, "/v1/chat/completions"):
			writeJSON(w, chat)
		default:
			writeJSON(w, resp)
		}
	}
	for _, masked := range []bool{true, false} {
		var opts []harnessOption
		if masked {
			opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
		}
		h := newHarness(t, opts...)
		h.up.set(serve)
		tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/* endpoint:/v1/chat/completions/*"})
		for _, c := range []struct {
			method, path, body string
			stream             bool
		}{
			{"POST", "/v1/chat/completions", chatWith("hi"), false},
			{"POST", "/v1/responses", `{"model":"gpt-4o","input":"hi"}`, false},
			{"GET", "/v1/chat/completions/chatcmpl-1", "", false},
			{"GET", "/v1/responses/resp_1", "", false},
			{"POST", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, true},
			{"POST", "/v1/responses", `{"model":"gpt-4o","stream":true,"input":"hi"}`, true},
		} {
			res, b := h.do(c.method, c.path, tok, c.body)
			got := string(b)
			bad := strings.Contains(got, "corp-secret") || strings.Contains(got, `\ud800`)
			if c.stream {
				bad = bad || res.StatusCode != 200 || !strings.Contains(got, "hello") ||
					!strings.Contains(got, "event: error") || !strings.Contains(got, CodeUpstreamError) || strings.Contains(got, "[DONE]")
			} else {
				bad = bad || res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError
			}
			if bad {
				t.Errorf("masking %v: %s %s: %d %s", masked, c.method, c.path, res.StatusCode, b)
			}
			if ev := h.sink.last(t); ev.Status < 500 && ev.Error == "" {
				t.Errorf("masking %v: %s %s: the trail records success: %+v", masked, c.method, c.path, ev)
			}
		}
	}
}

// TestLoneSurrogateToolNameWithheld: a tool call whose name holds a lone
// surrogate escape ("sh\ud800ell", which a client dropping it runs as
// shell) never reaches the agent, judged or not, streamed or not.
func TestLoneSurrogateToolNameWithheld(t *testing.T) {
	call := `{"index":0,"id":"call_1","type":"function","function":{"name":"sh\ud800ell","arguments":"{\"command\":\"rm -rf /\"}"}}`
	h := newHarness(t, withRules(t, toolRules))
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[`+call+`]},"finish_reason":null}]}`)
			sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`)
			sseWrite(w, "", "[DONE]")
			return
		}
		writeJSON(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[`+call+`]},"finish_reason":"tool_calls"}]}`)
	})
	tok := h.mint(grant{scope: toolScopes})
	for _, body := range []string{chatWith("hi"), `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`} {
		res, b := h.do("POST", "/v1/chat/completions", tok, body)
		if strings.Contains(string(b), "rm -rf") || strings.Contains(string(b), `sh\ud800ell`) || res.StatusCode == 200 && !strings.Contains(string(b), "event: error") {
			t.Errorf("%s: %d %s", body, res.StatusCode, b)
		}
	}
}
