package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/scrub"
)

// ---- a Node/Python-like snapshot accumulator --------------------------------
//
// rt2Snapshot replays the relay's output as openai-node's
// accumulateResponse (src/internal/responses/response-accumulator.ts) and
// openai-python's ResponseStreamState.accumulate_event do: output items
// pushed at output_item.added (with whatever text they carry), parts pushed
// at content_part.added / reasoning_summary_part.added (with their text),
// deltas appended by output_index and content_index / summary_index /
// command_index, .done events replacing the text. item_id is NOT checked
// (Python never checks it; Node checks it equals the output's id).
// It returns every string of the final snapshot, joined by "|".
func rt2Snapshot(t testing.TB, out string) string {
	t.Helper()
	var outputs []map[string]any
	num := func(v any) int {
		n, ok := v.(json.Number)
		if !ok {
			return -1
		}
		i, err := strconv.Atoi(string(n))
		if err != nil {
			return -1
		}
		return i
	}
	get := func(o map[string]any) map[string]any {
		i := num(o["output_index"])
		if i < 0 || i >= len(outputs) {
			return nil
		}
		return outputs[i]
	}
	list := func(m map[string]any, k string) []any { a, _ := m[k].([]any); return a }
	appendAt := func(a []any, i int, k, d string) {
		if i < 0 || i >= len(a) {
			return
		}
		if p, ok := a[i].(map[string]any); ok {
			s, _ := p[k].(string)
			p[k] = s + d
		}
	}
	for _, o := range rtEvents(t, out) {
		typ, _ := o["type"].(string)
		d, _ := o["delta"].(string)
		switch typ {
		case "response.output_item.added":
			it, _ := o["item"].(map[string]any)
			if it == nil {
				it = map[string]any{}
			}
			outputs = append(outputs, it)
		case "response.output_item.done":
			if i := num(o["output_index"]); i >= 0 && i < len(outputs) {
				it, _ := o["item"].(map[string]any)
				outputs[i] = it
			}
		case "response.content_part.added":
			if out := get(o); out != nil {
				out["content"] = append(list(out, "content"), o["part"])
			}
		case "response.reasoning_summary_part.added":
			if out := get(o); out != nil {
				out["summary"] = append(list(out, "summary"), o["part"])
			}
		case "response.output_text.delta":
			if out := get(o); out != nil {
				appendAt(list(out, "content"), num(o["content_index"]), "text", d)
			}
		case "response.output_text.done":
			if out := get(o); out != nil {
				if c := list(out, "content"); num(o["content_index"]) >= 0 && num(o["content_index"]) < len(c) {
					c[num(o["content_index"])].(map[string]any)["text"] = o["text"]
				}
			}
		case "response.refusal.delta":
			if out := get(o); out != nil {
				appendAt(list(out, "content"), num(o["content_index"]), "refusal", d)
			}
		case "response.reasoning_text.delta":
			if out := get(o); out != nil {
				appendAt(list(out, "content"), num(o["content_index"]), "text", d)
			}
		case "response.reasoning_summary_text.delta": // Node: by summary_index only
			if out := get(o); out != nil {
				appendAt(list(out, "summary"), num(o["summary_index"]), "text", d)
			}
		case "response.function_call_arguments.delta", "response.mcp_call_arguments.delta":
			if out := get(o); out != nil {
				s, _ := out["arguments"].(string)
				out["arguments"] = s + d
			}
		case "response.custom_tool_call_input.delta":
			if out := get(o); out != nil {
				s, _ := out["input"].(string)
				out["input"] = s + d
			}
		case "response.code_interpreter_call_code.delta":
			if out := get(o); out != nil {
				s, _ := out["code"].(string)
				out["code"] = s + d
			}
		case "response.shell_call_command.added", "response.shell_call_command.delta":
			if out := get(o); out != nil {
				act, _ := out["action"].(map[string]any)
				if act == nil {
					act = map[string]any{}
					out["action"] = act
				}
				cmds := list(act, "commands")
				ci := num(o["command_index"])
				for len(cmds) <= ci {
					cmds = append(cmds, "")
				}
				if ci >= 0 {
					if typ == "response.shell_call_command.added" {
						cmds[ci], _ = o["command"].(string)
					} else {
						s, _ := cmds[ci].(string)
						cmds[ci] = s + d
					}
				}
				act["commands"] = cmds
			}
		case "response.shell_call_output_content.delta":
			if out := get(o); out != nil {
				outs := list(out, "output")
				ci := num(o["command_index"])
				for ci >= 0 && len(outs) <= ci {
					outs = append(outs, map[string]any{"stdout": "", "stderr": ""})
				}
				if dd, ok := o["delta"].(map[string]any); ok && ci >= 0 {
					c := outs[ci].(map[string]any)
					for _, k := range []string{"stdout", "stderr"} {
						s, _ := dd[k].(string)
						c[k] = c[k].(string) + s
					}
				}
				out["output"] = outs
			}
		}
	}
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			b.WriteString(x + "|")
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, o := range outputs {
		walk(o)
	}
	return b.String()
}

