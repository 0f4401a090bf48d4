package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// Two tool items at one output_index end the stream as malformed:
// readers that key streamed calls by output_index (LangChain's Responses
// chunks: tool_call_chunks index = output_index, merged by index) would
// join them into a call no one judged ("sh" {"command":"rm -rf /srv"}
// and "ell" "" as shell rm -rf). Each call is recorded once: one judged
// keeps its verdict's event, the others are deny, "output_index twice".
func TestResponsesStreamTwoItemsOneOutputIndex(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	rm := `{"command":"rm -rf /srv"}`
	seq := 0
	sequential := append([]string{respCreated()}, respCall(&seq, 0, "fc_1", "call_1", "sh", rm)...)
	sequential = append(sequential, respCall(&seq, 0, "fc_2", "call_2", "ell", ``)...)
	sequential = append(sequential, respCompleted(seq+1, respItemJSON("fc_1", "call_1", "sh", rm), respItemJSON("fc_2", "call_2", "ell", ``)))

	interleaved := []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "sh"), respAdded(2, 0, "fc_2", "call_2", "ell"),
		respArgDelta(3, 0, "fc_1", rm), respCompleted(4, respItemJSON("fc_1", "call_1", "sh", rm), respItemJSON("fc_2", "call_2", "ell", ``))}

	doneOnly := append([]string{respCreated()}, respCall(&seq, 1, "fc_1", "call_1", "sh", rm)...)
	doneOnly = append(doneOnly, respEv(seq+1, fmt.Sprintf(`"type":"response.output_item.done","output_index":1,"item":%s`, respItemJSON("fc_2", "call_2", "ell", ``))))

	acts := computerItem("cu_1", "call_9", "in_progress", `{"type":"type","text":"a"}`, `{"type":"type","text":"b"}`)
	batch := append([]string{respCreated()}, respCall(&seq, 0, "fc_1", "call_1", "sh", rm)...)
	batch = append(batch, respEv(seq+1, fmt.Sprintf(`"type":"response.output_item.added","output_index":0,"item":%s`, acts)))

	noID := func(seq int, name string) string {
		return respEv(seq, fmt.Sprintf(`"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","status":"completed","arguments":"{}","call_id":"call_%s","name":%q}`, name, name))
	}
	for _, c := range []struct {
		name   string
		events []string
		want   []string
	}{
		{"two items without an id", []string{respCreated(), noID(1, "sh"), noID(2, "ell")}, []string{"sh allow ", "ell deny output_index twice"}},
		{"one after the other", sequential, []string{"sh allow ", "ell deny output_index twice"}},
		{"interleaved", interleaved, []string{"sh deny output_index twice", "ell deny output_index twice"}},
		{"a done without added", doneOnly, []string{"sh allow ", "ell deny output_index twice"}},
		{"a computer_call batch", batch, []string{"sh allow ", "computer_use deny output_index twice", "computer_use deny output_index twice"}},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(c.events))
		_, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
		s := string(b)
		if !strings.Contains(s, CodeToolCallMalformed) || strings.Contains(s, "fc_2") || strings.Contains(s, "cu_1") || strings.Contains(s, "response.completed") {
			t.Errorf("%s: not refused:\n%s", c.name, s)
		}
		var got []string
		for _, ev := range h.sink.ofType(audit.TypeToolCall)[before:] {
			got = append(got, toolCallSummary(ev))
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: tool.call events %q, want %q", c.name, got, c.want)
		}
	}
}
