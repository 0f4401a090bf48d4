package proxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/toolcall"
)

// computer_call batches, tool_search_call and program items on streams,
// and keys that equal a read key only under case folding.

// itemsJudge denies calls whose arguments mention rm -rf or DROP, redacts
// ghp_SECRET, allows the rest.
func itemsJudge(c toolcall.Call) toolcall.Verdict {
	switch {
	case strings.Contains(c.Arguments, "rm -rf") || strings.Contains(c.Arguments, "DROP"):
		return toolcall.Verdict{Action: toolcall.Deny, Rule: "no-rm", Message: "Tool " + c.Tool() + " is blocked by rule no-rm."}
	case strings.Contains(c.Arguments, "ghp_SECRET"):
		return toolcall.Verdict{Action: toolcall.Redact, Rule: "mask", Arguments: strings.ReplaceAll(c.Arguments, "ghp_SECRET", "[MASKED]")}
	}
	return toolcall.Verdict{Action: toolcall.Allow}
}

// computerItem is a computer_call with a batch of actions (JSON objects).
func computerItem(id, callID, status string, actions ...string) string {
	return fmt.Sprintf(`{"id":%q,"type":"computer_call","call_id":%q,"status":%q,"pending_safety_checks":[],"actions":[%s]}`, id, callID, status, strings.Join(actions, ","))
}

// itemEvents is an item at output index oi as added (in progress: added)
// and done (done), with extra events of the item between them.
func itemEvents(seq *int, oi int, added, done string, between ...string) []string {
	next := func() int { *seq++; return *seq }
	out := []string{respEv(next(), fmt.Sprintf(`"type":"response.output_item.added","output_index":%d,"item":%s`, oi, added))}
	for _, b := range between {
		out = append(out, respEv(next(), b))
	}
	return append(out, respEv(next(), fmt.Sprintf(`"type":"response.output_item.done","output_index":%d,"item":%s`, oi, done)))
}

