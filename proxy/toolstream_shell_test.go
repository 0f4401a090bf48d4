package proxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/toolcall"
)

// The shell and apply_patch tools' items on streams, and the fail-closed
// rule for output items of a type pamctl does not know.

// shellJudge denies shell calls that mention rm -rf, redacts the ghp_
// token of apply_patch diffs, allows the rest.
func shellJudge(c toolcall.Call) toolcall.Verdict {
	switch {
	case c.Tool() == "shell" && strings.Contains(c.Arguments, "rm -rf"):
		return toolcall.Verdict{Action: toolcall.Deny, Rule: "no-rm", Message: "Tool shell is blocked by rule no-rm."}
	case c.Tool() == "apply_patch" && strings.Contains(c.Arguments, "ghp_"):
		return toolcall.Verdict{Action: toolcall.Redact, Rule: "mask", Arguments: strings.ReplaceAll(c.Arguments, "ghp_SECRET", "[MASKED]")}
	}
	return toolcall.Verdict{Action: toolcall.Allow}
}

// shellItem is a shell_call item at status with commands.
func shellItem(id, callID, status string, commands ...string) string {
	cs, _ := json.Marshal(commands)
	return fmt.Sprintf(`{"id":%q,"type":"shell_call","call_id":%q,"status":%q,"action":{"commands":%s,"timeout_ms":10000,"max_output_length":4096},"environment":{"type":"local"}}`, id, callID, status, cs)
}

// shellEvents is a shell_call at output index oi as OpenAI streams it:
// added with no command yet, each command streamed in pieces of step
// bytes (response.shell_call_command.added/delta/done name the item by
// output_index only), then done.
func shellEvents(seq *int, oi int, id, callID string, step int, commands ...string) []string {
	next := func() int { *seq++; return *seq }
	out := []string{respEv(next(), fmt.Sprintf(`"type":"response.output_item.added","output_index":%d,"item":%s`, oi, shellItem(id, callID, "in_progress")))}
	for ci, cmd := range commands {
		out = append(out, respEv(next(), fmt.Sprintf(`"type":"response.shell_call_command.added","output_index":%d,"command_index":%d,"command":""`, oi, ci)))
		for i := 0; i < len(cmd); i += step {
			out = append(out, respEv(next(), fmt.Sprintf(`"type":"response.shell_call_command.delta","output_index":%d,"command_index":%d,"delta":%s`, oi, ci, jsonStr(cmd[i:min(i+step, len(cmd))]))))
		}
		out = append(out, respEv(next(), fmt.Sprintf(`"type":"response.shell_call_command.done","output_index":%d,"command_index":%d,"command":%s`, oi, ci, jsonStr(cmd))))
	}
	return append(out, respEv(next(), fmt.Sprintf(`"type":"response.output_item.done","output_index":%d,"item":%s`, oi, shellItem(id, callID, "completed", commands...))))
}

// patchItem is an apply_patch_call item.
func patchItem(id, callID, status, path, diff string) string {
	return fmt.Sprintf(`{"id":%q,"type":"apply_patch_call","call_id":%q,"status":%q,"operation":{"type":"update_file","path":%q,"diff":%s}}`, id, callID, status, path, jsonStr(diff))
}

// patchEvents is an apply_patch_call whose diff streams in 3-byte deltas.
func patchEvents(seq *int, oi int, id, callID, path, diff string) []string {
	next := func() int { *seq++; return *seq }
	out := []string{respEv(next(), fmt.Sprintf(`"type":"response.output_item.added","output_index":%d,"item":%s`, oi, patchItem(id, callID, "in_progress", path, "")))}
	for i := 0; i < len(diff); i += 3 {
		out = append(out, respEv(next(), fmt.Sprintf(`"type":"response.apply_patch_call_operation_diff.delta","item_id":%q,"output_index":%d,"delta":%s`, id, oi, jsonStr(diff[i:min(i+3, len(diff))]))))
	}
	return append(out,
		respEv(next(), fmt.Sprintf(`"type":"response.apply_patch_call_operation_diff.done","item_id":%q,"output_index":%d,"diff":%s`, id, oi, jsonStr(diff))),
		respEv(next(), fmt.Sprintf(`"type":"response.output_item.done","output_index":%d,"item":%s`, oi, patchItem(id, callID, "completed", path, diff))))
}