// rt2Relay relays events through the Responses relay, masking on.
func rt2Relay(t testing.TB, events []string, fast bool) (string, error) {
	t.Helper()
	var out string
	var err error
	withFastPaths(fast, func() { out, err = rtRun(t, events, nil, true) })
	return out, err
}

// ---- findings ----------------------------------------------------------------

// A reasoning summary delta carrying both summary_index and content_index
// is keyed by summary_index, as Node joins summary text.
func TestResponsesSnapshotSummaryKeyedByContentIndex(t *testing.T) {
	key := fakeKey()
	for _, secret := range [][2]string{{"mail ann", "@example.com, thanks"}, {"key " + key[:14], key[14:] + " thanks"}} {
		events := []string{
			`{"type":"response.output_item.added","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}}`,
			`{"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}`,
			`{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"content_index":0,"delta":` + jsonStr(secret[0]) + `}`,
			`{"type":"response.reasoning_summary_text.done","item_id":"rs_1","output_index":0,"summary_index":0,"content_index":0,"text":` + jsonStr(secret[0]) + `}`,
			`{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"content_index":1,"delta":` + jsonStr(secret[1]) + `}`,
		}
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, events, fast)
			if snap := rt2Snapshot(t, out); strings.Contains(snap, "ann@example.com") || strings.Contains(snap, key) {
				t.Errorf("fast %v (err %v): Node's summary[0].text joins %q", fast, err, snap)
			}
		}
	}
}

// One item_id streamed under two output_indexes: Python (and the Node of
// the sdkJoins simulator) join by output_index, the relay by item_id, so
// it ends the stream (placeItem) rather than mask one text as two.
func TestResponsesSnapshotOneItemTwoOutputsInterleaved(t *testing.T) {
	key := fakeKey()
	for _, p := range [][3]string{{"ann@exam", " ", "ple.com"}, {key[:12], " ", key[12:]}} {
		d := func(oi, text string) string {
			return `{"type":"response.output_text.delta","item_id":"msg_a","output_index":` + oi + `,"content_index":0,"delta":` + jsonStr(text) + `}`
		}
		events := []string{
			`{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_a","type":"message","role":"assistant","content":[]}}`,
			`{"type":"response.content_part.added","item_id":"msg_a","output_index":0,"content_index":0,"part":{"type":"output_text","text":""}}`,
			`{"type":"response.output_item.added","output_index":1,"item":{"id":"msg_b","type":"message","role":"assistant","content":[]}}`,
			`{"type":"response.content_part.added","item_id":"msg_b","output_index":1,"content_index":0,"part":{"type":"output_text","text":""}}`,
			d("1", p[0]), d("0", p[1]), d("1", p[2]),
		}
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, events, fast)
			bad := rtLeaks(sdkJoins(t, out), "ann@example.com", key)
			if snap := rt2Snapshot(t, out); strings.Contains(snap, "ann@example.com") || strings.Contains(snap, key) {
				bad = append(bad, "python snapshot "+snap)
			}
			if len(bad) > 0 {
				t.Errorf("fast %v (err %v):\n  %s", fast, err, strings.Join(bad, "\n  "))
			}
		}
	}
}

// Shell command deltas carry output_index and command_index, no item_id:
// Node joins action.commands[command_index], and so does the relay.
func TestResponsesSnapshotShellCommandsInterleaved(t *testing.T) {
	d := func(ci, text string) string {
		return `{"type":"response.shell_call_command.delta","output_index":0,"command_index":` + ci + `,"delta":` + jsonStr(text) + `}`
	}
	events := []string{
		`{"type":"response.output_item.added","output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"call_1","status":"in_progress","action":{"commands":[]}}}`,
		`{"type":"response.shell_call_command.added","output_index":0,"command_index":0,"command":""}`,
		`{"type":"response.shell_call_command.added","output_index":0,"command_index":1,"command":""}`,
		d("1", "echo ann@exam"), d("0", " "), d("1", "ple.com"),
	}
	for _, fast := range []bool{true, false} {
		out, err := rt2Relay(t, events, fast)
		if snap := rt2Snapshot(t, out); strings.Contains(snap, "ann@example.com") {
			t.Errorf("fast %v (err %v): Node's action.commands joins %q", fast, err, snap)
		}
	}
}

