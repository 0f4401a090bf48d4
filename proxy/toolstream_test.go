package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/toolcall"
)

// driveBuffer runs a toolBuffer over events, deciding every call at once
// with judge (the stream's asynchronous driver is tested through the
// proxy). It returns what the client would get, the calls judged in
// order, and the error that ended the stream.
func driveBuffer(chat bool, events []string, judge func(toolcall.Call) toolcall.Verdict) (string, []toolcall.Call, *apiError) {
	var out bytes.Buffer
	b := newToolBuffer(chat, func(ev []byte) { out.Write(ev) })
	var calls []toolcall.Call
	for _, e := range events {
		b.push([]byte(e))
		for c := b.pending(); c != nil; c = b.pending() {
			calls = append(calls, *c)
			b.decide(judge(*c))
		}
	}
	return out.String(), calls, b.err
}

// byName judges by tool name: deny-* denied, redact-* redacted, the rest
// allowed.
func byName(c toolcall.Call) toolcall.Verdict {
	switch {
	case strings.HasPrefix(c.Tool(), "deny"):
		return toolcall.Verdict{Action: toolcall.Deny, Rule: "no-deny", Message: "Tool " + c.Tool() + " is blocked by rule no-deny."}
	case strings.HasPrefix(c.Tool(), "redact"):
		return toolcall.Verdict{Action: toolcall.Redact, Rule: "mask", Arguments: `{"path":"[MASKED]"}`}
	}
	return toolcall.Verdict{Action: toolcall.Allow}
}

// unsaid removes the verdicts' messages (which name the tool, as they
// should) from a stream, for leak checks.
func unsaid(stream string) string {
	for _, name := range []string{"deny_shell", "deny_delete", "deny_esc", "deny_hidden", "deny_x"} {
		stream = strings.ReplaceAll(stream, "Tool "+name+" is blocked by rule no-deny.", "")
	}
	return stream
}

func sseData(data string) string { return "data: " + data + "\n\n" }

func chatChunk(delta, finish string) string {
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	return sseData(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + f + `}]}`)
}

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// toolFrags returns the chat chunks of one call, its arguments one byte a
// chunk.
func toolFrags(index int, id, name, args string) []string {
	out := []string{chatChunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}]}`, index, id, name), "")}
	for i := 0; i < len(args); i++ {
		out = append(out, chatChunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}`, index, jsonStr(args[i:i+1])), ""))
	}
	return out
}

// interleave merges lists one element of each at a time.
func interleave(lists ...[]string) []string {
	var out []string
	for i := 0; ; i++ {
		more := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				more = true
			}
		}
		if !more {
			return out
		}
	}
}

// accumulated is a chat stream as the SDKs put it together.
type accumulated struct {
	content string
	calls   map[int]*accCall
	finish  string
	done    bool
}

type accCall struct{ id, name, args string }