func respCompleted(seq int, items ...string) string {
	return respEv(seq, `"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","output":[`+strings.Join(items, ",")+`]}`)
}

// finalItem returns the item of the final output at i, as JSON.
func finalItem(v respView, i int) string {
	if i >= len(v.final) {
		return ""
	}
	b, _ := json.Marshal(v.final[i])
	return string(b)
}

func TestResponsesStreamShellAndApplyPatch(t *testing.T) {
	const diff = "@@\n-old\n+token=ghp_SECRET\n"
	seq := 0
	events := []string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)}
	events = append(events, shellEvents(&seq, 0, "sh_ok", "call_ok", 4, "ls -la", "git status")...)
	events = append(events, shellEvents(&seq, 1, "sh_rm", "call_rm", 4, "ls", "rm -rf /srv/cache")...)
	events = append(events, patchEvents(&seq, 2, "ap_1", "call_ap", "app.go", diff)...)
	events = append(events, respCompleted(seq+1,
		shellItem("sh_ok", "call_ok", "completed", "ls -la", "git status"),
		shellItem("sh_rm", "call_rm", "completed", "ls", "rm -rf /srv/cache"),
		patchItem("ap_1", "call_ap", "completed", "app.go", diff)))
	got, calls, err := driveBuffer(false, events, shellJudge)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || calls[0].Tool() != "shell" || calls[0].ID != "call_ok" ||
		calls[0].Arguments != `{"commands":["ls -la","git status"],"max_output_length":4096,"timeout_ms":10000}` ||
		calls[1].Arguments != `{"commands":["ls","rm -rf /srv/cache"],"max_output_length":4096,"timeout_ms":10000}` ||
		calls[2].Tool() != "apply_patch" || calls[2].Arguments != `{"diff":"@@\n-old\n+token=ghp_SECRET\n","path":"app.go","type":"update_file"}` {
		t.Fatalf("judged %+v", calls)
	}
	for _, leak := range []string{"rm -rf", "-rf", "sh_rm", "call_rm", "ghp_SECRET", "shell_call_command", "operation_diff"} {
		if strings.Contains(strings.ReplaceAll(got, "Tool shell is blocked by rule no-rm.", ""), leak) {
			t.Errorf("%q reached the client:\n%s", leak, got)
		}
	}
	v := readResponses(t, got)
	if !v.complete || len(v.final) != 3 || len(v.done) != 3 {
		t.Fatalf("stream %v", v.types)
	}
	if v.final[0]["type"] != "shell_call" || !strings.Contains(finalItem(v, 0), `"commands":["ls -la","git status"]`) {
		t.Errorf("allowed shell call: %s", finalItem(v, 0))
	}
	if v.final[1]["type"] != "message" || !strings.Contains(finalItem(v, 1), "Tool shell is blocked by rule no-rm.") {
		t.Errorf("denied shell call's place: %s", finalItem(v, 1))
	}
	op, _ := v.final[2]["operation"].(map[string]any)
	if v.final[2]["type"] != "apply_patch_call" || op["diff"] != "@@\n-old\n+token=[MASKED]\n" || op["path"] != "app.go" || op["type"] != "update_file" {
		t.Errorf("redacted patch: %s", finalItem(v, 2))
	}
	for i := range v.done {
		a, _ := json.Marshal(v.done[i])
		if string(a) != finalItem(v, i) {
			t.Errorf("item %d: done %s, final %s", i, a, finalItem(v, i))
		}
	}
}