// Text a field starts with (a content part's text, an item's content,
// arguments or command when added) is its first delta, and a field ended
// by a .done or part.done without ever streaming stays ended: Node and
// Python append the deltas that follow to that text.
func TestResponsesSnapshotDeltasAppendedToWholeText(t *testing.T) {
	key := fakeKey()
	msgAdded := `{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}`
	delta := func(text string) string {
		return `{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":` + jsonStr(text) + `}`
	}
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"content_part.added text", []string{msgAdded,
			`{"type":"response.content_part.added","item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"mail ann"}}`,
			delta("@example.com, thanks")}},
		{"content_part.added text (key)", []string{msgAdded,
			`{"type":"response.content_part.added","item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":` + jsonStr("k "+key[:14]) + `}}`,
			delta(key[14:] + " thanks")}},
		{"output_item.added content", []string{
			`{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":"mail ann"}]}}`,
			delta("@example.com, thanks")}},
		{"part.done of a field never streamed", []string{msgAdded,
			`{"type":"response.content_part.added","item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":""}}`,
			`{"type":"response.content_part.done","item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"mail ann"}}`,
			delta("@example.com, thanks")}},
		{"function_call added arguments", []string{
			`{"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"c","name":"send","arguments":"{\"to\":\"ann"}}`,
			`{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"@example.com\"}"}`}},
		{"shell_call_command.added command", []string{
			`{"type":"response.output_item.added","output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"c","action":{"commands":[]}}}`,
			`{"type":"response.shell_call_command.added","output_index":0,"command_index":0,"command":"mail ann"}`,
			`{"type":"response.shell_call_command.delta","output_index":0,"command_index":0,"delta":"@example.com"}`}},
	} {
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, c.events, fast)
			if snap := rt2Snapshot(t, out); strings.Contains(snap, "ann@example.com") || strings.Contains(snap, key) {
				t.Errorf("%s, fast %v (err %v): the snapshot joins %q", c.name, fast, err, snap)
			}
		}
	}
}

// shell_call_output_content.delta streams {stdout, stderr} objects that
// Node appends per command_index: each is a field of the relay's too.
func TestResponsesSnapshotShellOutputContentDeltas(t *testing.T) {
	d := func(text string) string {
		return `{"type":"response.shell_call_output_content.delta","item_id":"sho_1","output_index":0,"command_index":0,"delta":{"stdout":` + jsonStr(text) + `}}`
	}
	events := []string{
		`{"type":"response.output_item.added","output_index":0,"item":{"id":"sho_1","type":"shell_call_output","call_id":"c","output":[]}}`,
		d("mail ann"), d("@example.com\n"),
	}
	out, err := rt2Relay(t, events, true)
	if snap := rt2Snapshot(t, out); strings.Contains(snap, "ann@example.com") {
		t.Errorf("(err %v): Node's output[0].stdout joins %q", err, snap)
	}
}

// A shell call with two commands streams whole: command 0's .done ends
// command 0's field only (21eff53 keyed item-less text by output_index
// alone, and command 1's first delta ended the stream).
func TestResponsesSnapshotShellTwoCommandsPass(t *testing.T) {
	evs := []string{
		`{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"call_1","status":"in_progress","action":{"commands":[]}}}`,
		`{"type":"response.shell_call_command.added","sequence_number":2,"output_index":0,"command_index":0,"command":""}`,
		`{"type":"response.shell_call_command.delta","sequence_number":3,"output_index":0,"command_index":0,"delta":"ls -la"}`,
		`{"type":"response.shell_call_command.done","sequence_number":4,"output_index":0,"command_index":0,"command":"ls -la"}`,
		`{"type":"response.shell_call_command.added","sequence_number":5,"output_index":0,"command_index":1,"command":""}`,
		`{"type":"response.shell_call_command.delta","sequence_number":6,"output_index":0,"command_index":1,"delta":"cat README.md"}`,
		`{"type":"response.shell_call_command.done","sequence_number":7,"output_index":0,"command_index":1,"command":"cat README.md"}`,
		`{"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"call_1","status":"completed","action":{"commands":["ls -la","cat README.md"]}}}`,
	}
	for _, fast := range []bool{true, false} {
		if _, err := rt2Relay(t, evs, fast); err != nil {
			t.Errorf("fast %v: a two-command shell call ends the stream: %v", fast, err)
		}
	}
}

// What a stream keeps of items is bounded: item_id -> output_index for at
// most maxStreams items at once (status events naming a new item each used
// to grow it), and output items' "id" is held to maxItemID like item_id.
func TestResponsesSnapshotUnboundedItemMaps(t *testing.T) {
	var b strings.Builder
	const n = 50000
	id := strings.Repeat("x", 500)
	for i := range n {
		b.WriteString("data: " + `{"type":"response.web_search_call.in_progress","item_id":"` + id + strconv.Itoa(i) + `","output_index":` + strconv.Itoa(i%4) + `}` + "\n\n")
	}
	var out bytes.Buffer
	r, _ := NewRelay(&out, nil, strings.NewReader(b.String()), EndpointResponses, newMasker(t))
	for r.Step() {
	}
	_, err := r.Result()
	kept := 0
	for k := range r.s.outIdx {
		kept += len(k)
	}
	if kept > 4<<20 {
		t.Errorf("after %d status events (err %v) the relay keeps %d entries, %d MiB of item ids in outIdx", n, err, len(r.s.outIdx), kept>>20)
	}

	b.Reset()
	big := strings.Repeat("y", 256<<10)
	for i := range 64 {
		b.WriteString("data: " + `{"type":"response.output_item.added","output_index":0,"item":{"id":"` + big + strconv.Itoa(i) + `","type":"message","content":[{"type":"output_text","text":"x"}]}}` + "\n\n")
	}
	r, _ = NewRelay(&out, nil, strings.NewReader(b.String()), EndpointResponses, newMasker(t))
	for r.Step() {
	}
	_, err = r.Result()
	kept = 0
	for k := range r.s.fields {
		kept += len(k.item)
	}
	if kept > 1<<20 {
		t.Errorf("64 output_item.added (err %v) with 256 KiB ids: fields keep %d MiB of ids (maxItemID is %d)", err, kept>>20, maxItemID)
	}
}

