package proxy

import (
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// The final output of a Responses stream is what an agent SDK runs
// (openai-agents reads response.completed's output). A tool item there
// whose id the stream already showed stands for the judged item only when
// it is the same call; one that says otherwise under that id (another
// tool, call_id or arguments) is a call of its own, judged as what it is
// (one tool.call event); and the same call twice in it is refused, never
// shown twice.
func TestResponsesStreamFinalOutputContradictsStream(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell tool:pwd"})
	ls := respItemJSON("fc_1", "call_1", "shell", `{"command":"ls"}`)
	shown := func(final ...string) []string {
		seq := 0
		evs := append([]string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)},
			respCall(&seq, 0, "fc_1", "call_1", "shell", `{"command":"ls"}`)...)
		return append(evs, respCompleted(seq+1, final...))
	}
	type ev struct{ target, decision string }
	for _, c := range []struct {
		name   string
		final  []string
		events []ev     // the tool.call events
		out    []string // what the final output holds: the call ids of its calls, "msg" for a denied one's message
		fail   bool     // the stream ends malformed
	}{
		{"the same call", []string{ls}, []ev{{"shell", "allow"}}, []string{"call_1"}, false},
		{"e12: another tool under the shown id", []string{ls, respItemJSON("fc_1", "call_2", "delete_repo", `{}`)},
			[]ev{{"shell", "allow"}, {"delete_repo", "deny"}}, []string{"call_1", "msg"}, false},
		{"other arguments under the shown id", []string{respItemJSON("fc_1", "call_1", "shell", `{"command":"rm -rf /"}`)},
			[]ev{{"shell", "allow"}, {"shell", "deny"}}, []string{"msg"}, false},
		{"another call_id under the shown id, allowed", []string{ls, respItemJSON("fc_1", "call_2", "pwd", `{}`)},
			[]ev{{"shell", "allow"}, {"pwd", "allow"}}, []string{"call_1", "call_2"}, false},
		{"the shown call twice", []string{ls, ls}, []ev{{"shell", "allow"}}, nil, true},
		// The call the final output repeats is never judged, and still
		// one tool.call event (deny, without a verdict).
		{"a late call twice", []string{respItemJSON("fc_7", "call_7", "pwd", `{}`), respItemJSON("fc_7", "call_7", "pwd", `{}`)},
			[]ev{{"shell", "allow"}, {"pwd", "deny"}}, nil, true},
		{"the contradicting call twice", []string{respItemJSON("fc_1", "call_2", "pwd", `{}`), respItemJSON("fc_1", "call_2", "pwd", `{}`)},
			[]ev{{"shell", "allow"}, {"pwd", "deny"}}, nil, true},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(shown(c.final...)))
		res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
		body := string(b)
		if res.StatusCode != 200 || strings.Contains(body, "delete_repo\"") || strings.Contains(body, "rm -rf") {
			t.Errorf("%s: %d %s", c.name, res.StatusCode, body)
		}
		var got []ev
		for _, e := range h.sink.ofType(audit.TypeToolCall)[before:] {
			got = append(got, ev{e.Target, e.Decision})
		}
		if len(got) != len(c.events) {
			t.Errorf("%s: tool.call events %v, want %v", c.name, got, c.events)
		} else {
			for i := range got {
				if got[i] != c.events[i] {
					t.Errorf("%s: tool.call events %v, want %v", c.name, got, c.events)
					break
				}
			}
		}
		if c.fail {
			if !strings.Contains(body, CodeToolCallMalformed) || strings.Contains(body, "response.completed") {
				t.Errorf("%s: not refused: %s", c.name, body)
			}
			continue
		}
		v := readResponses(t, body)
		var out []string
		for _, it := range v.final {
			if it["type"] == "message" {
				out = append(out, "msg")
				continue
			}
			out = append(out, it["call_id"].(string))
		}
		if strings.Join(out, " ") != strings.Join(c.out, " ") {
			t.Errorf("%s: final output %v, want %v\n%s", c.name, out, c.out, body)
		}
	}
}