func TestResponsesStreamComputerActions(t *testing.T) {
	okActs := []string{`{"type":"click","x":10,"y":20,"button":"left"}`, `{"type":"type","text":"ls"}`, `{"type":"keypress","keys":["ENTER"]}`}
	badActs := []string{`{"type":"click","x":1,"y":1,"button":"left"}`, `{"type":"type","text":"rm -rf /srv"}`, `{"type":"keypress","keys":["ENTER"]}`}
	redActs := []string{`{"type":"type","text":"token ghp_SECRET"}`, `{"type":"drag","path":[{"x":1,"y":2},{"x":3,"y":4}]}`}
	seq := 0
	events := []string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)}
	events = append(events, itemEvents(&seq, 0, computerItem("cu_ok", "call_ok", "in_progress"), computerItem("cu_ok", "call_ok", "completed", okActs...))...)
	events = append(events, itemEvents(&seq, 1, computerItem("cu_rm", "call_rm", "in_progress"), computerItem("cu_rm", "call_rm", "completed", badActs...))...)
	events = append(events, itemEvents(&seq, 2, computerItem("cu_red", "call_red", "in_progress"), computerItem("cu_red", "call_red", "completed", redActs...))...)
	events = append(events, respCompleted(seq+1,
		computerItem("cu_ok", "call_ok", "completed", okActs...),
		computerItem("cu_rm", "call_rm", "completed", badActs...),
		computerItem("cu_red", "call_red", "completed", redActs...),
		// Only in the final output: a single action and a batch.
		`{"id":"cu_late","type":"computer_call","call_id":"call_late","status":"completed","pending_safety_checks":[],"action":{"type":"screenshot"},"actions":[{"type":"type","text":"DROP TABLE x"}]}`))
	got, calls, err := driveBuffer(false, events, itemsJudge)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, c := range calls {
		if c.Tool() != "computer_use" {
			t.Errorf("judged as %q", c.Tool())
		}
		args = append(args, c.ID+" "+c.Arguments)
	}
	want := []string{
		`call_ok {"button":"left","type":"click","x":10,"y":20}`, `call_ok {"text":"ls","type":"type"}`, `call_ok {"keys":["ENTER"],"type":"keypress"}`,
		`call_rm {"button":"left","type":"click","x":1,"y":1}`, `call_rm {"text":"rm -rf /srv","type":"type"}`, `call_rm {"keys":["ENTER"],"type":"keypress"}`,
		`call_red {"text":"token ghp_SECRET","type":"type"}`, `call_red {"path":[{"x":1,"y":2},{"x":3,"y":4}],"type":"drag"}`,
		`call_late {"type":"screenshot"}`, `call_late {"text":"DROP TABLE x","type":"type"}`,
	}
	if strings.Join(args, "\n") != strings.Join(want, "\n") {
		t.Fatalf("judged\n%s\nwant\n%s", strings.Join(args, "\n"), strings.Join(want, "\n"))
	}
	rest := strings.ReplaceAll(got, "Tool computer_use is blocked by rule no-rm.", "")
	for _, leak := range []string{"rm -rf", "cu_rm", "call_rm", "ghp_SECRET", "DROP", "cu_late"} {
		if strings.Contains(rest, leak) {
			t.Errorf("%q reached the client:\n%s", leak, got)
		}
	}
	v := readResponses(t, got)
	if !v.complete || len(v.final) != 4 || len(v.done) != 3 {
		t.Fatalf("stream %v", v.types)
	}
	for i, typ := range []string{"computer_call", "message", "computer_call", "message"} {
		if v.final[i]["type"] != typ {
			t.Errorf("output[%d]: %s", i, finalItem(v, i))
		}
	}
	if s := finalItem(v, 0); !strings.Contains(s, `"actions":[{"button":"left","type":"click","x":10,"y":20},{"text":"ls","type":"type"},{"keys":["ENTER"],"type":"keypress"}]`) {
		t.Errorf("allowed batch: %s", s)
	}
	if s := finalItem(v, 2); !strings.Contains(s, `{"text":"token [MASKED]","type":"type"}`) || !strings.Contains(s, `{"path":[{"x":1,"y":2},{"x":3,"y":4}],"type":"drag"}`) {
		t.Errorf("redacted batch: %s", s)
	}
	for i := range v.done {
		a, _ := json.Marshal(v.done[i])
		if string(a) != finalItem(v, i) {
			t.Errorf("item %d: done %s, final %s", i, a, finalItem(v, i))
		}
	}
}