// ---- attacks that held ---------------------------------------------------------

func TestResponsesSnapshotHeld(t *testing.T) {
	key := fakeKey()
	d := func(extra, text string) string {
		return `{"type":"response.output_text.delta","item_id":"m",` + extra + `"content_index":0,"delta":` + jsonStr(text) + `}`
	}
	done := `{"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"text":"mail ann"}`
	id512, id513 := strings.Repeat("i", 512), strings.Repeat("i", 513)
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"duplicate output_index (first plain, last 1)", []string{d(`"output_index":0,`, "mail ann"), d(`"output_index":0,"output_index":1,`, "@example.com")}},
		{"duplicate item_id", []string{`{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"mail ann"}`, `{"type":"response.output_text.delta","item_id":"m","item_id":"n","output_index":0,"content_index":0,"delta":"@example.com"}`}},
		{"duplicate delta", []string{d(`"output_index":0,`, "mail ann"), `{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"x","delta":"@example.com"}`}},
		{"escaped key output\\u005findex", []string{d(`"output_index":0,`, "mail ann"), done, d(`"output\u005findex":0,`, "@example.com")}},
		{"Output_index case variant after .done", []string{d(`"output_index":0,`, "mail ann"), done, strings.Replace(d(`"Output_index":0,`, "@example.com"), `"item_id":"m"`, `"item_id":"m2"`, 1)}},
		{"item_id 513 bytes", []string{strings.Replace(d(`"output_index":0,`, "mail ann"), `"m"`, jsonStr(id513), 1)}},
		{"nested output_index in part", []string{d(`"output_index":0,`, "mail ann"), done, `{"type":"response.content_part.added","item_id":"m","output_index":0,"content_index":1,"part":{"type":"output_text","text":"","output_index":"0"}}`, d(`"output_index":0,`, "@example.com")}},
		{"text after completed (item)", []string{d(`"output_index":0,`, key[:16]), `{"type":"response.completed","response":{"output":[]}}`, d(`"output_index":0,`, key[16:])}},
		{"command_index \"0\" after command .done", []string{
			`{"type":"response.shell_call_command.delta","output_index":0,"command_index":0,"delta":"mail ann"}`,
			`{"type":"response.shell_call_command.done","output_index":0,"command_index":0,"command":"mail ann"}`,
			`{"type":"response.shell_call_command.delta","output_index":0,"command_index":"0","delta":"@example.com"}`}},
		{"unicode ids é (NFC) vs e+U+0301", []string{`{"type":"response.output_text.delta","item_id":"\u00e9","output_index":0,"content_index":0,"delta":"mail ann"}`, `{"type":"response.output_text.done","item_id":"\u00e9","output_index":0,"content_index":0,"text":"x"}`, `{"type":"response.output_text.delta","item_id":"e\u0301","output_index":0,"content_index":0,"delta":"@example.com"}`}},
	} {
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, c.events, fast)
			bad := rtLeaks(sdkJoins(t, out), "ann@example.com", key)
			if snap := rt2Snapshot(t, out); strings.Contains(snap, "ann@example.com") || strings.Contains(snap, key) {
				bad = append(bad, "snapshot "+snap)
			}
			if len(bad) > 0 {
				t.Errorf("%s fast %v (err %v): %v", c.name, fast, err, bad)
			}
			t.Logf("%s fast %v: err %v", c.name, fast, err)
		}
	}
	// 512 bytes passes on both paths, the same.
	evs := []string{strings.Replace(d(`"output_index":0,`, "hello"), `"m"`, jsonStr(id512), 1), strings.Replace(done, `"m"`, jsonStr(id512), 1)}
	compareStreamAt(t, EndpointResponses, sseOf(evs), newMasker(t))
	if _, err := rt2Relay(t, evs, true); err != nil {
		t.Errorf("512-byte item id: %v", err)
	}
}

