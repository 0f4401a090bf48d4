package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/toolcall"
)

// fuzzJudge denies every call whose name or arguments hold DENY or DARG,
// with a message that names neither.
func fuzzJudge(c toolcall.Call) toolcall.Verdict {
	if strings.Contains(c.Name, "DENY") || strings.Contains(c.Arguments, "DARG") || strings.Contains(c.Server, "DENY") {
		return toolcall.Verdict{Action: toolcall.Deny, Message: "blocked."}
	}
	if strings.Contains(c.Name, "REDACT") {
		return toolcall.Verdict{Action: toolcall.Redact, Arguments: `{"masked":true}`}
	}
	return toolcall.Verdict{Action: toolcall.Allow}
}

// fuzzDrive runs the buffer over events, checking its memory bound after
// every step.
func fuzzDrive(t *testing.T, chat bool, events [][]byte) (string, []toolcall.Call, *apiError) {
	var out bytes.Buffer
	b := newToolBuffer(chat, func(ev []byte) { out.Write(ev) })
	var calls []toolcall.Call
	for _, e := range events {
		b.push(e)
		for c := b.pending(); c != nil; c = b.pending() {
			calls = append(calls, *c)
			b.decide(fuzzJudge(*c))
		}
		if b.held > maxToolHeld+len(e) {
			t.Fatalf("held %d bytes", b.held)
		}
	}
	return out.String(), calls, b.err
}

// shownCalls returns every tool call an SDK would read from a stream, as
// the SDKs read them: chat choices[].delta.tool_calls[] and
// delta.function_call; the Responses tool items of output_item events and
// of the response.output of response events.
func shownCalls(stream string, chat bool) []string {
	var out []string
	for _, ev := range strings.Split(stream, "\n\n") {
		if ev == "" {
			continue
		}
		_, data := sseFields([]byte(ev + "\n\n"))
		var o map[string]any
		if json.Unmarshal([]byte(data), &o) != nil {
			continue
		}
		if chat {
			out = append(out, shownChat(o)...)
		} else {
			out = append(out, shownResponses(o)...)
		}
	}
	return out
}

func shownChat(o map[string]any) []string {
	var out []string
	choices, _ := o["choices"].([]any)
	for _, c := range choices {
		ch, _ := c.(map[string]any)
		delta, _ := ch["delta"].(map[string]any)
		tcs, _ := delta["tool_calls"].([]any)
		for _, tc := range tcs {
			tcm, _ := tc.(map[string]any)
			if fn, ok := tcm["function"].(map[string]any); ok {
				out = append(out, sv(fn["name"])+" "+sv(fn["arguments"]))
			}
			if fn, ok := tcm["custom"].(map[string]any); ok {
				out = append(out, sv(fn["name"])+" "+sv(fn["input"]))
			}
			if tcm["function"] == nil && tcm["custom"] == nil {
				out = append(out, fmt.Sprint(tcm["id"], " (no function)"))
			}
		}
		if fn, ok := delta["function_call"].(map[string]any); ok {
			out = append(out, sv(fn["name"])+" "+sv(fn["arguments"]))
		}
	}
	return out
}

