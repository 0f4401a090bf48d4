package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// End to end: a Responses stream through the proxy, masking on (and no
// masking: the vaulted key is still scrubbed, as a stream).
func responsesProxy(t *testing.T, masking bool, events []string) string {
	t.Helper()
	var h *harness
	if masking {
		h = newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	} else {
		h = newHarness(t)
	}
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range events {
			_, _ = io.WriteString(w, "data: "+e+"\n\n")
		}
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","stream":true,"input":"hi"}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	return string(b)
}

// Through the proxy: a content part's text, then a delta; Node and
// Python append the delta to the part's text.
func TestResponsesProxyPartTextThenDelta(t *testing.T) {
	for _, c := range []struct {
		masking    bool
		head, tail string
		secret     string
	}{
		{true, "mail ann", "@example.com, thanks", "ann@example.com"},
		{false, "key " + vaultedKey[:20], vaultedKey[20:] + " thanks", vaultedKey},
	} {
		b := responsesProxy(t, c.masking, []string{
			`{"type":"response.created","sequence_number":0,"response":{"id":"r","object":"response","status":"in_progress","output":[]}}`,
			`{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}`,
			`{"type":"response.content_part.added","sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":` + jsonQ(c.head) + `}}`,
			`{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":` + jsonQ(c.tail) + `,"logprobs":[]}`,
			`{"type":"response.completed","sequence_number":4,"response":{"id":"r","object":"response","status":"completed","output":[]}}`,
		})
		if strings.Contains(b, `"code":"upstream_error"`) {
			continue
		}
		if strings.Contains(b, c.head) && strings.Contains(b, c.tail[:8]) {
			t.Errorf("masking %v: the part's text %q and the delta %q both reach the client (Node/Python snapshot: %q):\n%s", c.masking, c.head, c.tail, c.head+c.tail, b)
		}
	}
}

// Through the proxy: a shell call with two commands streams whole.
func TestResponsesProxyShellTwoCommands(t *testing.T) {
	b := responsesProxy(t, true, []string{
		`{"type":"response.created","sequence_number":0,"response":{"id":"r","object":"response","status":"in_progress","output":[]}}`,
		`{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"call_1","status":"in_progress","action":{"commands":[]}}}`,
		`{"type":"response.shell_call_command.added","sequence_number":2,"output_index":0,"command_index":0,"command":""}`,
		`{"type":"response.shell_call_command.delta","sequence_number":3,"output_index":0,"command_index":0,"delta":"ls -la"}`,
		`{"type":"response.shell_call_command.done","sequence_number":4,"output_index":0,"command_index":0,"command":"ls -la"}`,
		`{"type":"response.shell_call_command.added","sequence_number":5,"output_index":0,"command_index":1,"command":""}`,
		`{"type":"response.shell_call_command.delta","sequence_number":6,"output_index":0,"command_index":1,"delta":"pwd"}`,
		`{"type":"response.shell_call_command.done","sequence_number":7,"output_index":0,"command_index":1,"command":"pwd"}`,
		`{"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"call_1","status":"completed","action":{"commands":["ls -la","pwd"]}}}`,
		`{"type":"response.completed","sequence_number":9,"response":{"id":"r","object":"response","status":"completed","output":[]}}`,
	})
	if strings.Contains(b, "upstream_error") {
		t.Errorf("a two-command shell call ended with upstream_error:\n%s", b)
	}
	for _, l := range strings.Split(b, "\n") {
		if strings.Contains(l, "shell_call_command.delta") && strings.HasPrefix(l, "data:") && !strings.Contains(l, "command_index") {
			t.Errorf("a shell command delta without command_index (Node throws 'missing command at index undefined'): %s", l)
		}
	}
}

// jsonQ is s as a JSON string.
func jsonQ(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