// Near maxFieldsSeen: whole items fill the field table; the stream ends
// (ErrTooManyFields) at the first new delta field, never relays it unmasked.
func TestResponsesSnapshotNearMaxFieldsSeen(t *testing.T) {
	var b strings.Builder
	for i := range maxFieldsSeen {
		b.WriteString("data: " + `{"type":"response.output_text.done","item_id":"w` + strconv.Itoa(i) + `","output_index":0,"content_index":0,"text":"x"}` + "\n\n")
	}
	b.WriteString("data: " + `{"type":"response.output_text.delta","item_id":"m","output_index":1,"content_index":0,"delta":"mail ann"}` + "\n\n")
	b.WriteString("data: " + `{"type":"response.output_text.delta","item_id":"m","output_index":1,"content_index":0,"delta":"@example.com"}` + "\n\n")
	var out bytes.Buffer
	r, _ := NewRelay(&out, nil, strings.NewReader(b.String()), EndpointResponses, newMasker(t))
	for r.Step() {
	}
	_, err := r.Result()
	if strings.Contains(out.String(), "ann@example.com") || strings.Contains(out.String(), `"delta":"@example.com"`) && !errors.Is(err, ErrTooManyFields) {
		t.Errorf("err %v", err)
	}
	t.Logf("near maxFieldsSeen: %v", err)
}

// ---- realistic streams -----------------------------------------------------------