// A shell_call whose commands stream a byte an event, with parallel
// calls, and stray command events (before the item, after it, of no
// item): nothing of a denied call reaches the client, none of the
// command events is relayed.
func TestResponsesStreamShellOneByteDeltas(t *testing.T) {
	seq := 0
	a := shellEvents(&seq, 0, "sh_a", "call_a", 1, "ls -la /srv")
	b := shellEvents(&seq, 1, "sh_b", "call_b", 1, "echo hi; rm -rf /srv/data")
	// Renumber: the interleaving is what the client would get.
	events := []string{
		respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`),
		respEv(0, `"type":"response.shell_call_command.delta","output_index":1,"command_index":0,"delta":"rm -rf before"`),
	}
	events = append(events, interleave(a, b)...)
	events = append(events,
		respEv(0, `"type":"response.shell_call_command.delta","output_index":1,"command_index":0,"delta":"rm -rf after"`),
		respEv(0, `"type":"response.shell_call_command.done","output_index":7,"command_index":0,"command":"rm -rf nowhere"`),
		respCompleted(0, shellItem("sh_a", "call_a", "completed", "ls -la /srv"), shellItem("sh_b", "call_b", "completed", "echo hi; rm -rf /srv/data")))
	for i := range events {
		events[i] = renumber(events[i], i)
	}
	got, calls, err := driveBuffer(false, events, shellJudge)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0].ID != "call_a" || calls[1].ID != "call_b" || !strings.Contains(calls[1].Arguments, "rm -rf /srv/data") {
		t.Fatalf("judged %+v", calls)
	}
	rest := strings.ReplaceAll(got, "Tool shell is blocked by rule no-rm.", "")
	for _, leak := range []string{"rm", "-rf", "sh_b", "call_b", "shell_call_command", `"delta":"l"`} {
		if strings.Contains(rest, leak) {
			t.Fatalf("%q reached the client:\n%s", leak, got)
		}
	}
	v := readResponses(t, got)
	if len(v.final) != 2 || v.final[0]["type"] != "shell_call" || v.final[1]["type"] != "message" {
		t.Fatalf("final %v", v.final)
	}
}

// renumber sets an event's sequence_number.
func renumber(ev string, seq int) string {
	i := strings.LastIndex(ev, `"sequence_number":`)
	if i < 0 {
		return ev
	}
	j := strings.Index(ev[i:], "}")
	return ev[:i] + fmt.Sprintf(`"sequence_number":%d`, seq) + ev[i+j:]
}

// Fail closed: an output item of a type pamctl does not know is held and
// denied, whatever the judge says; hosted tools' items, reasoning and
// results pass as they came.
func TestResponsesStreamUnknownItemsDenied(t *testing.T) {
	hosted := []string{
		respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`),
		respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}`),
		respEv(2, `"type":"response.output_item.done","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}`),
		respEv(3, `"type":"response.output_item.added","output_index":1,"item":{"id":"ws_1","type":"web_search_call","status":"in_progress"}`),
		respEv(4, `"type":"response.web_search_call.in_progress","item_id":"ws_1","output_index":1`),
		respEv(5, `"type":"response.web_search_call.completed","item_id":"ws_1","output_index":1`),
		respEv(6, `"type":"response.output_item.done","output_index":1,"item":{"id":"ws_1","type":"web_search_call","status":"completed","action":{"type":"search","query":"q"}}`),
		respEv(7, `"type":"response.output_item.added","output_index":2,"item":{"id":"ci_1","type":"code_interpreter_call","status":"in_progress","code":"","container_id":"c"}`),
		respEv(8, `"type":"response.code_interpreter_call_code.delta","item_id":"ci_1","output_index":2,"delta":"print(1)"`),
		respEv(9, `"type":"response.output_item.done","output_index":2,"item":{"id":"ci_1","type":"code_interpreter_call","status":"completed","code":"print(1)","container_id":"c","outputs":[]}`),
		respEv(10, `"type":"response.output_item.added","output_index":3,"item":{"id":"so_1","type":"shell_call_output","call_id":"c","output":[]}`),
		respEv(11, `"type":"response.shell_call_output_content.delta","item_id":"so_1","output_index":3,"command_index":0,"delta":{"stdout":"ok"}`),
		respEv(12, `"type":"response.output_item.done","output_index":3,"item":{"id":"so_1","type":"shell_call_output","call_id":"c","output":[{"stdout":"ok","stderr":"","outcome":{"type":"exit","exit_code":0}}]}`),
		respEv(13, `"type":"response.output_item.added","output_index":4,"item":{"id":"ml_1","type":"mcp_list_tools","server_label":"gh","tools":[]}`),
		respEv(14, `"type":"response.output_item.done","output_index":4,"item":{"id":"ml_1","type":"mcp_list_tools","server_label":"gh","tools":[]}`),
		respEv(15, `"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","output":[{"id":"rs_1","type":"reasoning","summary":[]}]}`),
	}
	got, calls, err := driveBuffer(false, hosted, byName)
	if err != nil || len(calls) != 0 || got != strings.Join(hosted, "") {
		t.Fatalf("hosted items changed: err %v calls %v\n%s", err, calls, got)
	}

	events := []string{
		respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`),
		respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"pg_1","type":"Program_Call","call_id":"c1","code":"","fingerprint":"f"}`),
		respEv(2, `"type":"response.program_call_code.delta","item_id":"pg_1","output_index":0,"delta":"exec('rm -rf /')"`),
		respEv(3, `"type":"response.output_item.done","output_index":0,"item":{"id":"pg_1","type":"Program_Call","call_id":"c1","code":"exec('rm -rf /')","fingerprint":"f"}`),
		respEv(4, `"type":"response.output_item.added","output_index":1,"item":{"id":"bx_1","type":"browser_call","call_id":"c2","action":{"url":"https://evil.example/rm -rf"}}`),
		respEv(5, `"type":"response.output_item.done","output_index":1,"item":{"id":"bx_1","type":"browser_call","call_id":"c2","action":{"url":"https://evil.example/rm -rf"}}`),
		respEv(6, `"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","output":[`+
			`{"id":"pg_1","type":"Program_Call","call_id":"c1","code":"exec('rm -rf /')","fingerprint":"f"},`+
			`{"id":"bx_1","type":"browser_call","call_id":"c2","action":{"url":"https://evil.example/rm -rf"}},`+
			`{"id":"tl_1","type":"tool_search_call_v2","call_id":"c3","execution":"client","arguments":{"query":"rm -rf"}}]}`),
	}
	got, calls, err = driveBuffer(false, events, func(toolcall.Call) toolcall.Verdict { return toolcall.Verdict{Action: toolcall.Allow} })
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || calls[0].Tool() != "item:Program_Call" || calls[0].ID != "c1" || !strings.Contains(calls[0].Arguments, `"code":"exec('rm -rf /')"`) ||
		calls[1].Tool() != "item:browser_call" || calls[2].Tool() != "item:tool_search_call_v2" {
		t.Fatalf("judged %+v", calls)
	}
	if strings.Contains(got, "rm -rf") || strings.Contains(got, "evil.example") || strings.Contains(got, "pg_1") {
		t.Fatalf("an unknown item reached the client:\n%s", got)
	}
	v := readResponses(t, got)
	if len(v.final) != 3 {
		t.Fatalf("final %v", v.final)
	}
	for i, typ := range []string{"Program_Call", "browser_call", "tool_search_call_v2"} {
		if v.final[i]["type"] != "message" || !strings.Contains(finalItem(v, i), `output item of type \"`+typ+`\"`) {
			t.Errorf("output[%d]: %s", i, finalItem(v, i))
		}
	}
}