// accumulateChat reads a chat stream as openai-node's ChatCompletionStream
// does (choice 0): content joined, tool calls collected by index (id and
// name set, arguments joined), the finish_reason.
func accumulateChat(t *testing.T, stream string) accumulated {
	t.Helper()
	a := accumulated{calls: map[int]*accCall{}}
	for _, ev := range strings.Split(stream, "\n\n") {
		if ev == "" || strings.HasPrefix(ev, ":") {
			continue
		}
		_, data := sseFields([]byte(ev + "\n\n"))
		if data == "[DONE]" {
			a.done = true
			continue
		}
		var ch struct {
			Choices []struct {
				Index int `json:"index"`
				Delta struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						Index    *int   `json:"index"`
						ID       string `json:"id"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			t.Fatalf("the client got an event it cannot parse: %q: %v", data, err)
		}
		for _, c := range ch.Choices {
			if c.Index != 0 {
				continue
			}
			if c.Delta.Content != nil {
				a.content += *c.Delta.Content
			}
			for _, tc := range c.Delta.ToolCalls {
				if tc.Index == nil {
					t.Fatalf("a tool call fragment without index reached the client: %s", data)
				}
				cur := a.calls[*tc.Index]
				if cur == nil {
					cur = &accCall{}
					a.calls[*tc.Index] = cur
				}
				if tc.ID != "" {
					cur.id = tc.ID
				}
				if tc.Function.Name != "" {
					cur.name = tc.Function.Name
				}
				cur.args += tc.Function.Arguments
			}
			if c.FinishReason != nil {
				a.finish = *c.FinishReason
			}
		}
	}
	return a
}

func (a accumulated) names() []string {
	var idx []int
	for i := range a.calls {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var out []string
	for n, i := range idx {
		if i != n {
			return append(out, fmt.Sprintf("gap at index %d", i))
		}
		out = append(out, a.calls[i].name+" "+a.calls[i].args)
	}
	return out
}

func TestChatStreamToolCallsOneByteDeltas(t *testing.T) {
	argsA := `{"path":"/etc/hosts"}`
	argsB := `{"cmd":"rm -rf / --no-preserve-root"}`
	argsC := `{"path":"secret.txt"}`
	head := []string{
		chatChunk(`{"role":"assistant","content":""}`, ""),
		chatChunk(`{"content":"Let me"}`, ""),
		chatChunk(`{"content":" look."}`, ""),
	}
	body := interleave(toolFrags(0, "call_a", "read_file", argsA), toolFrags(1, "call_b", "deny_shell", argsB), toolFrags(2, "call_c", "redact_read", argsC))
	tail := []string{chatChunk(`{}`, "tool_calls"), sseData(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}`), sseData("[DONE]")}
	events := append(append(append([]string{}, head...), body...), tail...)

	var out bytes.Buffer
	b := newToolBuffer(true, func(ev []byte) { out.Write(ev) })
	for _, e := range head {
		b.push([]byte(e))
	}
	if !strings.Contains(out.String(), "Let me") || !strings.Contains(out.String(), " look.") {
		t.Fatalf("text before the call was held back: %q", out.String())
	}

	got, calls, err := driveBuffer(true, events, byName)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || calls[0].Name != "read_file" || calls[0].Arguments != argsA || calls[0].ID != "call_a" ||
		calls[1].Name != "deny_shell" || calls[1].Arguments != argsB || calls[2].Arguments != argsC {
		t.Fatalf("judged %+v", calls)
	}
	for _, leak := range []string{"deny_shell", "rm -rf", "call_b", "no-preserve", "secret.txt"} {
		if strings.Contains(unsaid(got), leak) {
			t.Errorf("%q reached the client:\n%s", leak, got)
		}
	}
	a := accumulateChat(t, got)
	want := []string{"read_file " + argsA, `redact_read {"path":"[MASKED]"}`}
	if fmt.Sprint(a.names()) != fmt.Sprint(want) {
		t.Errorf("the client put together %q, want %q", a.names(), want)
	}
	if a.finish != "tool_calls" || !a.done {
		t.Errorf("finish %q done %v", a.finish, a.done)
	}
	if !strings.Contains(a.content, "Let me look.") || !strings.Contains(a.content, "Tool deny_shell is blocked by rule no-deny.") {
		t.Errorf("content %q", a.content)
	}
	if !strings.Contains(got, `"usage":{"prompt_tokens":5`) {
		t.Error("the usage chunk was lost")
	}
}

func TestChatStreamEveryCallDenied(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []string
	}{
		{"tool_calls", append(toolFrags(0, "call_x", "deny_delete", `{"table":"users"}`), chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))},
		{"finish in the last fragment", append(toolFrags(0, "call_x", "deny_delete", `{"table":"users"}`)[:1],
			chatChunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"table\":\"users\"}"}}]}`, "tool_calls"), sseData("[DONE]"))},
		{"no finish_reason before [DONE]", append(toolFrags(0, "call_x", "deny_delete", `{"table":"users"}`), sseData("[DONE]"))},
		{"legacy function_call", []string{
			chatChunk(`{"role":"assistant","content":null,"function_call":{"name":"deny_delete","arguments":""}}`, ""),
			chatChunk(`{"function_call":{"arguments":"{\"table\":"}}`, ""),
			chatChunk(`{"function_call":{"arguments":"\"users\"}"}}`, ""),
			chatChunk(`{}`, "function_call"), sseData("[DONE]")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, calls, err := driveBuffer(true, tc.events, byName)
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) != 1 || calls[0].Name != "deny_delete" || calls[0].Arguments != `{"table":"users"}` {
				t.Fatalf("judged %+v", calls)
			}
			for _, leak := range []string{"deny_delete", "users", "call_x", "function_call\":{", "tool_calls\":["} {
				if strings.Contains(unsaid(got), leak) {
					t.Errorf("%q reached the client:\n%s", leak, got)
				}
			}
			a := accumulateChat(t, got)
			if a.finish != "stop" || !a.done || len(a.calls) != 0 || a.content != "Tool deny_delete is blocked by rule no-deny." {
				t.Errorf("client got finish %q done %v calls %v content %q\n%s", a.finish, a.done, a.names(), a.content, got)
			}
		})
	}
}

func TestChatStreamAllowedCallsUnchanged(t *testing.T) {
	events := append(interleave(toolFrags(0, "call_1", "get_weather", `{"city":"Paris"}`), toolFrags(1, "call_2", "get_time", `{"tz":"CET"}`)),
		chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
	got, calls, err := driveBuffer(true, events, byName)
	if err != nil || len(calls) != 2 {
		t.Fatal(err, calls)
	}
	a := accumulateChat(t, got)
	if fmt.Sprint(a.names()) != fmt.Sprint([]string{`get_weather {"city":"Paris"}`, `get_time {"tz":"CET"}`}) || a.finish != "tool_calls" {
		t.Errorf("got %q %q", a.names(), a.finish)
	}
	if a.calls[0].id != "call_1" || a.calls[1].id != "call_2" {
		t.Errorf("ids %q %q", a.calls[0].id, a.calls[1].id)
	}
	// The fuzz property's reader sees them too.
	if shown := shownCalls(got, true); len(shown) != 2 || shown[0] != `get_weather {"city":"Paris"}` {
		t.Errorf("shownCalls: %q", shown)
	}
	if shown := shownCalls(strings.Join(respStream([][4]string{{"fc_1", "c1", "f", "{}"}}), ""), false); len(shown) != 3 {
		t.Errorf("shownCalls of a Responses call (added, done, completed): %q", shown)
	}
}

func TestChatStreamWithoutToolsIsUntouched(t *testing.T) {
	events := []string{
		chatChunk(`{"role":"assistant","content":""}`, ""),
		chatChunk(`{"content":"caf\u00e9"}`, ""),
		"event: custom\ndata: {\"x\":1}\n\n",
		chatChunk(`{}`, "stop"),
		sseData("[DONE]"),
	}
	got, calls, err := driveBuffer(true, events, byName)
	if err != nil || len(calls) != 0 {
		t.Fatal(err, calls)
	}
	if got != strings.Join(events, "") {
		t.Errorf("changed:\n%s", got)
	}
}

func TestChatStreamMalformedFailsClosed(t *testing.T) {
	for name, ev := range map[string]string{
		"index not a number":  chatChunk(`{"tool_calls":[{"index":"x","id":"c","function":{"name":"deny_x","arguments":"{}"}}]}`, ""),
		"negative index":      chatChunk(`{"tool_calls":[{"index":-1,"id":"c","function":{"name":"deny_x","arguments":"{}"}}]}`, ""),
		"huge index":          chatChunk(`{"tool_calls":[{"index":99999999,"id":"c","function":{"name":"deny_x","arguments":"{}"}}]}`, ""),
		"arguments an object": chatChunk(`{"tool_calls":[{"index":0,"id":"c","function":{"name":"deny_x","arguments":{"a":1}}}]}`, ""),
		"name a number":       chatChunk(`{"tool_calls":[{"index":0,"id":"c","function":{"name":7,"arguments":"{}"}}]}`, ""),
		"tool_calls a string": chatChunk(`{"tool_calls":"deny_x"}`, ""),
		"function a list":     chatChunk(`{"tool_calls":[{"index":0,"function":["deny_x"]}]}`, ""),
	} {
		t.Run(name, func(t *testing.T) {
			got, calls, err := driveBuffer(true, []string{ev, chatChunk(`{}`, "tool_calls"), sseData("[DONE]")}, func(toolcall.Call) toolcall.Verdict {
				return toolcall.Verdict{Action: toolcall.Allow}
			})
			if err == nil || err.Code != CodeToolCallMalformed {
				t.Fatalf("err = %v", err)
			}
			if got != "" || len(calls) != 0 {
				t.Errorf("got %q, judged %v", got, calls)
			}
		})
	}
}

func TestChatStreamEscapedKeysAreSeen(t *testing.T) {
	// A client reads "\u0074ool_calls" as tool_calls.
	ev := sseData(`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"\u0074ool_calls":[{"index":0,"id":"call_e","type":"function","function":{"name":"deny_esc","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`)
	got, calls, err := driveBuffer(true, []string{ev, sseData("[DONE]")}, byName)
	if err != nil || len(calls) != 1 || calls[0].Name != "deny_esc" {
		t.Fatal(err, calls)
	}
	if strings.Contains(unsaid(got), "deny_esc") || strings.Contains(got, "call_e") {
		t.Errorf("leaked: %s", got)
	}
}

func TestToolCallArgumentsCapFailsClosed(t *testing.T) {
	big := strings.Repeat("A", 64<<10)
	events := []string{chatChunk(`{"tool_calls":[{"index":0,"id":"call_big","type":"function","function":{"name":"read_file","arguments":""}}]}`, "")}
	for n := 0; n*len(big) <= maxToolArguments; n++ {
		events = append(events, chatChunk(`{"tool_calls":[{"index":0,"function":{"arguments":"`+big+`"}}]}`, ""))
	}
	events = append(events, chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
	got, calls, err := driveBuffer(true, events, byName)
	if err == nil || err.Code != CodeToolCallMalformed || len(calls) != 0 {
		t.Fatalf("err %v calls %d", err, len(calls))
	}
	if strings.Contains(got, "AAAA") || strings.Contains(got, "read_file") {
		t.Error("part of the oversized call reached the client")
	}

	// Responses too.
	rev := []string{respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"call_1","name":"read_file","arguments":"","status":"in_progress"}`)}
	for n := 0; n*len(big) <= maxToolArguments; n++ {
		rev = append(rev, respEv(2+n, `"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"`+big+`"`))
	}
	got, calls, err = driveBuffer(false, rev, byName)
	if err == nil || err.Code != CodeToolCallMalformed || len(calls) != 0 || got != "" {
		t.Fatalf("responses: err %v calls %d got %d bytes", err, len(calls), len(got))
	}
}

// ---- responses ----

func respEv(seq int, body string) string {
	var typ struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte("{"+body+"}"), &typ)
	return "event: " + typ.Type + "\ndata: {" + body + fmt.Sprintf(`,"sequence_number":%d}`, seq) + "\n\n"
}

// respCall returns the events of one function_call item at output index oi.
func respCall(seq *int, oi int, id, callID, name, args string) []string {
	next := func() int { *seq++; return *seq }
	out := []string{respEv(next(), fmt.Sprintf(`"type":"response.output_item.added","output_index":%d,"item":{"id":%q,"type":"function_call","status":"in_progress","arguments":"","call_id":%q,"name":%q}`, oi, id, callID, name))}
	for i := 0; i < len(args); i += 3 {
		out = append(out, respEv(next(), fmt.Sprintf(`"type":"response.function_call_arguments.delta","item_id":%q,"output_index":%d,"delta":%s`, id, oi, jsonStr(args[i:min(i+3, len(args))]))))
	}
	out = append(out,
		respEv(next(), fmt.Sprintf(`"type":"response.function_call_arguments.done","item_id":%q,"output_index":%d,"arguments":%s`, id, oi, jsonStr(args))),
		respEv(next(), fmt.Sprintf(`"type":"response.output_item.done","output_index":%d,"item":{"id":%q,"type":"function_call","status":"completed","arguments":%s,"call_id":%q,"name":%q}`, oi, id, jsonStr(args), callID, name)))
	return out
}

func respItemJSON(id, callID, name, args string) string {
	return fmt.Sprintf(`{"id":%q,"type":"function_call","status":"completed","arguments":%s,"call_id":%q,"name":%q}`, id, jsonStr(args), callID, name)
}

// respStream is a Responses stream: a message, then parallel calls.
func respStream(calls [][4]string) []string {
	seq := 0
	next := func() int { seq++; return seq }
	out := []string{
		respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`),
		respEv(next(), `"type":"response.output_item.added","output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}`),
		respEv(next(), `"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Checking.","logprobs":[]`),
		respEv(next(), `"type":"response.output_item.done","output_index":0,"item":{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Checking.","annotations":[]}]}`),
	}
	items := []string{`{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Checking.","annotations":[]}]}`}
	for i, c := range calls {
		out = append(out, respCall(&seq, i+1, c[0], c[1], c[2], c[3])...)
		items = append(items, respItemJSON(c[0], c[1], c[2], c[3]))
	}
	out = append(out, respEv(next(), `"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","output":[`+strings.Join(items, ",")+`],"usage":{"input_tokens":3,"output_tokens":5,"total_tokens":8}}`))
	return out
}

// respView is a Responses stream as a client sees it.
type respView struct {
	seqs     []int
	types    []string
	outIdx   map[string]int // item id -> output_index of its added event
	final    []map[string]any
	done     []map[string]any // items of output_item.done, in order
	args     map[string]string
	text     string
	complete bool
}

func readResponses(t *testing.T, stream string) respView {
	t.Helper()
	v := respView{outIdx: map[string]int{}, args: map[string]string{}}
	for _, ev := range strings.Split(stream, "\n\n") {
		if ev == "" || strings.HasPrefix(ev, ":") {
			continue
		}
		name, data := sseFields([]byte(ev + "\n\n"))
		var o map[string]any
		if err := json.Unmarshal([]byte(data), &o); err != nil {
			t.Fatalf("unparseable event %q", data)
		}
		typ, _ := o["type"].(string)
		if name != "" && name != typ {
			t.Errorf("event name %q for type %q", name, typ)
		}
		v.types = append(v.types, typ)
		if s, ok := o["sequence_number"].(float64); ok {
			v.seqs = append(v.seqs, int(s))
		}
		switch typ {
		case "response.output_item.added":
			item := o["item"].(map[string]any)
			v.outIdx[item["id"].(string)] = int(o["output_index"].(float64))
		case "response.output_item.done":
			v.done = append(v.done, o["item"].(map[string]any))
		case "response.function_call_arguments.delta":
			v.args[o["item_id"].(string)] += o["delta"].(string)
		case "response.output_text.delta":
			v.text += o["delta"].(string)
		case "response.completed":
			v.complete = true
			for _, it := range o["response"].(map[string]any)["output"].([]any) {
				v.final = append(v.final, it.(map[string]any))
			}
		}
	}
	for i := 1; i < len(v.seqs); i++ {
		if v.seqs[i] != v.seqs[i-1]+1 {
			t.Errorf("sequence numbers not contiguous: %v", v.seqs)
			break
		}
	}
	return v
}

func TestResponsesStreamParallelCalls(t *testing.T) {
	argsB := `{"cmd":"rm -rf /srv"}`
	events := respStream([][4]string{
		{"fc_a", "call_a", "read_file", `{"path":"/etc/hosts"}`},
		{"fc_b", "call_b", "deny_shell", argsB},
		{"fc_c", "call_c", "redact_read", `{"path":"secret.txt"}`},
		{"fc_d", "call_d", "get_time", `{}`},
	})
	got, calls, err := driveBuffer(false, events, byName)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 4 || calls[1].Name != "deny_shell" || calls[1].Arguments != argsB || calls[1].ID != "call_b" || calls[0].Kind != toolcall.Function {
		t.Fatalf("judged %+v", calls)
	}
	for _, leak := range []string{"deny_shell", "rm -rf", "call_b", "fc_b", "secret.txt"} {
		if strings.Contains(unsaid(got), leak) {
			t.Errorf("%q reached the client", leak)
		}
	}
	v := readResponses(t, got)
	if !v.complete || len(v.seqs) == 0 || v.seqs[0] != 0 {
		t.Fatalf("stream %v", v.types)
	}
	if len(v.final) != 5 {
		t.Fatalf("final output has %d items", len(v.final))
	}
	wantTypes := []string{"message", "function_call", "message", "function_call", "function_call"}
	for i, it := range v.final {
		if it["type"] != wantTypes[i] {
			t.Errorf("output[%d] is %v, want %s", i, it["type"], wantTypes[i])
		}
	}
	if v.final[2]["content"].([]any)[0].(map[string]any)["text"] != "Tool deny_shell is blocked by rule no-deny." {
		t.Errorf("the denied call's place holds %v", v.final[2])
	}
	if v.final[3]["arguments"] != `{"path":"[MASKED]"}` || v.args["fc_c"] != `{"path":"[MASKED]"}` {
		t.Errorf("redacted call: final %v, streamed %q", v.final[3]["arguments"], v.args["fc_c"])
	}
	if v.final[1]["arguments"] != `{"path":"/etc/hosts"}` || v.args["fc_a"] != `{"path":"/etc/hosts"}` {
		t.Errorf("allowed call: final %v, streamed %q", v.final[1]["arguments"], v.args["fc_a"])
	}
	if v.outIdx["fc_a"] != 1 || v.outIdx["fc_c"] != 3 || v.outIdx["fc_d"] != 4 {
		t.Errorf("output indexes %v", v.outIdx)
	}
	if !strings.Contains(v.text, "Checking.") || !strings.Contains(v.text, "blocked by rule no-deny") {
		t.Errorf("text %q", v.text)
	}
	// Each output_item.done matches the final output.
	if len(v.done) != len(v.final) {
		t.Fatalf("%d done items, %d final", len(v.done), len(v.final))
	}
	for i := range v.done {
		a, _ := json.Marshal(v.done[i])
		b, _ := json.Marshal(v.final[i])
		if string(a) != string(b) {
			t.Errorf("item %d: done %s, final %s", i, a, b)
		}
	}
}

func TestResponsesStreamNoToolsUntouched(t *testing.T) {
	events := respStream(nil)
	got, calls, err := driveBuffer(false, events, byName)
	if err != nil || len(calls) != 0 || got != strings.Join(events, "") {
		t.Fatalf("err %v calls %v\n%s", err, calls, got)
	}
}

func TestResponsesStreamCallOnlyInFinalOutput(t *testing.T) {
	events := respStream(nil)
	last := events[len(events)-1]
	events[len(events)-1] = strings.Replace(last, `"output":[`, `"output":[`+respItemJSON("fc_z", "call_z", "deny_hidden", `{"x":"sneaky"}`)+",", 1)
	got, calls, err := driveBuffer(false, events, byName)
	if err != nil || len(calls) != 1 || calls[0].Name != "deny_hidden" {
		t.Fatal(err, calls)
	}
	if strings.Contains(unsaid(got), "deny_hidden") || strings.Contains(got, "sneaky") {
		t.Error("a call only the final output held reached the client")
	}
	v := readResponses(t, got)
	if len(v.final) != 2 || v.final[0]["type"] != "message" || v.final[1]["type"] != "message" {
		t.Errorf("final %v", v.final)
	}
}

func TestResponsesStreamOtherToolKinds(t *testing.T) {
	events := []string{
		respEv(0, `"type":"response.created","response":{"id":"resp_1","status":"in_progress","output":[]}`),
		respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"lsh_1","type":"local_shell_call","call_id":"call_s","status":"in_progress","action":{"type":"exec","command":["rm","-rf","/"]}}`),
		respEv(2, `"type":"response.output_item.done","output_index":0,"item":{"id":"lsh_1","type":"local_shell_call","call_id":"call_s","status":"completed","action":{"type":"exec","command":["rm","-rf","/"]}}`),
		respEv(3, `"type":"response.output_item.added","output_index":1,"item":{"id":"mcp_1","type":"mcp_call","server_label":"github","name":"search","arguments":""}`),
		respEv(4, `"type":"response.mcp_call_arguments.delta","item_id":"mcp_1","output_index":1,"delta":"{\"q\":1}"`),
		respEv(5, `"type":"response.mcp_call_arguments.done","item_id":"mcp_1","output_index":1,"arguments":"{\"q\":1}"`),
		respEv(6, `"type":"response.output_item.done","output_index":1,"item":{"id":"mcp_1","type":"mcp_call","server_label":"github","name":"search","arguments":"{\"q\":1}","output":"found"}`),
		respEv(7, `"type":"response.output_item.added","output_index":2,"item":{"id":"ctc_1","type":"custom_tool_call","call_id":"call_g","name":"grammar","input":""}`),
		respEv(8, `"type":"response.custom_tool_call_input.delta","item_id":"ctc_1","output_index":2,"delta":"SELECT 1"`),
		respEv(9, `"type":"response.output_item.done","output_index":2,"item":{"id":"ctc_1","type":"custom_tool_call","call_id":"call_g","name":"grammar","input":"SELECT 1"}`),
		respEv(10, `"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[`+
			`{"id":"lsh_1","type":"local_shell_call","call_id":"call_s","status":"completed","action":{"type":"exec","command":["rm","-rf","/"]}},`+
			`{"id":"mcp_1","type":"mcp_call","server_label":"github","name":"search","arguments":"{\"q\":1}","output":"found"},`+
			`{"id":"ctc_1","type":"custom_tool_call","call_id":"call_g","name":"grammar","input":"SELECT 1"}]}`),
	}
	got, calls, err := driveBuffer(false, events, func(c toolcall.Call) toolcall.Verdict {
		if c.Tool() == "local_shell" {
			return toolcall.Verdict{Action: toolcall.Deny, Message: "local_shell is not allowed"}
		}
		return toolcall.Verdict{Action: toolcall.Allow}
	})
	if err != nil || len(calls) != 3 {
		t.Fatal(err, calls)
	}
	if calls[0].Kind != toolcall.LocalShell || calls[0].Arguments != `{"command":["rm","-rf","/"],"type":"exec"}` ||
		calls[1].Tool() != "mcp:github/search" || calls[1].Arguments != `{"q":1}` ||
		calls[2].Kind != toolcall.Custom || calls[2].Arguments != "SELECT 1" || calls[2].ID != "call_g" {
		t.Fatalf("judged %+v", calls)
	}
	if strings.Contains(got, "rm") || strings.Contains(got, "lsh_1") {
		t.Errorf("the denied shell call leaked:\n%s", got)
	}
	v := readResponses(t, got)
	if len(v.final) != 3 || v.final[0]["type"] != "message" || v.final[1]["type"] != "mcp_call" || v.final[2]["input"] != "SELECT 1" {
		t.Errorf("final %v", v.final)
	}
}