func rt2Realistic() map[string][]string {
	seq := 0
	ev := func(s string) string {
		seq++
		return strings.Replace(s, "{", `{"sequence_number":`+strconv.Itoa(seq)+",", 1)
	}
	resp := func(status, output string) string {
		return `{"id":"resp_1","object":"response","created_at":1,"status":"` + status + `","model":"gpt-5","output":[` + output + `],"usage":null,"text":{"format":{"type":"text"}},"tools":[],"metadata":{}}`
	}
	streams := map[string][]string{}
	fastDelta := func(id, oi, ci, d string) string {
		return ev(`{"type":"response.output_text.delta","item_id":"` + id + `","output_index":` + oi + `,"content_index":` + ci + `,"delta":` + jsonStr(d) + `,"logprobs":[],"obfuscation":"aB3xZ"}`)
	}

	// A message, an annotation, a refusal part, reasoning (summary parts 0 and 1, reasoning text).
	seq = 0
	s := []string{
		ev(`{"type":"response.created","response":` + resp("in_progress", "") + `}`),
		ev(`{"type":"response.in_progress","response":` + resp("in_progress", "") + `}`),
		ev(`{"type":"response.output_item.added","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}}`),
		ev(`{"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}`),
		ev(`{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"**Planning** the","obfuscation":"x1"}`),
		ev(`{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":" answer.","obfuscation":"x2"}`),
		ev(`{"type":"response.reasoning_summary_text.done","item_id":"rs_1","output_index":0,"summary_index":0,"text":"**Planning** the answer."}`),
		ev(`{"type":"response.reasoning_summary_part.done","item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":"**Planning** the answer."}}`),
		ev(`{"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":0,"summary_index":1,"part":{"type":"summary_text","text":""}}`),
		ev(`{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":1,"delta":"Second.","obfuscation":"x3"}`),
		ev(`{"type":"response.reasoning_summary_text.done","item_id":"rs_1","output_index":0,"summary_index":1,"text":"Second."}`),
		ev(`{"type":"response.reasoning_summary_part.done","item_id":"rs_1","output_index":0,"summary_index":1,"part":{"type":"summary_text","text":"Second."}}`),
		ev(`{"type":"response.reasoning_text.delta","item_id":"rs_1","output_index":0,"content_index":0,"delta":"think"}`),
		ev(`{"type":"response.reasoning_text.done","item_id":"rs_1","output_index":0,"content_index":0,"text":"think"}`),
		ev(`{"type":"response.output_item.done","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"**Planning** the answer."},{"type":"summary_text","text":"Second."}]}}`),
		ev(`{"type":"response.output_item.added","output_index":1,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}`),
		ev(`{"type":"response.content_part.added","item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}}`),
		fastDelta("msg_1", "1", "0", "Hello"), fastDelta("msg_1", "1", "0", ", world"),
		ev(`{"type":"response.output_text.annotation.added","item_id":"msg_1","output_index":1,"content_index":0,"annotation_index":0,"annotation":{"type":"url_citation","url":"https://go.dev/","title":"Go","start_index":0,"end_index":5}}`),
		ev(`{"type":"response.output_text.done","item_id":"msg_1","output_index":1,"content_index":0,"text":"Hello, world","logprobs":[]}`),
		ev(`{"type":"response.content_part.done","item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"Hello, world"}}`),
		ev(`{"type":"response.content_part.added","item_id":"msg_1","output_index":1,"content_index":1,"part":{"type":"refusal","refusal":""}}`),
		ev(`{"type":"response.refusal.delta","item_id":"msg_1","output_index":1,"content_index":1,"delta":"I can't"}`),
		ev(`{"type":"response.refusal.delta","item_id":"msg_1","output_index":1,"content_index":1,"delta":" do that."}`),
		ev(`{"type":"response.refusal.done","item_id":"msg_1","output_index":1,"content_index":1,"refusal":"I can't do that."}`),
		ev(`{"type":"response.content_part.done","item_id":"msg_1","output_index":1,"content_index":1,"part":{"type":"refusal","refusal":"I can't do that."}}`),
		ev(`{"type":"response.output_item.done","output_index":1,"item":{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hello, world"},{"type":"refusal","refusal":"I can't do that."}]}}`),
		ev(`{"type":"response.completed","response":` + resp("completed", `{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"**Planning** the answer."}]},{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hello, world"}]}`) + `}`),
	}
	streams["message+reasoning+refusal"] = s

	// Tools: function call, custom tool, code interpreter, MCP, web/file search, image generation.
	seq = 0
	s = []string{
		ev(`{"type":"response.created","response":` + resp("in_progress", "") + `}`),
		ev(`{"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","status":"in_progress","call_id":"call_1","name":"get_weather","arguments":""}}`),
		ev(`{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"{\"city\":","obfuscation":"q"}`),
		ev(`{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"\"Paris\"}","obfuscation":"q"}`),
		ev(`{"type":"response.function_call_arguments.done","item_id":"fc_1","output_index":0,"arguments":"{\"city\":\"Paris\"}"}`),
		ev(`{"type":"response.output_item.done","output_index":0,"item":{"id":"fc_1","type":"function_call","status":"completed","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}`),
		ev(`{"type":"response.output_item.added","output_index":1,"item":{"id":"ctc_1","type":"custom_tool_call","call_id":"call_2","name":"grammar","input":""}}`),
		ev(`{"type":"response.custom_tool_call_input.delta","item_id":"ctc_1","output_index":1,"delta":"SELECT 1"}`),
		ev(`{"type":"response.custom_tool_call_input.done","item_id":"ctc_1","output_index":1,"input":"SELECT 1"}`),
		ev(`{"type":"response.output_item.done","output_index":1,"item":{"id":"ctc_1","type":"custom_tool_call","call_id":"call_2","name":"grammar","input":"SELECT 1"}}`),
		ev(`{"type":"response.output_item.added","output_index":2,"item":{"id":"ci_1","type":"code_interpreter_call","status":"in_progress","code":"","container_id":"cntr_1","outputs":null}}`),
		ev(`{"type":"response.code_interpreter_call.in_progress","item_id":"ci_1","output_index":2}`),
		ev(`{"type":"response.code_interpreter_call_code.delta","item_id":"ci_1","output_index":2,"delta":"print(1+1)"}`),
		ev(`{"type":"response.code_interpreter_call_code.done","item_id":"ci_1","output_index":2,"code":"print(1+1)"}`),
		ev(`{"type":"response.code_interpreter_call.interpreting","item_id":"ci_1","output_index":2}`),
		ev(`{"type":"response.code_interpreter_call.completed","item_id":"ci_1","output_index":2}`),
		ev(`{"type":"response.output_item.done","output_index":2,"item":{"id":"ci_1","type":"code_interpreter_call","status":"completed","code":"print(1+1)","container_id":"cntr_1","outputs":[{"type":"logs","logs":"2\n"}]}}`),
		ev(`{"type":"response.output_item.added","output_index":3,"item":{"id":"mcpl_1","type":"mcp_list_tools","server_label":"deepwiki","tools":[]}}`),
		ev(`{"type":"response.mcp_list_tools.in_progress","item_id":"mcpl_1","output_index":3}`),
		ev(`{"type":"response.mcp_list_tools.completed","item_id":"mcpl_1","output_index":3}`),
		ev(`{"type":"response.output_item.done","output_index":3,"item":{"id":"mcpl_1","type":"mcp_list_tools","server_label":"deepwiki","tools":[{"name":"ask","input_schema":{}}]}}`),
		ev(`{"type":"response.output_item.added","output_index":4,"item":{"id":"mcp_1","type":"mcp_call","server_label":"deepwiki","name":"ask","arguments":""}}`),
		ev(`{"type":"response.mcp_call.in_progress","item_id":"mcp_1","output_index":4}`),
		ev(`{"type":"response.mcp_call_arguments.delta","item_id":"mcp_1","output_index":4,"delta":"{\"q\":\"go\"}"}`),
		ev(`{"type":"response.mcp_call_arguments.done","item_id":"mcp_1","output_index":4,"arguments":"{\"q\":\"go\"}"}`),
		ev(`{"type":"response.mcp_call.completed","item_id":"mcp_1","output_index":4}`),
		ev(`{"type":"response.output_item.done","output_index":4,"item":{"id":"mcp_1","type":"mcp_call","server_label":"deepwiki","name":"ask","arguments":"{\"q\":\"go\"}","output":"ok"}}`),
		ev(`{"type":"response.output_item.added","output_index":5,"item":{"id":"ws_1","type":"web_search_call","status":"in_progress"}}`),
		ev(`{"type":"response.web_search_call.in_progress","item_id":"ws_1","output_index":5}`),
		ev(`{"type":"response.web_search_call.searching","item_id":"ws_1","output_index":5}`),
		ev(`{"type":"response.web_search_call.completed","item_id":"ws_1","output_index":5}`),
		ev(`{"type":"response.output_item.done","output_index":5,"item":{"id":"ws_1","type":"web_search_call","status":"completed","action":{"type":"search","query":"weather paris"}}}`),
		ev(`{"type":"response.output_item.added","output_index":6,"item":{"id":"fs_1","type":"file_search_call","status":"in_progress","queries":[]}}`),
		ev(`{"type":"response.file_search_call.in_progress","item_id":"fs_1","output_index":6}`),
		ev(`{"type":"response.file_search_call.searching","item_id":"fs_1","output_index":6}`),
		ev(`{"type":"response.file_search_call.completed","item_id":"fs_1","output_index":6}`),
		ev(`{"type":"response.output_item.done","output_index":6,"item":{"id":"fs_1","type":"file_search_call","status":"completed","queries":["paris"],"results":null}}`),
		ev(`{"type":"response.output_item.added","output_index":7,"item":{"id":"ig_1","type":"image_generation_call","status":"in_progress"}}`),
		ev(`{"type":"response.image_generation_call.in_progress","item_id":"ig_1","output_index":7}`),
		ev(`{"type":"response.image_generation_call.generating","item_id":"ig_1","output_index":7}`),
		ev(`{"type":"response.image_generation_call.partial_image","item_id":"ig_1","output_index":7,"partial_image_index":0,"partial_image_b64":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}`),
		ev(`{"type":"response.image_generation_call.completed","item_id":"ig_1","output_index":7}`),
		ev(`{"type":"response.output_item.done","output_index":7,"item":{"id":"ig_1","type":"image_generation_call","status":"completed","result":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}}`),
		ev(`{"type":"response.output_item.added","output_index":8,"item":{"id":"sh_1","type":"shell_call","call_id":"call_3","status":"in_progress","action":{"commands":[]}}}`),
		ev(`{"type":"response.shell_call_command.added","output_index":8,"command_index":0,"command":""}`),
		ev(`{"type":"response.shell_call_command.delta","output_index":8,"command_index":0,"delta":"ls"}`),
		ev(`{"type":"response.shell_call_command.done","output_index":8,"command_index":0,"command":"ls"}`),
		ev(`{"type":"response.output_item.done","output_index":8,"item":{"id":"sh_1","type":"shell_call","call_id":"call_3","status":"completed","action":{"commands":["ls"]}}}`),
		ev(`{"type":"response.completed","response":` + resp("completed", "") + `}`),
	}
	streams["tools"] = s

	// Audio: transcript deltas with neither item_id nor output_index.
	seq = 0
	streams["audio"] = []string{
		ev(`{"type":"response.created","response":` + resp("in_progress", "") + `}`),
		ev(`{"type":"response.audio.delta","delta":"UklGRiQAAABXQVZFZm10IBAAAAABAAEA"}`),
		ev(`{"type":"response.audio.transcript.delta","delta":"Hi "}`),
		ev(`{"type":"response.audio.transcript.delta","delta":"there"}`),
		ev(`{"type":"response.audio.transcript.done"}`),
		ev(`{"type":"response.audio.done"}`),
		ev(`{"type":"response.completed","response":` + resp("completed", "") + `}`),
	}

	// response.completed with 300 outputs; a long stream of 5000 deltas.
	seq = 0
	var outs []string
	for i := range 300 {
		outs = append(outs, `{"id":"msg_`+strconv.Itoa(i)+`","type":"message","role":"assistant","content":[{"type":"output_text","annotations":[],"text":"part `+strconv.Itoa(i)+`"}]}`)
	}
	long := []string{
		ev(`{"type":"response.created","response":` + resp("in_progress", "") + `}`),
		ev(`{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_0","type":"message","status":"in_progress","role":"assistant","content":[]}}`),
		ev(`{"type":"response.content_part.added","item_id":"msg_0","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}}`),
	}
	for i := range 5000 {
		long = append(long, fastDelta("msg_0", "0", "0", " word"+strconv.Itoa(i)))
	}
	long = append(long, ev(`{"type":"response.completed","response":`+resp("completed", strings.Join(outs, ","))+`}`))
	streams["long+300 outputs"] = long
	return streams
}