// Hostile spellings of shell and apply_patch items: the stream ends as
// malformed or the call is judged; it is never relayed unjudged.
func TestResponsesStreamShellHostile(t *testing.T) {
	const secret = "rm -rf /SECRET"
	sh := func(status string) string { return shellItem("sh_1", "call_1", status, secret) }
	done := respCompleted(9)
	for name, c := range map[string]struct {
		events []string
		fails  bool // the stream must end as malformed (else: the call is judged and denied)
	}{
		"Shell_Call type": {[]string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":`+strings.Replace(sh("in_progress"), `"shell_call"`, `"Shell_Call"`, 1)),
			respEv(2, `"type":"response.output_item.done","output_index":0,"item":`+strings.Replace(sh("completed"), `"shell_call"`, `"Shell_Call"`, 1)), done}, true},
		"APPLY_PATCH_CALL type": {[]string{
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":{"id":"ap","type":"APPLY_PATCH_CALL","call_id":"c","operation":{"type":"delete_file","path":"`+secret+`"}}`), done}, true},
		"duplicate type key": {[]string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"type":"message",`+sh("in_progress")[1:]), done}, true},
		"duplicate action key": {[]string{
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"c","action":{"commands":["ls"]},"action":{"commands":["`+secret+`"]}}`), done}, true},
		"Action key": {[]string{
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"c","Action":{"commands":["`+secret+`"]}}`), done}, true},
		"Commands key in the action": {[]string{
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"c","action":{"Commands":["`+secret+`"]}}`), done}, true},
		"Operation key": {[]string{
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":{"id":"ap","type":"apply_patch_call","call_id":"c","Operation":{"type":"delete_file","path":"`+secret+`"}}`), done}, true},
		"Diff key in the operation": {[]string{
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":{"id":"ap","type":"apply_patch_call","call_id":"c","operation":{"type":"update_file","path":"a","Diff":"`+secret+`"}}`), done}, true},
		"added shell_call, done apply_patch_call": {[]string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":`+shellItem("sh_1", "call_1", "in_progress", "ls")),
			respEv(2, `"type":"response.output_item.done","output_index":0,"item":{"id":"sh_1","type":"apply_patch_call","call_id":"call_1","operation":{"type":"delete_file","path":"`+secret+`"}}`), done}, true},
		"added shell_call, done message": {[]string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":`+sh("in_progress")),
			respEv(2, `"type":"response.output_item.done","output_index":0,"item":{"id":"sh_1","type":"message","role":"assistant","content":[]}`), done}, true},
		"added function_call, done shell_call": {[]string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"sh_1","type":"function_call","call_id":"call_1","name":"get_time","arguments":""}`),
			respEv(2, `"type":"response.output_item.done","output_index":0,"item":`+sh("completed")), done}, true},
		"added message, done shell_call": {[]string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"sh_1","type":"message","role":"assistant","content":[]}`),
			respEv(2, `"type":"response.output_item.done","output_index":0,"item":`+sh("completed")), done}, false},
		"shell_call only in the final output": {[]string{
			respEv(1, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[`+sh("completed")+`]}`)}, false},
		"shell_call in another event's item": {[]string{
			respEv(1, `"type":"response.in_progress","item":`+sh("completed")), done}, false},
		"shell_call in response.in_progress": {[]string{
			respEv(1, `"type":"response.in_progress","response":{"id":"r","object":"response","status":"in_progress","output":[`+sh("completed")+`]}`), done}, false},
	} {
		t.Run(name, func(t *testing.T) {
			out, calls, err := driveBuffer(false, c.events, shellJudge)
			if strings.Contains(out, "SECRET") {
				t.Fatalf("the unjudged call reached the client:\n%s", out)
			}
			if c.fails && err == nil {
				t.Fatalf("not refused (judged %+v):\n%s", calls, out)
			}
			if !c.fails && err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}
