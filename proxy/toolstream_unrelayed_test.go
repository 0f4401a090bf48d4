package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// A tool item a Responses stream carries only where no SDK reads calls
// from (the output of response.created or response.in_progress, an event
// of a type pamctl does not know) is removed, never relayed; it is still
// a proposed call, so the trail has its tool.call event (deny, reason
// "unrelayed event"), once per item.
func TestResponsesStreamUnrelayedCallsAudited(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell"})
	item := respItemJSON("fc_9", "call_9", "delete_repo", `{"repo":"prod"}`)
	mcp := `{"id":"mcp_9","type":"mcp_call","server_label":"gh","name":"delete_repo","arguments":"{}","status":"completed"}`
	created := func(seq int, typ string, items ...string) string {
		return respEv(seq, `"type":"`+typ+`","response":{"id":"resp_1","object":"response","status":"in_progress","output":[`+strings.Join(items, ",")+`]}`)
	}
	for _, c := range []struct {
		name   string
		events []string
		want   []string // target of each tool.call event
	}{
		{"created and in_progress", []string{created(0, "response.created", item), created(1, "response.in_progress", item), respCompleted(2)}, []string{"delete_repo"}},
		{"unknown event", []string{created(0, "response.created"), respEv(1, `"type":"response.foo.bar","output_index":0,"item":`+item), respCompleted(2)}, []string{"delete_repo"}},
		{"unknown event, mcp", []string{created(0, "response.created"), respEv(1, `"type":"response.foo.bar","output_index":0,"item":`+mcp), respCompleted(2)}, []string{"mcp:gh/delete_repo"}},
		{"two items", []string{created(0, "response.created", item, mcp), respCompleted(1)}, []string{"delete_repo", "mcp:gh/delete_repo"}},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(c.events))
		res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
		if res.StatusCode != 200 || strings.Contains(string(b), "delete_repo") || strings.Contains(string(b), "prod") {
			t.Errorf("%s: %d %s", c.name, res.StatusCode, b)
		}
		evs := h.sink.ofType(audit.TypeToolCall)[before:]
		var got []string
		for _, ev := range evs {
			got = append(got, ev.Target)
			if ev.Decision != "deny" || strings.Join(ev.Reasons, ",") != "unrelayed event" || ev.Details["arguments"] != "" {
				t.Errorf("%s: tool.call %s %s %v %q", c.name, ev.Target, ev.Decision, ev.Reasons, ev.Details["arguments"])
			}
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s: tool.call events for %q, want %q", c.name, got, c.want)
		}
	}
}

// A call item counts, and is recorded, once: one in response.created
// that then streams (or shows up in the final output only) is judged
// there and not also recorded as unrelayed; an item without an id in
// response.created and response.in_progress is recorded once; and as many
// calls as the cap allows, each also in response.created, all pass.
func TestResponsesStreamUnrelayedCountedOnce(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell"})
	created := func(seq int, typ string, items ...string) string {
		return respEv(seq, `"type":"`+typ+`","response":{"id":"resp_1","object":"response","status":"in_progress","output":[`+strings.Join(items, ",")+`]}`)
	}
	item := respItemJSON("fc_9", "call_9", "delete_repo", `{"repo":"prod"}`)
	noID := `{"type":"function_call","status":"completed","arguments":"{}","call_id":"call_8","name":"drop_table"}`
	seq := 0
	streamed := append([]string{created(0, "response.created", item)}, respCall(&seq, 0, "fc_9", "call_9", "delete_repo", `{"repo":"prod"}`)...)
	streamed = append(streamed, respCompleted(seq+1, item))
	var many, items []string
	seq = 0
	for i := 0; i < maxToolCalls; i++ {
		items = append(items, respItemJSON(fmt.Sprintf("fc_%d", i), fmt.Sprintf("call_%d", i), "delete_repo", `{}`))
	}
	many = append(many, created(0, "response.created", items...))
	for i := 0; i < maxToolCalls; i++ {
		many = append(many, respCall(&seq, i, fmt.Sprintf("fc_%d", i), fmt.Sprintf("call_%d", i), "delete_repo", `{}`)...)
	}
	many = append(many, respCompleted(seq+1, items...))
	for _, c := range []struct {
		name      string
		events    []string
		calls     int
		unrelayed int
	}{
		{"created, then streamed", streamed, 1, 0},
		{"created, then the final output", []string{created(0, "response.created", item), respCompleted(1, item)}, 1, 0},
		{"created and in_progress, no id", []string{created(0, "response.created", noID), created(1, "response.in_progress", noID), respCompleted(2)}, 1, 1},
		{"created, in_progress and an unknown event", []string{created(0, "response.created", item), created(1, "response.in_progress", item), respEv(2, `"type":"response.foo.bar","output_index":0,"item":`+item), respCompleted(3)}, 1, 1},
		{"the cap, each also in response.created", many, maxToolCalls, 0},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(c.events))
		res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
		if res.StatusCode != 200 || strings.Contains(string(b), CodeToolCallMalformed) {
			t.Errorf("%s: %d %.300s", c.name, res.StatusCode, b)
		}
		evs := h.sink.ofType(audit.TypeToolCall)[before:]
		unrelayed := 0
		seen := map[string]int{}
		for _, ev := range evs {
			seen[ev.Details["call_id"]]++
			if strings.Join(ev.Reasons, ",") == "unrelayed event" {
				unrelayed++
			}
		}
		if len(evs) != c.calls || unrelayed != c.unrelayed {
			t.Errorf("%s: %d tool.call events (%d unrelayed), want %d (%d)", c.name, len(evs), unrelayed, c.calls, c.unrelayed)
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("%s: call %s recorded %d times", c.name, id, n)
			}
		}
	}
}
