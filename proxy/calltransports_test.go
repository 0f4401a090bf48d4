package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// argModes are the ways a call's arguments are tested through the proxy:
// response masking on or off, a tool judge (toolRules) or none.
var argModes = []string{"masked", "masked, judged", "unmasked", "unmasked, judged"}

// argModeHarness is a harness for mode (argModes): response masking of
// every detector when masked, toolRules when judged.
func argModeHarness(t *testing.T, mode string) (h *harness, masked, judged bool) {
	judged, masked = strings.HasSuffix(mode, "judged"), strings.HasPrefix(mode, "masked")
	var opts []harnessOption
	if masked {
		opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	}
	if judged {
		opts = append(opts, withRules(t, toolRules))
	}
	return newHarness(t, opts...), masked, judged
}

// callTransport is one way an upstream answers with a tool call: a whole
// chat answer, a chat stream, a whole Response, a Response stream.
type callTransport struct {
	name, path, body string
	up               http.HandlerFunc
}

// callTransports are the four ways an upstream proposes one function call
// of tool with args (the arguments text, as the upstream spells it).
func callTransports(tool, args string) []callTransport {
	chatAnswer := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"call_1","type":"function","function":{"name":"` + tool + `","arguments":` + jsonStr(args) + `}}]},"finish_reason":"tool_calls"}]}`
	chatStream := append(toolFrags(0, "call_1", tool, args), chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
	respAnswer := `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4o","output":[` + respItemJSON("fc_1", "call_1", tool, args) + `]}`
	seq := 0
	respStream := append([]string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)},
		respCall(&seq, 0, "fc_1", "call_1", tool, args)...)
	respStream = append(respStream, respCompleted(seq+1, respItemJSON("fc_1", "call_1", tool, args)))
	return []callTransport{
		{"chat", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, chatAnswer) }},
		{"chat stream", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}`, writeBytes(chatStream)},
		{"responses", "/v1/responses", `{"model":"gpt-4o","input":"x"}`, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, respAnswer) }},
		{"responses stream", "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`, writeBytes(respStream)},
	}
}