// sv renders a JSON value read into any; absent is "".
func sv(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func shownResponses(o map[string]any) []string {
	var out []string
	items := []any{o["item"]}
	if resp, ok := o["response"].(map[string]any); ok {
		list, _ := resp["output"].([]any)
		items = append(items, list...)
	}
	for _, it := range items {
		item, _ := it.(map[string]any)
		if item == nil {
			continue
		}
		t, _ := item["type"].(string)
		if k, _ := toolcall.ItemKind(t); k == toolcall.Unknown {
			out = append(out, "DENY: an item of unknown type "+t) // never shown, whatever the judge said
			continue
		}
		if isCallItem(t) {
			out = append(out, sv(item["name"])+" "+sv(item["server_label"])+" "+sv(item["arguments"])+sv(item["input"])+sv(item["action"])+sv(item["operation"]))
		}
	}
	return out
}

// genChat turns fuzz bytes into a chat stream of tool-call fragments:
// calls whose names and arguments carry markers (DENY/DARG for the ones
// the judge denies), split anywhere, interleaved, with repeated and
// skipped indexes, text, finishes, usage and malformed fragments.
func genChat(in []byte) [][]byte {
	next := func() byte {
		if len(in) == 0 {
			return 0
		}
		c := in[0]
		in = in[1:]
		return c
	}
	type gc struct {
		idx        int
		id, name   string
		args       string
		sent, head bool
	}
	var calls []*gc
	for k := 0; k < 4; k++ {
		c := next()
		name, args := fmt.Sprintf("allow_%d", k), fmt.Sprintf(`{"a":"ok%d-%s"}`, k, strings.Repeat("x", int(c%32)))
		if c&1 == 1 {
			name, args = fmt.Sprintf("DENY_%d", k), fmt.Sprintf(`{"cmd":"DARG%d %s"}`, k, strings.Repeat("y", int(c%32)))
		}
		calls = append(calls, &gc{idx: int(c>>5) % 4, id: fmt.Sprintf("call_%d", k), name: name, args: args})
	}
	chunk := func(delta string, finish string) []byte {
		f := "null"
		if finish != "" {
			f = `"` + finish + `"`
		}
		return []byte(sseData(`{"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + f + `}]}`))
	}
	frag := func(c *gc, n int) string {
		if !c.head {
			c.head = true
			return fmt.Sprintf(`{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}`, c.idx, c.id, c.name)
		}
		piece := c.args[:min(n, len(c.args))]
		c.args = c.args[len(piece):]
		return fmt.Sprintf(`{"index":%d,"function":{"arguments":%s}}`, c.idx, jsonStr(piece))
	}
	var out [][]byte
	for len(in) > 0 && len(out) < 400 {
		op := next()
		c := calls[int(op>>4)%len(calls)]
		switch op % 8 {
		case 0, 1, 2:
			out = append(out, chunk(`{"tool_calls":[`+frag(c, int(op>>3)%5+1)+`]}`, ""))
		case 3:
			d := calls[int(op>>6)%len(calls)]
			out = append(out, chunk(`{"tool_calls":[`+frag(c, 2)+`,`+frag(d, 3)+`]}`, ""))
		case 4:
			out = append(out, chunk(`{"content":"text "}`, ""))
		case 5:
			out = append(out, chunk(`{}`, "tool_calls"))
		case 6:
			if op&0x80 != 0 {
				out = append(out, chunk(`{"tool_calls":[{"index":"bad","function":{"name":"x"}}]}`, ""))
			} else {
				out = append(out, []byte(sseData(`{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"total_tokens":3}}`)))
			}
		case 7:
			out = append(out, chunk(`{"function_call":{"name":"`+c.name+`","arguments":`+jsonStr(c.args)+`}}`, ""))
		}
	}
	return append(out, chunk(`{}`, "tool_calls"), []byte(sseData("[DONE]")))
}

// FuzzToolStreamChat: however a model's calls are fragmented, a denied
// call's name and arguments never reach the client, and every call the
// client can read was allowed.
func FuzzToolStreamChat(f *testing.F) {
	for _, seed := range [][]byte{
		{0x00, 0x01, 0x22, 0x43, 0x10, 0x11, 0x20, 0x21, 0x30, 0x31, 0x05, 0x15},
		{0x01, 0x01, 0x01, 0x01, 0x00, 0x10, 0x20, 0x30, 0x08, 0x18, 0x28, 0x38, 0x0b, 0x4b, 0x8b, 0x05},
		{0x61, 0x63, 0x65, 0x67, 0x03, 0x43, 0x83, 0xc3, 0x04, 0x07, 0x17, 0x05},
		{0xff, 0xfe, 0xfd, 0xfc, 0x86, 0x00, 0x01, 0x02},
		[]byte("the quick brown fox jumps over the lazy dog, again and again"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		events := genChat(in)
		got, calls, err := fuzzDrive(t, true, events)
		if strings.Contains(got, "DENY") || strings.Contains(got, "DARG") {
			t.Fatalf("a denied call reached the client (judged %v, err %v):\n%s", calls, err, got)
		}
		checkShown(t, got, calls, true)
	})
}

// checkShown checks every call an SDK reads from got was judged and
// allowed.
func checkShown(t *testing.T, got string, calls []toolcall.Call, chat bool) {
	t.Helper()
	allowed := map[string]bool{}
	for _, c := range calls {
		v := fuzzJudge(c)
		if v.Action != toolcall.Deny {
			allowed[c.Name] = true
		}
	}
	for _, s := range shownCalls(got, chat) {
		ok := false
		for name := range allowed {
			ok = ok || strings.HasPrefix(s, name+" ")
		}
		if strings.Contains(s, "DENY") || strings.Contains(s, "DARG") || !ok {
			t.Fatalf("the client can read call %q, which was not allowed (judged %v):\n%s", s, calls, got)
		}
	}
}

// FuzzToolStreamRaw feeds arbitrary events (the input cut at blank
// lines) to the chat or the Responses buffer: whatever they hold, every
// tool call the client can read was judged and allowed, and memory stays
// bounded.
func FuzzToolStreamRaw(f *testing.F) {
	join := func(evs []string) []byte { return []byte(strings.Join(evs, "")) }
	f.Add(true, join(append(interleave(toolFrags(0, "c1", "allow_a", `{"x":1}`), toolFrags(1, "c2", "DENY_b", `{"DARG":2}`)), chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))))
	f.Add(true, join([]string{chatChunk(`{"\u0074ool_calls":[{"index":0,"id":"c","function":{"name":"DENY","arguments":"{}"}}]}`, "tool_calls"), sseData("[DONE]")}))
	f.Add(true, join([]string{chatChunk(`{"tool_calls":[{"index":0,"id":"c","function":{"name":"allow","arguments":"{"}},{"index":0,"id":"d","function":{"name":"DENY","arguments":"}"}}]}`, ""), sseData("[DONE]")}))
	f.Add(false, join(respStream([][4]string{{"fc_1", "c1", "allow_a", `{"x":1}`}, {"fc_2", "c2", "DENY_b", `{"y":"DARG"}`}, {"fc_3", "c3", "REDACT_c", `{"z":3}`}})))
	f.Add(false, join([]string{
		respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"m1","type":"mcp_call","server_label":"DENYsrv","name":"q","arguments":""}`),
		respEv(2, `"type":"response.mcp_call_arguments.delta","item_id":"m1","output_index":0,"delta":"{}"`),
		respEv(3, `"type":"response.completed","response":{"output":[{"id":"m1","type":"mcp_call","server_label":"DENYsrv","name":"q","arguments":"{}"},{"id":"x","type":"function_call","name":"DENY2","arguments":"{}"}]}`),
	}))
	f.Add(false, join([]string{
		respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"f1","type":"function_call","name":"allow","arguments":""}`),
		respEv(2, `"type":"response.output_item.added","output_index":1,"item":{"id":"f2","type":"function_call","name":"DENY","arguments":""}`),
		respEv(3, `"type":"response.function_call_arguments.delta","item_id":"f2","output_index":1,"delta":"DARG"`),
		respEv(4, `"type":"response.output_item.done","output_index":0,"item":{"id":"f1","type":"function_call","name":"allow","arguments":"{}"}`),
		respEv(5, `"type":"error","message":"boom"`),
	}))
	seq := 0
	f.Add(false, join(append(append(append([]string{},
		shellEvents(&seq, 0, "sh_1", "c1", 2, "ls", "DARG rm")...),
		patchEvents(&seq, 1, "ap_1", "c2", "a.go", "+DARG")...),
		respEv(20, `"type":"response.output_item.added","output_index":2,"item":{"id":"p1","type":"program","code":"x"}`),
		respEv(21, `"type":"response.shell_call_command.delta","output_index":0,"command_index":0,"delta":"DARG"`),
		respCompleted(22, shellItem("sh_1", "c1", "completed", "ls", "DARG rm"), `{"id":"p1","type":"program","code":"x"}`, `{"id":"x2","type":"Shell_Call"}`))))
	f.Fuzz(func(t *testing.T, chat bool, data []byte) {
		var events [][]byte
		for _, ev := range bytes.SplitAfter(data, []byte("\n\n")) {
			if len(ev) > 0 {
				events = append(events, ev)
			}
		}
		got, calls, _ := fuzzDrive(t, chat, events)
		checkShown(t, got, calls, chat)
	})
}