// tool_search_call and program items are calls: held until done, judged as
// tool_search and programmatic_tool_calling with their arguments / code,
// never relayed unjudged (their own streamed events included).
func TestResponsesStreamToolSearchAndProgram(t *testing.T) {
	seq := 0
	events := []string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)}
	events = append(events, itemEvents(&seq, 0,
		`{"id":"ts_1","type":"tool_search_call","call_id":"c1","execution":"client","status":"in_progress","arguments":{}}`,
		`{"id":"ts_1","type":"tool_search_call","call_id":"c1","execution":"client","status":"completed","arguments":{"query":"crm","token":"ghp_SECRET"}}`)...)
	events = append(events, itemEvents(&seq, 1,
		`{"id":"pg_1","type":"program","call_id":"c2","code":"","fingerprint":"f"}`,
		`{"id":"pg_1","type":"program","call_id":"c2","code":"await tools.shell('rm -rf /')","fingerprint":"f"}`,
		`"type":"response.program_code.delta","item_id":"pg_1","output_index":1,"delta":"await tools.shell('rm -rf /')"`)...)
	events = append(events, itemEvents(&seq, 2,
		`{"id":"pg_2","type":"program","call_id":"c3","code":"","fingerprint":"g"}`,
		`{"id":"pg_2","type":"program","call_id":"c3","code":"await tools.ls()","fingerprint":"g"}`)...)
	events = append(events, itemEvents(&seq, 3,
		`{"id":"ts_2","type":"tool_search_call","call_id":"c4","execution":"server","status":"in_progress"}`,
		`{"id":"ts_2","type":"tool_search_call","call_id":"c4","execution":"server","status":"completed","arguments":"{\"query\":\"DROP\"}"}`)...)
	events = append(events, respCompleted(seq+1,
		`{"id":"ts_1","type":"tool_search_call","call_id":"c1","execution":"client","status":"completed","arguments":{"query":"crm","token":"ghp_SECRET"}}`,
		`{"id":"pg_1","type":"program","call_id":"c2","code":"await tools.shell('rm -rf /')","fingerprint":"f"}`,
		`{"id":"pg_2","type":"program","call_id":"c3","code":"await tools.ls()","fingerprint":"g"}`,
		`{"id":"ts_2","type":"tool_search_call","call_id":"c4","execution":"server","status":"completed","arguments":"{\"query\":\"DROP\"}"}`))
	got, calls, err := driveBuffer(false, events, itemsJudge)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 4 ||
		calls[0].Tool() != "tool_search" || calls[0].ID != "c1" || calls[0].Arguments != `{"query":"crm","token":"ghp_SECRET"}` ||
		calls[1].Tool() != "programmatic_tool_calling" || calls[1].ID != "c2" || calls[1].Arguments != `await tools.shell('rm -rf /')` ||
		calls[2].Tool() != "programmatic_tool_calling" || calls[2].Arguments != `await tools.ls()` ||
		calls[3].Tool() != "tool_search" || calls[3].Arguments != `{"query":"DROP"}` {
		t.Fatalf("judged %+v", calls)
	}
	rest := strings.NewReplacer("Tool programmatic_tool_calling is blocked by rule no-rm.", "", "Tool tool_search is blocked by rule no-rm.", "").Replace(got)
	for _, leak := range []string{"rm -rf", "pg_1", "program_code", "ghp_SECRET", "DROP", "ts_2"} {
		if strings.Contains(rest, leak) {
			t.Errorf("%q reached the client:\n%s", leak, got)
		}
	}
	v := readResponses(t, got)
	if !v.complete || len(v.final) != 4 {
		t.Fatalf("stream %v", v.types)
	}
	for i, typ := range []string{"tool_search_call", "message", "program", "message"} {
		if v.final[i]["type"] != typ {
			t.Errorf("output[%d]: %s", i, finalItem(v, i))
		}
	}
	if s := finalItem(v, 0); !strings.Contains(s, `"arguments":{"query":"crm","token":"[MASKED]"}`) {
		t.Errorf("redacted search: %s", s)
	}
	if s := finalItem(v, 2); !strings.Contains(s, `"code":"await tools.ls()"`) || !strings.Contains(s, `"fingerprint":"g"`) {
		t.Errorf("allowed program: %s", s)
	}
}