// The same holds where no SDK reads calls from (the output of
// response.in_progress, the item of an event pamctl does not know): under
// a shown item's id, the same call is shown once, as judged; another call
// is removed and recorded as unrelayed, once.
func TestResponsesStreamNonTerminalOutputContradictsStream(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell"})
	ls := respItemJSON("fc_1", "call_1", "shell", `{"command":"ls"}`)
	del := respItemJSON("fc_1", "call_2", "delete_repo", `{"repo":"prod"}`)
	for _, c := range []struct {
		name  string
		extra string // an event after the shown item
		final []string
		want  []string // target+decision of the tool.call events
		shown int      // times call_1 is in the response.in_progress event the client gets (-1: none)
	}{
		{"in_progress", `"type":"response.in_progress","response":{"id":"resp_1","object":"response","status":"in_progress","output":[` + ls + "," + del + "," + ls + `]}`,
			[]string{ls}, []string{"shell allow", "delete_repo deny"}, 1},
		{"unknown event", `"type":"response.foo.bar","output_index":1,"item":` + del,
			[]string{ls}, []string{"shell allow", "delete_repo deny"}, -1},
		{"in_progress, then judged in the final output", `"type":"response.in_progress","response":{"id":"resp_1","object":"response","status":"in_progress","output":[` + del + `]}`,
			[]string{ls, del}, []string{"shell allow", "delete_repo deny"}, 0},
	} {
		seq := 0
		evs := append([]string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)},
			respCall(&seq, 0, "fc_1", "call_1", "shell", `{"command":"ls"}`)...)
		seq++
		evs = append(evs, respEv(seq, c.extra), respCompleted(seq+1, c.final...))
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(evs))
		res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
		body := string(b)
		if res.StatusCode != 200 || strings.Contains(body, "delete_repo\"") || strings.Contains(body, "prod") {
			t.Errorf("%s: %d %s", c.name, res.StatusCode, body)
		}
		var got []string
		for _, e := range h.sink.ofType(audit.TypeToolCall)[before:] {
			got = append(got, e.Target+" "+e.Decision)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: tool.call events %q, want %q", c.name, got, c.want)
		}
		v := readResponses(t, body)
		n := -1 // the event is not relayed
		for _, ev := range strings.Split(body, "\n\n") {
			if strings.Contains(ev, `"response.in_progress"`) {
				n = strings.Count(ev, `"call_1"`)
			}
		}
		if n != c.shown {
			t.Errorf("%s: call_1 %d times in the extra event\n%s", c.name, n, body)
		}
		if len(v.final) != len(c.final) {
			t.Errorf("%s: final output %v", c.name, v.final)
		}
	}
}

// A denied or redacted call the final output repeats as it streamed is
// judged once and stands there as judged; a batch whose one action
// differs in the final output is another call.
func TestResponsesStreamFinalOutputSameCallJudgedOnce(t *testing.T) {
	for _, c := range []struct{ name, args, want string }{
		{"deny_x", `{"path":"a"}`, "msg"},
		{"redact_x", `{"path":"secret"}`, `{"path":"[MASKED]"}`},
	} {
		seq := 0
		evs := append([]string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)},
			respCall(&seq, 0, "fc_1", "call_1", c.name, c.args)...)
		evs = append(evs, respCompleted(seq+1, respItemJSON("fc_1", "call_1", c.name, c.args)))
		got, calls, err := driveBuffer(false, evs, byName)
		if err != nil || len(calls) != 1 {
			t.Fatalf("%s: %v, judged %v", c.name, err, calls)
		}
		v := readResponses(t, got)
		if len(v.final) != 1 {
			t.Fatalf("%s: final %v", c.name, v.final)
		}
		if out := v.final[0]; c.want == "msg" && out["type"] != "message" || c.want != "msg" && out["arguments"] != c.want {
			t.Errorf("%s: final %v", c.name, out)
		}
	}
	batch := func(text string) string {
		return `{"id":"cu_1","type":"computer_call","call_id":"call_c","status":"completed","actions":[{"type":"click","x":1,"y":2,"button":"left"},{"type":"type","text":"` + text + `"}]}`
	}
	evs := []string{
		respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`),
		respEv(1, `"type":"response.output_item.done","output_index":0,"item":`+batch("ls")),
		respCompleted(2, batch("rm -rf /")), // beside batch("ls") it would be call_c twice: refused
	}
	_, calls, err := driveBuffer(false, evs, byName)
	if err != nil || len(calls) != 4 || !strings.Contains(calls[3].Arguments, "rm -rf") {
		t.Fatalf("%v, judged %v", err, calls)
	}
}