func TestResponsesSnapshotRealisticStreamsPassUnchanged(t *testing.T) {
	isDelta := func(data string) bool {
		var o map[string]any
		_ = json.Unmarshal([]byte(data), &o)
		typ, _ := o["type"].(string)
		_, str := o["delta"].(string)
		return strings.HasSuffix(typ, ".delta") && str
	}
	for name, evs := range rt2Realistic() {
		in := sseOf(evs)
		var inRest []string
		for _, e := range evs {
			if !isDelta(e) {
				inRest = append(inRest, e)
			}
		}
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, evs, fast)
			if err != nil {
				t.Errorf("%s fast %v: %v", name, fast, err)
				continue
			}
			var outRest []string
			for _, e := range readEvents(t, out) {
				if !isDelta(e.Data) {
					outRest = append(outRest, e.Data)
				}
			}
			if len(inRest) != len(outRest) {
				t.Errorf("%s fast %v: %d other events in, %d out", name, fast, len(inRest), len(outRest))
				continue
			}
			for i := range inRest {
				// The numbers go on from the extra deltas released
				// before an event (TestExtraDeltasKeepSequenceNumbersContiguous).
				if !sameJSON(withoutSeq(inRest[i]), withoutSeq(outRest[i])) {
					t.Errorf("%s fast %v: event changed:\n in  %s\n out %s", name, fast, inRest[i], outRest[i])
				}
			}
			if len(seqs(t, in)) > 0 {
				seqs(t, out) // contiguous
			}
			ji, jo := sdkJoins(t, in), sdkJoins(t, out)
			for k, v := range ji {
				if jo[k] != v {
					t.Errorf("%s fast %v: %s joins %q, was %q", name, fast, k, jo[k], v)
				}
			}
			for k, v := range jo {
				if _, ok := ji[k]; !ok {
					t.Errorf("%s fast %v: new join %s = %q", name, fast, k, v)
				}
			}
		}
		compareStreamAt(t, EndpointResponses, in, newMasker(t))
	}
}