// Keys that differ from one the firewall reads only under Unicode case
// folding (ASCII case, ſ U+017F, K U+212A), beside the real key or
// instead of it, anywhere in a tool call's chunk or item, and duplicate
// keys: the stream ends as malformed, the call is never relayed.
func TestToolStreamRefusesCaseVariantKeys(t *testing.T) {
	const secret = "rm -rf /SECRET"
	args := `{"command":"` + secret + `"}`
	// A chat call whose arguments stream a byte a chunk, with one hostile
	// chunk after the first third of them.
	chatWith := func(hostile string) []string {
		frags := toolFrags(0, "call_1", "get_time", args)
		out := append([]string{}, frags[:len(frags)/3]...)
		out = append(out, chatChunk(hostile, ""))
		out = append(out, frags[len(frags)/3:]...)
		return append(out, chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
	}
	done := respCompleted(9)
	respWith := func(items ...string) []string {
		var out []string
		for i, it := range items {
			out = append(out, respEv(i+1, fmt.Sprintf(`"type":"response.output_item.done","output_index":0,"item":%s`, it)))
		}
		return append(out, done)
	}
	act := `{"type":"type","text":"` + secret + `"}`
	for name, c := range map[string]struct {
		chat   bool
		events []string
	}{
		"chat Arguments beside arguments": {true, chatWith(`{"tool_calls":[{"index":0,"function":{"Arguments":"x"}}]}`)},
		"chat argumentſ":                  {true, chatWith(`{"tool_calls":[{"index":0,"function":{"argumentſ":"x"}}]}`)},
		"chat escaped long s":             {true, chatWith(`{"tool_calls":[{"index":0,"function":{"argument\u017f":"x"}}]}`)},
		"chat NAME":                       {true, chatWith(`{"tool_calls":[{"index":0,"function":{"NAME":"deny_x"}}]}`)},
		"chat Function":                   {true, chatWith(`{"tool_calls":[{"index":0,"Function":{"name":"deny_x","arguments":"{}"}}]}`)},
		"chat cuſtom":                     {true, chatWith(`{"tool_calls":[{"index":1,"type":"custom","cuſtom":{"name":"deny_x","input":"x"}}]}`)},
		"chat Index":                      {true, chatWith(`{"tool_calls":[{"Index":1,"function":{"arguments":"x"}}]}`)},
		"chat duplicate arguments":        {true, chatWith(`{"tool_calls":[{"index":0,"function":{"arguments":"x","arguments":"y"}}]}`)},
		"chat fragment in Delta":          {true, chatWith(`{"content":null}},{"index":0,"Delta":{"tool_calls":[{"index":0,"function":{"arguments":"x"}}]}`)},
		"responses Actions":               {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","action":{"type":"screenshot"},"Actions":[` + act + `]}`)},
		"responses Action with a batch":   {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","Action":` + act + `,"actions":[{"type":"screenshot"}]}`)},
		"responses actionſ":               {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","actionſ":[` + act + `]}`)},
		"responses Text in an action":     {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","actions":[{"type":"type","Text":"` + secret + `"}]}`)},
		"responses Kelvin keys":           {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","actions":[{"type":"keypress","\u212aeys":["` + secret + `"]}]}`)},
		"responses Y in a drag path":      {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","actions":[{"type":"drag","path":[{"x":1,"Y":2,"z":"` + secret + `"}]}]}`)},
		"responses duplicate actions":     {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","actions":[{"type":"screenshot"}],"actions":[` + act + `]}`)},
		"responses actions not a list":    {false, respWith(`{"id":"cu","type":"computer_call","call_id":"c","actions":` + act + `}`)},
		"responses tool search Arguments": {false, respWith(`{"id":"ts","type":"tool_search_call","call_id":"c","execution":"client","Arguments":{"query":"` + secret + `"}}`)},
		"responses program Code":          {false, respWith(`{"id":"pg","type":"program","call_id":"c","code":"ls()","Code":"` + secret + `"}`)},
		"responses program code object":   {false, respWith(`{"id":"pg","type":"program","call_id":"c","code":{"js":"` + secret + `"}}`)},
		"responses function Namespace":    {false, respWith(`{"id":"fc","type":"function_call","call_id":"c","name":"get_time","Namespace":"deny","arguments":"` + strings.ReplaceAll(args, `"`, `\"`) + `"}`)},
		"responses NAME":                  {false, respWith(`{"id":"fc","type":"function_call","call_id":"c","name":"get_time","NAME":"deny_x","arguments":"{}","x":"` + secret + `"}`)},
		"responses final output only": {false, []string{respEv(1,
			`"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[{"id":"cu","type":"computer_call","call_id":"c","actions":[{"type":"type","teXt":"`+secret+`"}]}]}`)}},
		"responses final output of a shown item": {false, []string{
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":`+computerItem("cu", "c", "completed", `{"type":"screenshot"}`)),
			respEv(2, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[{"id":"cu","type":"computer_call","call_id":"c","actions":[{"type":"type","\u212a":"`+secret+`"},{"type":"type","Text":"`+secret+`"}]}]}`)}},
	} {
		t.Run(name, func(t *testing.T) {
			out, calls, err := driveBuffer(c.chat, c.events, itemsJudge)
			if strings.Contains(out, "SECRET") {
				t.Fatalf("the unjudged call reached the client:\n%s", out)
			}
			if err == nil || err.Code != CodeToolCallMalformed {
				t.Fatalf("not refused (err %v, judged %+v):\n%s", err, calls, out)
			}
		})
	}
}
