package proxy

import (
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// Every way the firewall drops, adds or rewrites Responses events keeps
// the sequence numbers the client gets contiguous and increasing: events
// after a dropped one, after a judged call's re-emitted events (more or
// fewer than the upstream's), after a denied call's message, text deltas
// the buffer passes without reading them included.
func TestResponsesStreamSequenceNumbersContiguous(t *testing.T) {
	created := respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)
	text := func(seq int, d string) string {
		return respEv(seq, `"type":"response.output_text.delta","item_id":"m1","output_index":1,"content_index":0,"delta":"`+d+`","logprobs":[]`)
	}
	withItem := respEv(1, `"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"hi","item":`+respItemJSON("fc_e", "call_e", "deny_x", `{}`))
	callThen := func(name string) []string {
		seq := 0
		evs := append([]string{created}, respCall(&seq, 0, "fc_1", "call_1", name, `{"path":"a/b/c/d/e"}`)...)
		return append(evs, text(seq+1, "after"), text(seq+2, " the call"), respCompleted(seq+3))
	}
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"e10: an event dropped for its item, then text", []string{created, withItem, text(2, "hi"), text(3, " there"), respCompleted(4)}},
		{"an allowed call re-emitted, then text", callThen("read_file")},
		{"a denied call's message, then text", callThen("deny_x")},
		{"a redacted call, then text", callThen("redact_x")},
		{"an event dropped, then text in two data lines", []string{created, withItem,
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\ndata: \"output_index\":1,\"content_index\":0,\"delta\":\"hi\",\"sequence_number\":2}\n\n",
			respCompleted(3)}},
		{"arguments of no item dropped, then text", []string{created,
			respEv(1, `"type":"response.function_call_arguments.delta","item_id":"fc_9","output_index":0,"delta":"{}"`), text(2, "hi"), respCompleted(3)}},
	} {
		got, _, err := driveBuffer(false, c.events, byName)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		v := readResponses(t, got) // fails on numbers not contiguous
		if len(v.seqs) == 0 || v.seqs[0] != 0 || !v.complete {
			t.Errorf("%s: %v\n%s", c.name, v.seqs, got)
		}
	}
}

// e10 through the proxy, response masking on (the masker strips the item
// and holds the delta's text back, releasing it as an extra delta).
func TestResponsesStreamSequenceNumbersContiguousMasked(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell"})
	del := respItemJSON("fc_e", "call_e", "delete_repo", `{}`)
	for _, delta := range []string{"hi", "call 555", "mail bob@"} {
		evs := []string{
			respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`),
			respEv(1, `"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"`+delta+`","item":`+del),
			respEv(2, `"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"`+delta+`","logprobs":[]`),
			respCompleted(3),
		}
		h.up.set(writeBytes(evs))
		res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
		if res.StatusCode != 200 || strings.Contains(string(b), "delete_repo") {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		v := readResponses(t, string(b))
		if len(v.seqs) == 0 || v.seqs[0] != 0 || !v.complete {
			t.Errorf("%q: %v\n%s", delta, v.seqs, b)
		}
	}
}