// With PII in every text field of the realistic streams, only the text changes.
func TestResponsesSnapshotRealisticStreamsMaskOnlyText(t *testing.T) {
	for name, evs := range rt2Realistic() {
		pii := make([]string, len(evs))
		for i, e := range evs {
			pii[i] = strings.NewReplacer(`"Hello"`, `"mail ann@example.com"`, `"ls"`, `"mail bob@example.com"`, `"Hi "`, `"mail carl@example.com "`).Replace(e)
		}
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, pii, fast)
			if err != nil {
				t.Errorf("%s fast %v: %v", name, fast, err)
			}
			if strings.Contains(out, "@example.com") {
				t.Errorf("%s fast %v: an address came out", name, fast)
			}
		}
	}
	_ = fmt.Sprint
	_ = scrub.New
}

// The tail released at a field's end goes out under the output_index its
// item sits at; an event that re-points an item at another output (so
// that its tail would join another output's text in Python and Node)
// ends the stream.
func TestResponsesSnapshotTailFollowsRepointedOutputIndex(t *testing.T) {
	key := fakeKey()
	d := func(item, oi, text string) string {
		return `{"type":"response.output_text.delta","item_id":"` + item + `","output_index":` + oi + `,"content_index":0,"delta":` + jsonStr(text) + `}`
	}
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"done under another output_index", []string{d("a", "0", "mail ann"), `{"type":"response.output_text.done","item_id":"a","output_index":1,"content_index":0,"text":"mail ann"}`, d("b", "1", "@example.com, thanks")}},
		{"status event re-points, then done", []string{d("a", "0", "mail ann"), `{"type":"response.web_search_call.in_progress","item_id":"a","output_index":1}`, `{"type":"response.output_text.done","item_id":"a","content_index":0,"text":"mail ann"}`, d("b", "1", "@example.com, thanks")}},
		{"key", []string{d("a", "0", "k "+key[:14]), `{"type":"response.output_text.done","item_id":"a","output_index":1,"content_index":0,"text":"x"}`, d("b", "1", key[14:]+" thanks")}},
	} {
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, c.events, fast)
			if bad := rtLeaks(sdkJoins(t, out), "ann@example.com", key); len(bad) > 0 {
				t.Errorf("%s fast %v (err %v):\n  %s\n%s", c.name, fast, err, strings.Join(bad, "\n  "), out)
			}
		}
	}
}

// An output item's end ends the fields streamed without an item_id under
// its output_index too, when the item itself has an id (shell calls): a
// command never streamed before the item's end is not streamed after it.
func TestResponsesSnapshotItemEndEndsItsItemlessFields(t *testing.T) {
	events := []string{
		`{"type":"response.output_item.added","output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"c","action":{"commands":[]}}}`,
		`{"type":"response.shell_call_command.delta","output_index":0,"command_index":0,"delta":"mail ann"}`,
		`{"type":"response.output_item.done","output_index":0,"item":{"id":"sh_1","type":"shell_call","call_id":"c","action":{"commands":["mail ann"]}}}`,
		`{"type":"response.shell_call_command.delta","output_index":0,"command_index":1,"delta":"@example.com"}`,
	}
	for _, fast := range []bool{true, false} {
		if _, err := rt2Relay(t, events, fast); !errors.Is(err, ErrTextAfterEnd) {
			t.Errorf("fast %v: a command after its item's end: %v, want ErrTextAfterEnd", fast, err)
		}
	}
}

// withoutSeq is an event's data without its sequence_number.
func withoutSeq(data string) []byte {
	d := json.NewDecoder(strings.NewReader(data))
	d.UseNumber()
	var o map[string]any
	if d.Decode(&o) != nil || o == nil {
		return []byte(data)
	}
	delete(o, "sequence_number")
	b, _ := json.Marshal(o)
	return b
}
