package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// A tail held back from an item's text as added goes out under the
// item's output_index (Node throws on a delta without one), whether the
// item ends or the response does.
func TestResponsesAddedTextTailHasOutputIndex(t *testing.T) {
	for name, evs := range map[string][]string{
		"message": {
			`{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":"mail ann@example.com"}]}}`,
			`{"type":"response.output_item.done","output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":"mail ann@example.com"}]}}`,
		},
		"function_call": {
			`{"type":"response.output_item.added","output_index":1,"item":{"id":"fc_1","type":"function_call","call_id":"c","name":"send","arguments":"{\"to\":\"ann@example.com"}}`,
			`{"type":"response.output_item.done","output_index":1,"item":{"id":"fc_1","type":"function_call","call_id":"c","name":"send","arguments":"{\"to\":\"ann@example.com\"}"}}`,
		},
		"completed": {
			`{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":"call me at ann"}]}}`,
			`{"type":"response.completed","response":{"output":[]}}`,
		},
	} {
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, evs, fast)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, o := range rtEvents(t, out) {
				typ, _ := o["type"].(string)
				if !strings.HasSuffix(typ, ".delta") {
					continue
				}
				if _, ok := o["output_index"].(json.Number); !ok {
					t.Errorf("%s fast %v: a released tail without output_index (Node: missing output at index undefined): %v", name, fast, o)
				}
			}
		}
	}
}

// A shell command's output tail goes out before the command's .done, as a
// shell_call_output_content.delta under that SSE name too.
func TestResponsesShellOutputTail(t *testing.T) {
	evs := []string{
		`{"type":"response.output_item.added","output_index":0,"item":{"id":"sho_1","type":"shell_call_output","call_id":"c","output":[]}}`,
		`{"type":"response.shell_call_output_content.delta","item_id":"sho_1","output_index":0,"command_index":0,"delta":{"stdout":"hello ann"}}`,
		`{"type":"response.shell_call_output_content.done","item_id":"sho_1","output_index":0,"command_index":0,"output":[{"stdout":"hello ann","stderr":""}]}`,
		`{"type":"response.output_item.done","output_index":0,"item":{"id":"sho_1","type":"shell_call_output","call_id":"c","output":[{"stdout":"hello ann","stderr":""}]}}`,
	}
	// Named events, as OpenAI sends them.
	var b strings.Builder
	for _, e := range evs {
		var o map[string]any
		_ = json.Unmarshal([]byte(e), &o)
		b.WriteString("event: " + o["type"].(string) + "\ndata: " + e + "\n\n")
	}
	var out bytes.Buffer
	r, _ := NewRelay(&out, nil, strings.NewReader(b.String()), EndpointResponses, newMasker(t))
	for r.Step() {
	}
	if _, err := r.Result(); err != nil {
		t.Fatal(err)
	}
	doneAt := -1
	for i, ev := range readEvents(t, out.String()) {
		var o map[string]any
		_ = json.Unmarshal([]byte(ev.Data), &o)
		typ, _ := o["type"].(string)
		if ev.Type != "" && ev.Type != typ {
			t.Errorf("event %d: SSE name %q, data type %q", i, ev.Type, typ)
		}
		if typ == "response.shell_call_output_content.done" {
			doneAt = i
		}
		if typ == "response.shell_call_output_content.delta" && doneAt >= 0 {
			t.Errorf("event %d: output delta %s after the command's .done", i, ev.Data)
		}
	}
}

// With masking off, an item re-pointed at another output keeps a key of
// its own, not one into the reader's reused buffer.
func TestResponsesOutIdxKeyIsNotLent(t *testing.T) {
	d := func(oi string) string {
		return `{"type":"response.output_text.delta","item_id":"msg_a","output_index":` + oi + `,"content_index":0,"delta":"x"}`
	}
	var out bytes.Buffer
	r, _ := NewRelay(&out, nil, strings.NewReader(sseOf([]string{d("0"), d("1"), d("2"), d("3")})), EndpointResponses, nil)
	withFastPaths(true, func() {
		for r.Step() {
		}
	})
	for k := range r.s.outIdx {
		if k != "msg_a" {
			t.Errorf("outIdx key %q: it aliases a spoiled event buffer", k)
		}
	}
}

// Items without text (web searches) are not kept at their end: a long
// agentic response is not cut by the bound on what a stream keeps.
func TestResponsesManyTextlessItemsStream(t *testing.T) {
	var evs []string
	for i := range 2100 {
		n := strconv.Itoa(i)
		evs = append(evs,
			`{"type":"response.output_item.added","output_index":`+n+`,"item":{"id":"ws_`+n+`","type":"web_search_call","status":"in_progress"}}`,
			`{"type":"response.web_search_call.completed","item_id":"ws_`+n+`","output_index":`+n+`}`,
			`{"type":"response.output_item.done","output_index":`+n+`,"item":{"id":"ws_`+n+`","type":"web_search_call","status":"completed"}}`)
	}
	if _, err := rt2Relay(t, evs, true); errors.Is(err, ErrTooManyFields) {
		t.Errorf("2,100 text-less output items: %v", err)
	}
}

// A shell call's commands as added are the text its command deltas
// continue (Node and Python start action.commands from the added item and
// append by command_index): a secret split across them is masked whole,
// whether the deltas carry an item_id or not, and a command after the
// item's end ends the stream.
func TestResponsesShellCommandsAsAddedAreFirstDeltas(t *testing.T) {
	key := fakeKey()
	added := func(cmds ...string) string {
		b, _ := json.Marshal(cmds)
		return `{"type":"response.output_item.added","output_index":0,"item":{"id":"sh","type":"shell_call","call_id":"c","action":{"commands":` + string(b) + `}}}`
	}
	delta := func(id string, ci int, text string) string {
		return `{"type":"response.shell_call_command.delta",` + id + `"output_index":0,"command_index":` + strconv.Itoa(ci) + `,"delta":` + jsonStr(text) + `}`
	}
	completed := `{"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}}`
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"email", []string{added("mail ann@"), delta("", 0, "example.com"), completed}},
		{"key", []string{added("echo " + key[:12]), delta("", 0, key[12:]), completed}},
		{"second command", []string{added("ls", "mail ann@"), delta("", 1, "example.com"), completed}},
		{"deltas with an item_id", []string{added("mail ann@"), delta(`"item_id":"sh",`, 0, "example.com"), completed}},
	} {
		for _, fast := range []bool{true, false} {
			out, err := rt2Relay(t, c.events, fast)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if snap := rt2Snapshot(t, out); strings.Contains(snap, "ann@example.com") || strings.Contains(snap, key) {
				t.Errorf("%s, fast %v: the snapshot joins %q", c.name, fast, snap)
			}
		}
	}
	done := `{"type":"response.output_item.done","output_index":0,"item":{"id":"sh","type":"shell_call","call_id":"c","action":{"commands":["ls"]}}}`
	for _, id := range []string{"", `"item_id":"sh",`} {
		if _, err := rt2Relay(t, []string{added("ls"), done, delta(id, 1, "@example.com")}, false); !errors.Is(err, ErrTextAfterEnd) {
			t.Errorf("a command after its shell call's end (%q): %v, want ErrTextAfterEnd", id, err)
		}
	}
}
