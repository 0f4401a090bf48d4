package proxy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// readSeqs reads a Responses stream as an SDK does, event by event, and
// returns every event's sequence_number (-1: none) and the last event's
// data.
func readSeqs(t *testing.T, stream string) ([]int64, string) {
	t.Helper()
	var seqs []int64
	last := ""
	for _, ev := range strings.Split(stream, "\n\n") {
		if strings.TrimSpace(ev) == "" || strings.HasPrefix(ev, ":") {
			continue
		}
		_, data := sseFields([]byte(ev + "\n\n"))
		var o struct {
			Seq *int64 `json:"sequence_number"`
		}
		if err := json.Unmarshal([]byte(data), &o); err != nil {
			t.Fatalf("unreadable event %q", data)
		}
		n := int64(-1)
		if o.Seq != nil {
			n = *o.Seq
		}
		seqs, last = append(seqs, n), data
	}
	return seqs, last
}

// pamctl's own error event that ends a Responses stream (the upstream
// cut it short, the firewall ended it, the trail refused the call) takes
// the next sequence_number after the last event the client got, so an
// SDK that checks them sees them contiguous through the end: with and
// without a tool judge, with text the masker held back released before
// it, after events of a call the firewall held and dropped.
func TestResponsesStreamErrorEndNumbered(t *testing.T) {
	text := func(seq int, d string) string {
		return respEv(seq, `"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"`+d+`","logprobs":[]`)
	}
	typeChanged := respEv(3, `"type":"response.output_item.done","output_index":1,"item":{"id":"fc_1","type":"custom_tool_call","status":"completed","input":"x","call_id":"call_1","name":"shell"}`)
	for _, c := range []struct {
		name   string
		judge  bool
		masked bool
		fail   bool // the trail refuses the call's event
		events []string
		code   string
	}{
		{"cut short", false, false, false, []string{respCreated(), text(1, "hi"), text(2, " there")}, CodeStreamInterrupted},
		{"cut short, masked text held back", false, true, false, []string{respCreated(), text(1, "mail bob@")}, CodeStreamInterrupted},
		{"cut short, judged", true, false, false, []string{respCreated(), text(1, "hi"), text(2, " there")}, CodeStreamInterrupted},
		{"cut short mid-call", true, false, false, []string{respCreated(), text(1, "hi"), respAdded(2, 1, "fc_1", "call_1", "shell"), respArgDelta(3, 1, "fc_1", `{"command":`)}, CodeStreamInterrupted},
		{"the firewall ends it", true, false, false, []string{respCreated(), text(1, "hi"), respAdded(2, 1, "fc_1", "call_1", "shell"), typeChanged}, CodeToolCallMalformed},
		{"the trail refuses the call", false, false, true, []string{respCreated(), text(1, "hi"), respCompleted(2)}, ""},
		{"the trail refuses the call, judged", true, false, true, []string{respCreated(), text(1, "hi"), respCompleted(2)}, ""},
	} {
		var opts []harnessOption
		if c.judge {
			opts = append(opts, withRules(t, []rules.Rule{{Name: "no-rm", Target: rules.TargetToolCall, Tool: "shell", Pattern: `rm`, Action: rules.Deny}}))
		}
		if c.masked {
			opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
		}
		h := newHarness(t, opts...)
		tok := h.mint(grant{scope: "model:gpt-4o"})
		h.up.set(writeBytes(c.events))
		h.sink.fail.Store(c.fail)
		_, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
		h.sink.fail.Store(false)
		seqs, last := readSeqs(t, string(b))
		if !strings.Contains(last, `"error":{`) || c.code != "" && !strings.Contains(last, `"code":"`+c.code+`"`) {
			t.Errorf("%s: the stream ends with %s\n%s", c.name, last, b)
			continue
		}
		for i, n := range seqs {
			if n != int64(i) {
				t.Errorf("%s: sequence numbers %v, want 0..%d\n%s", c.name, seqs, len(seqs)-1, b)
				break
			}
		}
	}
}

// A stream whose events carry no sequence_number gets none on pamctl's
// error event either; a chat stream's error event has none.
func TestStreamErrorEndUnnumbered(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	h.up.set(writeBytes([]string{"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n"}))
	_, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
	if seqs, last := readSeqs(t, string(b)); len(seqs) != 2 || seqs[1] != -1 || !strings.Contains(last, CodeStreamInterrupted) {
		t.Errorf("unnumbered stream: %v\n%s", seqs, b)
	}
	h.up.set(writeBytes([]string{chatChunk(`{"content":"hi"}`, "")}))
	_, b = h.do("POST", "/v1/chat/completions", tok, streamReq)
	if strings.Contains(string(b), "sequence_number") || !strings.Contains(string(b), CodeStreamInterrupted) {
		t.Errorf("chat stream: %s", b)
	}
}