func TestResponsesStreamApprovalRequestJudged(t *testing.T) {
	events := []string{
		respEv(0, `"type":"response.created","response":{"id":"resp_1","status":"in_progress","output":[]}`),
		respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"mcpr_1","type":"mcp_approval_request","server_label":"DENYgh","name":"delete_repo","arguments":"{\"repo\":\"prod\"}"}`),
		respEv(2, `"type":"response.output_item.done","output_index":0,"item":{"id":"mcpr_1","type":"mcp_approval_request","server_label":"DENYgh","name":"delete_repo","arguments":"{\"repo\":\"prod\"}"}`),
		respEv(3, `"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[{"id":"mcpr_1","type":"mcp_approval_request","server_label":"DENYgh","name":"delete_repo","arguments":"{\"repo\":\"prod\"}"}]}`),
	}
	got, calls, err := driveBuffer(false, events, func(c toolcall.Call) toolcall.Verdict { return fuzzJudge(c) })
	if err != nil || len(calls) != 1 || calls[0].Tool() != "mcp:DENYgh/delete_repo" || calls[0].Arguments != `{"repo":"prod"}` {
		t.Fatal(err, calls)
	}
	if strings.Contains(got, "DENYgh") || strings.Contains(got, "prod") {
		t.Errorf("the denied approval request reached the client:\n%s", got)
	}
	readResponses(t, got)
}

// TestResponsesStreamManyCallsHeldBounded: the bytes held come back as
// calls are released, so a long stream of many calls stays within
// maxToolHeld.
func TestResponsesStreamManyCallsHeldBounded(t *testing.T) {
	args := jsonStr(`{"blob":"` + strings.Repeat("z", 40<<10) + `"}`)
	var events []string
	seq := 0
	for i := 0; i < 120; i++ { // 120 × 40 KiB: more than maxToolHeld in all
		for _, body := range []string{
			fmt.Sprintf(`"type":"response.output_item.added","output_index":%d,"item":{"id":"fc_%d","type":"function_call","name":"read_file","arguments":""}`, i, i),
			fmt.Sprintf(`"type":"response.function_call_arguments.delta","item_id":"fc_%d","output_index":%d,"delta":%s`, i, i, args),
			fmt.Sprintf(`"type":"response.function_call_arguments.done","item_id":"fc_%d","output_index":%d,"arguments":%s`, i, i, args),
			fmt.Sprintf(`"type":"response.output_item.done","output_index":%d,"item":{"id":"fc_%d","type":"function_call","name":"read_file","arguments":%s}`, i, i, args),
		} {
			events = append(events, respEv(seq, body))
			seq++
		}
	}
	_, judged, err := driveBuffer(false, events, byName)
	if err != nil || len(judged) != 120 {
		t.Fatalf("err %v, %d judged", err, len(judged))
	}
}

// BenchmarkToolBuffer measures the firewall's own cost per stream: a chat
// stream of 40 text chunks without tool calls (what every stream of a
// judged grant pays), and one whose 2 calls arrive a byte at a time.
func BenchmarkToolBuffer(b *testing.B) {
	text := []string{chatChunk(`{"role":"assistant","content":""}`, "")}
	for i := 0; i < 40; i++ {
		text = append(text, chatChunk(`{"content":"word "}`, ""))
	}
	text = append(text, chatChunk(`{}`, "stop"), sseData("[DONE]"))
	tools := append(interleave(toolFrags(0, "call_1", "get_weather", `{"city":"Paris","unit":"celsius"}`), toolFrags(1, "call_2", "deny_x", `{"a":1}`)),
		chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
	for name, events := range map[string][]string{"text": text, "tool_calls": tools} {
		evs := make([][]byte, len(events))
		for i, e := range events {
			evs[i] = []byte(e)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				buf := newToolBuffer(true, func(ev []byte) { n += len(ev) })
				for _, e := range evs {
					buf.push(e)
					for c := buf.pending(); c != nil; c = buf.pending() {
						buf.decide(byName(*c))
					}
				}
			}
		})
	}
}
