package proxy

import (
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