// eventSeq reads the top-level number only: not one nested in a member
// or spelled in a string, whatever the layout.
func TestEventSeq(t *testing.T) {
	for ev, want := range map[string]int64{
		"event: x\ndata: {\"type\":\"x\",\"sequence_number\":7}\n\n":             7,
		"data: {\"sequence_number\": 7 }\r\n\r\n":                                7,
		"data: {\"sequence_number\":7,\"a\":{\"sequence_number\":9}}\n\n":        7,
		"data: {\"a\":{\"sequence_number\":9},\"sequence_number\":7}\n\n":        7,
		"data: {\"sequence_number\":7,\"a\":\"\\\"sequence_number\\\":9}\"}\n\n": 7,
		"data: {\"a\":{\"sequence_number\":9}}\n\n":                              -1,
		"data: {\"a\":\"\\\"sequence_number\\\":9}\"}\n\n":                       -1,
		"data: {\"sequence_number\":\"7\"}\n\n":                                  -1,
		"data: {\"a\":1,\ndata: \"sequence_number\":7}\n\n":                      7,
		"data: {\"a\":{\"b\":1,\ndata: \"sequence_number\":9}}\n\n":              -1,
		"data: {\"sequence_number\":1.5}\n\n":                                    -1,
	} {
		n, ok := eventSeq([]byte(ev))
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("%q: %d, want %d", ev, n, want)
		}
	}
}

// eventSeq reads the top-level sequence_number, never a member whose key
// only ends in the text "sequence_number (an escaped quote before it):
// the fast path takes the last match only when it is a key, and the
// error event pamctl ends a stream with is numbered on from the real one.
func TestEventSeqReadsOnlyTheKey(t *testing.T) {
	for _, c := range []struct {
		data string
		want int64
		ok   bool
	}{
		{`{"type":"response.output_text.delta","sequence_number":4,"x \"sequence_number":999}`, 4, true},
		{`{"type":"t","sequence_number":4,"x\\\"sequence_number":999}`, 4, true},
		{`{"type":"t","sequence_number":4,"a":"\"sequence_number\":999}"}`, 4, true},
		{`{"type":"t","x \"sequence_number":999}`, 0, false},
		{`{"type":"t","sequence_number":7}`, 7, true},
		{`{"type":"t", "sequence_number" : 8 }`, 8, true},
		{`{"sequence_number":9}`, 9, true},
	} {
		n, ok := eventSeq([]byte("data: " + c.data + "\n\n"))
		if n != c.want || ok != c.ok {
			t.Errorf("eventSeq(%s) = %d, %v; want %d, %v", c.data, n, ok, c.want, c.ok)
		}
	}

	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	odd := "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"output_index\":0,\"content_index\":0,\"delta\":\"hi\",\"logprobs\":[],\"sequence_number\":1,\"x \\\"sequence_number\":999}\n\n"
	h.up.set(writeBytes([]string{respCreated(), odd}))
	_, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
	seqs, _ := readSeqs(t, string(b))
	for i, n := range seqs {
		if n != int64(i) {
			t.Errorf("sequence numbers %v, want 0..%d\n%s", seqs, len(seqs)-1, b)
			break
		}
	}
}

// Reading a Responses event's number costs no allocation wherever the
// upstream put the member (the hot path: every event of every
// Responses stream is read), and reads the same number as the general path.
func TestEventSeqAllocatesNothing(t *testing.T) {
	for _, ev := range []string{
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":12,\"item_id\":\"m1\",\"output_index\":0,\"content_index\":0,\"delta\":\"hi\"}\n\n",
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"delta\":\"hi\",\"sequence_number\":12}\n\n",
		"id: 4\r\nevent: response.created\r\ndata: {\"type\":\"response.created\",\"sequence_number\":12,\"response\":{\"id\":\"r\",\"sequence_number\":99}}\r\n\r\n",
	} {
		if n, ok := eventSeq([]byte(ev)); !ok || n != 12 {
			t.Errorf("eventSeq(%q) = %d, %v; want 12", ev, n, ok)
		}
		b := []byte(ev)
		if a := testing.AllocsPerRun(100, func() { eventSeq(b) }); a != 0 {
			t.Errorf("eventSeq(%q): %v allocations, want none", ev, a)
		}
	}
	// two data lines: the general path joins them
	if n, ok := eventSeq([]byte("event: x\ndata: {\"a\":1,\ndata: \"sequence_number\":5,\"b\":2}\n\n")); !ok || n != 5 {
		t.Errorf("an event of two data lines: %d, %v; want 5", n, ok)
	}
}
