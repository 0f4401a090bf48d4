package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/sse"
)

// split cuts s into pieces of n bytes, moved to rune boundaries.
func split(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		k := min(n, len(s))
		for k < len(s) && !utf8.RuneStart(s[k]) {
			k++
		}
		out = append(out, s[:k])
		s = s[k:]
	}
	return out
}

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// chatSSE is a chat completion stream: content deltas, then tool call
// argument deltas, a finish chunk, a usage chunk and [DONE].
func chatSSE(content, args []string) string {
	var b strings.Builder
	head := `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,`
	fmt.Fprintf(&b, "data: %s\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n", head)
	for _, d := range content {
		fmt.Fprintf(&b, "data: %s\"delta\":{\"content\":%s},\"logprobs\":null,\"finish_reason\":null}]}\n\n", head, jsonStr(d))
	}
	for i, d := range args {
		tc := `{"index":0,"function":{"arguments":` + jsonStr(d) + `}}`
		if i == 0 {
			tc = `{"index":0,"id":"call_1","type":"function","function":{"name":"send","arguments":` + jsonStr(d) + `}}`
		}
		fmt.Fprintf(&b, "data: %s\"delta\":{\"tool_calls\":[%s]},\"finish_reason\":null}]}\n\n", head, tc)
	}
	fmt.Fprintf(&b, "data: %s\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", head)
	b.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

func readEvents(t testing.TB, out string) []sse.Event {
	t.Helper()
	rd := sse.NewReader(strings.NewReader(out), sse.Limits{})
	var evs []sse.Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("output framing: %v\n%s", err, out)
		}
		evs = append(evs, ev)
	}
}

type chatOut struct {
	content, args string
	finished      bool
	done          bool
}

// reassembleChat checks every chunk and joins choice 0's deltas.
func reassembleChat(t testing.TB, out string) chatOut {
	t.Helper()
	var r chatOut
	for _, ev := range readEvents(t, out) {
		if r.done {
			t.Fatalf("event after [DONE]: %q", ev.Data)
		}
		if ev.Data == "[DONE]" {
			r.done = true
			continue
		}
		var c struct {
			Object  string
			Choices []struct {
				Index int
				Delta struct {
					Content   *string
					ToolCalls []struct {
						Index    int
						Function struct{ Arguments string }
					} `json:"tool_calls"`
				}
				FinishReason *string `json:"finish_reason"`
			}
		}
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			t.Fatalf("chunk is not JSON: %v: %q", err, ev.Data)
		}
		if c.Object != "chat.completion.chunk" {
			t.Fatalf("chunk object %q", c.Object)
		}
		for _, ch := range c.Choices {
			if r.finished && (ch.Delta.Content != nil && *ch.Delta.Content != "" || len(ch.Delta.ToolCalls) > 0) {
				t.Fatalf("text after finish_reason: %q", ev.Data)
			}
			if ch.Delta.Content != nil {
				r.content += *ch.Delta.Content
			}
			for _, tc := range ch.Delta.ToolCalls {
				r.args += tc.Function.Arguments
			}
			if ch.FinishReason != nil {
				r.finished = true
			}
		}
	}
	return r
}

func TestCopyStreamChatSplitSecrets(t *testing.T) {
	m := newMasker(t)
	key := fakeKey()
	email := "jane.doe@example.com"
	text := "Sure. Mail " + email + " and use " + key + " to log in."
	args := `{"to":"` + email + `","key":"` + key + `"}`
	wantText, _ := m.Mask(text)
	wantArgs, _ := m.Mask(args)
	for _, n := range []int{1, 2, 7} {
		in := chatSSE(split(text, n), split(args, n))
		var out bytes.Buffer
		flushes := 0
		res, err := CopyStream(&out, func() { flushes++ }, iotest.HalfReader(strings.NewReader(in)), EndpointChat, m)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		o := out.String()
		for _, secret := range []string{email, key, "example.com", strings.Repeat("Ab3", 3)} {
			if strings.Contains(o, secret) {
				t.Fatalf("n=%d: output contains %q", n, secret)
			}
		}
		r := reassembleChat(t, o)
		if r.content != wantText || r.args != wantArgs {
			t.Errorf("n=%d: reassembled\n %q\n %q\nwant\n %q\n %q", n, r.content, r.args, wantText, wantArgs)
		}
		if !strings.Contains(r.content, "[EMAIL]") || !strings.Contains(r.content, "[OPENAI_KEY]") || !r.done || !r.finished {
			t.Errorf("n=%d: %+v", n, r)
		}
		if res.Counts[mask.TypeEmail] != 2 || res.Counts[mask.TypeOpenAIKey] != 2 {
			t.Errorf("n=%d: counts %v", n, res.Counts)
		}
		if !res.HasUsage || res.Usage != (Usage{InputTokens: 9, OutputTokens: 12, TotalTokens: 21}) {
			t.Errorf("n=%d: usage %+v", n, res.Usage)
		}
		if res.Summary != wantText {
			t.Errorf("n=%d: summary %q", n, res.Summary)
		}
		if flushes < len(split(text, n)) {
			t.Errorf("n=%d: %d flushes: not flushed event by event", n, flushes)
		}
	}
}

// respSSE is a Responses stream for one message item with text deltas.
func respSSE(deltas []string, usage bool) string {
	full := strings.Join(deltas, "")
	var b strings.Builder
	seq := 0
	ev := func(typ, body string) {
		fmt.Fprintf(&b, "event: %s\ndata: {\"type\":%q,\"sequence_number\":%d,%s}\n\n", typ, typ, seq, body)
		seq++
	}
	ev("response.created", `"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)
	ev("response.output_item.added", `"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}`)
	ev("response.content_part.added", `"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}`)
	for _, d := range deltas {
		ev("response.output_text.delta", `"item_id":"msg_1","output_index":0,"content_index":0,"delta":`+jsonStr(d)+`,"logprobs":[]`)
	}
	ev("response.output_text.done", `"item_id":"msg_1","output_index":0,"content_index":0,"text":`+jsonStr(full)+`,"logprobs":[]`)
	part := `{"type":"output_text","text":` + jsonStr(full) + `,"annotations":[]}`
	ev("response.content_part.done", `"item_id":"msg_1","output_index":0,"content_index":0,"part":`+part)
	item := `{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[` + part + `]}`
	ev("response.output_item.done", `"output_index":0,"item":`+item)
	u := ""
	if usage {
		u = `,"usage":{"input_tokens":14,"output_tokens":30,"total_tokens":44}`
	}
	ev("response.completed", `"response":{"id":"resp_1","object":"response","status":"completed","output":[`+item+`]`+u+`}`)
	return b.String()
}

type respOut struct {
	deltas                      string
	done, part, item, completed string
	usage                       bool
}

func reassembleResponses(t testing.TB, out string) respOut {
	t.Helper()
	var r respOut
	for _, ev := range readEvents(t, out) {
		var e struct {
			Type     string
			ItemID   string `json:"item_id"`
			Delta    string
			Text     string
			Part     struct{ Text string }
			Item     struct{ Content []struct{ Text string } }
			Response struct {
				Output []struct{ Content []struct{ Text string } }
				Usage  *Usage
			}
		}
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			t.Fatalf("event is not JSON: %v: %q", err, ev.Data)
		}
		if ev.Type != e.Type {
			t.Fatalf("SSE event %q carries type %q", ev.Type, e.Type)
		}
		switch e.Type {
		case "response.output_text.delta":
			if r.done != "" {
				t.Fatalf("delta after output_text.done")
			}
			r.deltas += e.Delta
		case "response.output_text.done":
			r.done = e.Text
		case "response.content_part.done":
			r.part = e.Part.Text
		case "response.output_item.done":
			r.item = e.Item.Content[0].Text
		case "response.completed":
			r.completed = e.Response.Output[0].Content[0].Text
			r.usage = e.Response.Usage != nil
		}
	}
	return r
}

func TestCopyStreamResponsesSplitSecrets(t *testing.T) {
	m := newMasker(t)
	key := fakeKey()
	text := "Your token is " + key + "; write to ops@example.com.\nDone"
	want, _ := m.Mask(text)
	for _, n := range []int{1, 2, 7} {
		var out bytes.Buffer
		res, err := CopyStream(&out, nil, strings.NewReader(respSSE(split(text, n), true)), "/v1/responses", m)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		o := out.String()
		for _, secret := range []string{key, "ops@example.com", strings.Repeat("Ab3", 3)} {
			if strings.Contains(o, secret) {
				t.Fatalf("n=%d: output contains %q", n, secret)
			}
		}
		r := reassembleResponses(t, o)
		if r.deltas != want || r.done != want || r.part != want || r.item != want || r.completed != want {
			t.Errorf("n=%d: inconsistent masking:\n deltas %q\n done %q\n part %q\n item %q\n completed %q\n want %q",
				n, r.deltas, r.done, r.part, r.item, r.completed, want)
		}
		if !strings.Contains(r.deltas, "[OPENAI_KEY]") || !strings.Contains(r.deltas, "[EMAIL]") {
			t.Errorf("n=%d: placeholders missing: %q", n, r.deltas)
		}
		if res.Counts.Total() != 2 {
			t.Errorf("n=%d: counts %v (each field counts once)", n, res.Counts)
		}
		if res.Usage != (Usage{InputTokens: 14, OutputTokens: 30, TotalTokens: 44}) || res.Summary != want {
			t.Errorf("n=%d: usage %+v summary %q", n, res.Usage, res.Summary)
		}
	}
}

func TestCopyStreamResponsesFunctionCall(t *testing.T) {
	m := newMasker(t)
	args := `{"email":"a.b@example.com"}`
	var in strings.Builder
	in.WriteString(`data: {"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"fc_1","type":"function_call","name":"notify","arguments":""}}` + "\n\n")
	for _, d := range split(args, 3) {
		in.WriteString(`data: {"type":"response.function_call_arguments.delta","sequence_number":2,"item_id":"fc_1","output_index":0,"delta":` + jsonStr(d) + "}\n\n")
	}
	// No .done event: the item's end releases the tail.
	in.WriteString(`data: {"type":"response.output_item.done","sequence_number":9,"output_index":0,"item":{"id":"fc_1","type":"function_call","name":"notify","arguments":` + jsonStr(args) + "}}\n\n")
	var out bytes.Buffer
	res, err := CopyStream(&out, nil, strings.NewReader(in.String()), EndpointResponses, m)
	if err != nil {
		t.Fatal(err)
	}
	var deltas string
	var final string
	for _, ev := range readEvents(t, out.String()) {
		var e struct {
			Type, Delta string
			Item        struct{ Arguments string }
		}
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "" {
			t.Errorf("event name %q added to a stream without names", ev.Type)
		}
		switch e.Type {
		case "response.function_call_arguments.delta":
			deltas += e.Delta
		case "response.output_item.done":
			final = e.Item.Arguments
		}
	}
	if want := `{"email":"[EMAIL]"}`; deltas != want || final != want {
		t.Errorf("deltas %q final %q", deltas, final)
	}
	if res.Counts.Total() != 1 || res.Summary != "notify(…)" {
		t.Errorf("counts %v summary %q", res.Counts, res.Summary)
	}
}

func TestCopyStreamFinishChunkWithText(t *testing.T) {
	m := newMasker(t)
	in := `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"mail x@exa"},"logprobs":{"content":[{"token":"x@exa","logprob":-1}]},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"mple.com"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}` + "\n\n"
	var out bytes.Buffer
	res, err := CopyStream(&out, nil, strings.NewReader(in), EndpointChat, m)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "x@exa") {
		t.Errorf("logprobs leak the text: %s", out.String())
	}
	r := reassembleChat(t, out.String())
	if r.content != "mail [EMAIL]" || !r.finished {
		t.Errorf("content %q finished %v\n%s", r.content, r.finished, out.String())
	}
	if !res.HasUsage || res.Usage.TotalTokens != 3 {
		t.Errorf("usage %+v", res.Usage)
	}
}

func TestCopyStreamPassthrough(t *testing.T) {
	in := chatSSE(split("mail jane@example.com", 4), nil)
	off, err := mask.New(mask.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*mask.Masker{nil, off} {
		var out bytes.Buffer
		res, err := CopyStream(&out, nil, iotest.OneByteReader(strings.NewReader(in)), EndpointChat, m)
		if err != nil {
			t.Fatal(err)
		}
		if out.String() != in {
			t.Errorf("passthrough changed bytes")
		}
		if res.Usage.TotalTokens != 21 || res.Summary != "mail jane@example.com" || res.Counts.Total() != 0 {
			t.Errorf("result %+v", res)
		}
	}
	// Unparseable input is still copied through byte for byte.
	junk := "data: " + strings.Repeat("x", sse.DefaultMaxLine+10) + "\n\n"
	var out bytes.Buffer
	if _, err := CopyStream(&out, nil, strings.NewReader(junk), EndpointChat, nil); err != nil || out.String() != junk {
		t.Errorf("junk passthrough: %v, %d bytes", err, out.Len())
	}
}

func TestCopyStreamPassesUnknown(t *testing.T) {
	m := newMasker(t)
	in := ": keep-alive\n\n" +
		"event: response.web_search_call.searching\ndata: {\"type\":\"response.web_search_call.searching\",\"sequence_number\":3,\"item_id\":\"ws_1\"}\n\n" +
		"data: not json a@example.com\n\n" +
		"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\"}\n\n"
	var out bytes.Buffer
	res, err := CopyStream(&out, nil, strings.NewReader(in), EndpointResponses, m)
	if err != nil {
		t.Fatal(err)
	}
	// Unknown events are masked too, and (masking on) re-encoded as read:
	// the same JSON, keys in another order.
	want := ": keep-alive\n" +
		"event: response.web_search_call.searching\ndata: {\"item_id\":\"ws_1\",\"sequence_number\":3,\"type\":\"response.web_search_call.searching\"}\n\n" +
		"data: not json [EMAIL]\n\n" +
		"event: error\ndata: {\"code\":\"server_error\",\"message\":\"boom\",\"type\":\"error\"}\n\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
	if res.Counts.Total() != 1 {
		t.Errorf("counts %v", res.Counts)
	}
}

func TestCopyStreamUpstreamError(t *testing.T) {
	m := newMasker(t)
	in := `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"reach me at bob@exam"},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"ple.org"},"finish_reason":null}]}` + "\n\n"
	boom := errors.New("connection reset")
	var out bytes.Buffer
	_, err := CopyStream(&out, nil, io.MultiReader(strings.NewReader(in), iotest.ErrReader(boom)), EndpointChat, m)
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	// The held tail is released (masked) before giving up.
	if r := reassembleChat(t, out.String()); r.content != "reach me at [EMAIL]" {
		t.Errorf("content %q", r.content)
	}
	// A client that goes away stops the copy.
	_, err = CopyStream(failWriter{}, nil, strings.NewReader(in), EndpointChat, m)
	if err == nil || !strings.Contains(err.Error(), "write to client") {
		t.Errorf("client write error: %v", err)
	}
	_, err = CopyStream(failWriter{}, nil, strings.NewReader(in), EndpointChat, nil)
	if err == nil || !strings.Contains(err.Error(), "write to client") {
		t.Errorf("client write error, passthrough: %v", err)
	}
	if _, err := CopyStream(io.Discard, nil, strings.NewReader(in), "/v1/audio/speech", m); !errors.Is(err, ErrUnsupportedEndpoint) {
		t.Errorf("endpoint: %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// FuzzCopyStream streams arbitrary text with a planted email and key, split
// arbitrarily, through both APIs: framing stays valid, the secrets never
// appear, and the reassembled text equals Mask of the whole.
func FuzzCopyStream(f *testing.F) {
	f.Add("hello world", "x@example.com", uint8(1))
	f.Add("key: ", "sk-proj-abc123def456ghi789jkl012mno", uint8(2))
	f.Add("α β γ\n\"quoted\" \\ back", "+1 415 555 2671", uint8(7))
	f.Add("data: [DONE]\n\n", "4111 1111 1111 1111", uint8(3))
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		f.Fatal(err)
	}
	key := fakeKey()
	f.Fuzz(func(t *testing.T, text, extra string, n uint8) {
		if !utf8.ValidString(text) || !utf8.ValidString(extra) || len(text)+len(extra) > 2048 {
			return
		}
		full := text + " " + key + " " + extra + " mail ann@example.net."
		want, _ := m.Mask(full)
		size := 1 + int(n%9)

		var out bytes.Buffer
		if _, err := CopyStream(&out, nil, strings.NewReader(chatSSE(split(full, size), nil)), EndpointChat, m); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), key) || strings.Contains(out.String(), "ann@example.net") {
			t.Fatal("secret leaked in chat stream")
		}
		if r := reassembleChat(t, out.String()); r.content != want {
			t.Fatalf("chat reassembled %q, want %q", r.content, want)
		}

		out.Reset()
		if _, err := CopyStream(&out, nil, strings.NewReader(respSSE(split(full, size), false)), EndpointResponses, m); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), key) || strings.Contains(out.String(), "ann@example.net") {
			t.Fatal("secret leaked in responses stream")
		}
		if r := reassembleResponses(t, out.String()); r.deltas != want || r.completed != want {
			t.Fatalf("responses reassembled %q / %q, want %q", r.deltas, r.completed, want)
		}
	})
}

// FuzzCopyStreamRaw feeds arbitrary bytes as the upstream stream: no panic,
// and whatever comes out is a well-framed event stream.
func FuzzCopyStreamRaw(f *testing.F) {
	f.Add(chatSSE([]string{"a@b", ".com"}, []string{"{}"}))
	f.Add(respSSE([]string{"x ", "sk-proj-abc123def456ghi789jkl012mno"}, true))
	f.Add("data: {\"choices\":[{\"index\":\"x\",\"delta\":{\"content\":5,\"tool_calls\":[1,{\"function\":null}]},\"finish_reason\":\"stop\"}]}\n\n")
	f.Add("event: response.output_text.done\ndata: {\"text\":7}\n\ndata: {\"type\":\"response.completed\",\"response\":[]}\n\n")
	f.Add("data: {\"choices\":[{\"delta\":{\"content\":\"a\\ud800b\"}}]}\n\n")
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, ep := range []string{EndpointChat, EndpointResponses} {
			var out bytes.Buffer
			_, err := CopyStream(&out, nil, strings.NewReader(in), ep, m)
			if errors.Is(err, ErrUnreadableJSON) || errors.Is(err, ErrTextAfterEnd) || errors.Is(err, ErrSplitOutput) {
				// The stream ends at an event it may not relay (JSON Go
				// cannot read, a lone surrogate, a member in another
				// letter case, text after its field's end, one output
				// under two items); what went out before is well framed.
				readEvents(t, out.String())
				continue
			}
			if err != nil && !errors.Is(err, ErrTooManyFields) {
				t.Fatalf("CopyStream: %v", err)
			}
			// Whatever came out re-parses as an event stream (readEvents
			// fails the test on broken framing), and an event whose data
			// was a JSON object still carries one.
			in := readEvents(t, in)
			got := readEvents(t, out.String())
			objects := func(evs []sse.Event) (n int) {
				for _, ev := range evs {
					var o map[string]any
					if json.Unmarshal([]byte(ev.Data), &o) == nil && o != nil {
						n++
					}
				}
				return n
			}
			if objects(got) < objects(in) {
				t.Fatalf("JSON objects lost: %d in, %d out", objects(in), objects(got))
			}
		}
	})
}

// Members of another type than the SDKs read (choices that are not a list,
// a choice or delta that is not an object, tool_calls that are not a list,
// arguments that are an object) are still model-written text a client may
// log or show: every string in them is masked, on the stream and on the
// buffered answer, fast paths or not.
func TestWrongTypedChatMembersAreMasked(t *testing.T) {
	s := jsonStr(canary)
	shapes := []string{
		`"choices":` + s,
		`"choices":[` + s + `]`,
		`"choices":{"0":{"MSG":{"content":` + s + `}}}`,
		`"choices":[[{"index":0,"MSG":{"content":` + s + `}}]]`,
		`"choices":[{"index":0,"MSG":` + s + `}]`,
		`"choices":[{"index":0,"MSG":{"tool_calls":` + s + `}}]`,
		`"choices":[{"index":0,"MSG":{"tool_calls":[` + s + `]}}]`,
		`"choices":[{"index":0,"MSG":{"tool_calls":[{"index":0,"function":` + s + `}]}}]`,
		`"choices":[{"index":0,"MSG":{"tool_calls":[{"index":0,"function":{"name":"send","arguments":{"to":` + s + `}}}]}}]`,
		`"choices":[{"index":0,"MSG":{"function_call":` + s + `}}]`,
		`"choices":[{"index":0,"MSG":{"function_call":{"name":"f","arguments":[` + s + `]}}}]`,
		`"choices":[{"index":0,"MSG":{"audio":` + s + `}}]`,
		`"object":"error","choices":` + s,
	}
	m := testMasker(t)
	for _, fast := range []bool{true, false} {
		withFastPaths(fast, func() {
			for _, shape := range shapes {
				chunk := `{"id":"c","object":"chat.completion.chunk",` + strings.ReplaceAll(shape, "MSG", "delta") + `}`
				relayMasked(t, EndpointChat, "data: "+chunk+"\n\ndata: [DONE]\n\n", m)
				answerMasked(t, EndpointChat, `{"id":"c","object":"chat.completion",`+strings.ReplaceAll(shape, "MSG", "message")+`}`, m)
			}
		})
	}
}

// canary is text every detector set masks (an address and an AWS key).
const canary = `bob@example.com AKIAIOSFODNN7EXAMPLE`

func leaksCanary(out string) bool {
	return strings.Contains(out, "bob@example.com") || strings.Contains(out, "AKIAIOSFODNN7EXAMPLE")
}

// relayMasked relays stream and fails t if the canary or invalid JSON comes
// out.
func relayMasked(t *testing.T, ep, stream string, m *mask.Masker) {
	t.Helper()
	var out bytes.Buffer
	if _, err := CopyStream(&out, nil, strings.NewReader(stream), ep, m); err != nil {
		t.Fatalf("%s: %v", stream, err)
	}
	if leaksCanary(out.String()) {
		t.Errorf("fast paths %v: the stream let it through:\n%s", fastPaths, out.String())
	}
	for _, ev := range readEvents(t, out.String()) {
		if ev.Data != "[DONE]" && !json.Valid([]byte(ev.Data)) {
			t.Errorf("fast paths %v: invalid JSON out: %s", fastPaths, ev.Data)
		}
	}
}

// answerMasked masks a buffered answer and fails t if the canary or
// invalid JSON comes out.
func answerMasked(t *testing.T, ep, answer string, m *mask.Masker) {
	t.Helper()
	body, _, err := MaskResponse(ep, []byte(answer), m)
	if err != nil || leaksCanary(string(body)) || !json.Valid(body) {
		t.Errorf("fast paths %v: the answer %s came out as %s (%v)", fastPaths, answer, body, err)
	}
}

// The same for Responses events: a part, item, output list or response of
// another type than the SDKs read, text that is not a string, and members
// the handlers of structural events do not read (metadata, an extra note)
// are masked, on the stream and on the buffered answer.
func TestWrongTypedResponsesMembersAreMasked(t *testing.T) {
	s := jsonStr(canary)
	evs := []string{
		`{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":{"x":` + s + `}}`,
		`{"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"text":{"x":` + s + `}}`,
		`{"type":"response.content_part.done","item_id":"m","output_index":0,"content_index":0,"part":` + s + `}`,
		`{"type":"response.content_part.done","item_id":"m","output_index":0,"content_index":0,"part":{"type":"output_text","text":{"x":` + s + `}}}`,
		`{"type":"response.content_part.added","item_id":"m","output_index":0,"content_index":0,"part":{"type":"output_text","text":""},"note":` + s + `}`,
		`{"type":"response.output_item.done","output_index":0,"item":` + s + `}`,
		`{"type":"response.output_item.added","output_index":0,"item":{"id":"m","type":"message","content":[]},"note":` + s + `}`,
		`{"type":"response.output_item.done","output_index":0,"item":{"id":"m","type":"message","content":[` + s + `]}}`,
		`{"type":"response.output_item.done","output_index":0,"item":{"id":"m","type":"function_call","name":"f","arguments":{"a":` + s + `}}}`,
		`{"type":"response.completed","response":{"id":"r","status":"completed","output":` + s + `}}`,
		`{"type":"response.completed","response":{"id":"r","status":"completed","output":[` + s + `]}}`,
		`{"type":"response.completed","response":` + s + `}`,
		`{"type":"response.created","response":{"id":"r","status":"in_progress","output":[],"metadata":{"k":` + s + `}}}`,
		`{"type":"response.completed","response":{"id":"r","status":"completed","output":[]},"note":` + s + `}`,
	}
	m := testMasker(t)
	for _, fast := range []bool{true, false} {
		withFastPaths(fast, func() {
			for _, ev := range evs {
				relayMasked(t, EndpointResponses, respEvents(ev), m)
			}
		})
	}
	for _, body := range []string{
		`{"id":"r","object":"response","output":` + s + `}`,
		`{"id":"r","object":"response","output":[` + s + `]}`,
		`{"id":"r","object":"response","output":[{"type":"message","content":` + s + `}]}`,
		`{"id":"r","object":"response","output":[{"type":"function_call","arguments":{"a":` + s + `}}]}`,
		`{"id":"r","object":"response","output":[],"metadata":{"k":` + s + `}}`,
	} {
		answerMasked(t, EndpointResponses, body, m)
	}
}

// TestOpenFieldBound: a stream may hold maxStreams text fields open at
// once; one more is refused, and a field that finished frees its place
// (its findings still count once).
func TestOpenFieldBound(t *testing.T) {
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		t.Fatal(err)
	}
	delta := func(b *strings.Builder, i int, finish bool) {
		fr := "null"
		if finish {
			fr = `"stop"`
		}
		fmt.Fprintf(b, "data: {\"choices\":[{\"index\":%d,\"delta\":{\"content\":\"mail a%d@example.com \"},\"finish_reason\":%s}]}\n\n", i, i, fr)
	}
	for _, tc := range []struct {
		name   string
		fields int
		finish bool
		want   error
	}{
		{"at the bound", maxStreams, false, nil},
		{"one over", maxStreams + 1, false, ErrTooManyFields},
		{"over, each finished", maxStreams + 10, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in strings.Builder
			for i := range tc.fields {
				delta(&in, i, tc.finish)
			}
			in.WriteString("data: [DONE]\n\n")
			var out bytes.Buffer
			res, err := CopyStream(&out, nil, strings.NewReader(in.String()), EndpointChat, m)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			if n := res.Counts[mask.TypeEmail]; n != tc.fields {
				t.Errorf("emails counted %d, want %d (one per field)", n, tc.fields)
			}
			if strings.Contains(out.String(), "@example.com") {
				t.Error("an address left unmasked")
			}
		})
	}
}

// TestStreamCommentsMasked: a comment line is relayed, masked like the
// events' text and counted (it was written as it came).
func TestStreamCommentsMasked(t *testing.T) {
	var out strings.Builder
	in := ": keep-alive\n\n: mail bob@example.org\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	res, err := CopyStream(&out, nil, strings.NewReader(in), EndpointChat, testMasker(t))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "bob@example.org") || !strings.Contains(out.String(), ": keep-alive\n") || !strings.Contains(out.String(), ": mail [EMAIL") {
		t.Errorf("relayed %q", out.String())
	}
	if res.Counts.Total() != 1 {
		t.Errorf("counts %v, want the comment's email", res.Counts)
	}
}

// TestStreamEventNamesAndIDsMasked: an event's name and id are masked
// like its data (they were relayed as they came; keys were scrubbed by
// the proxy, PII was not), each finding counted where it went out.
func TestStreamEventNamesAndIDsMasked(t *testing.T) {
	var out strings.Builder
	in := "event: e-bob@example.org\nid: id-bob@example.org\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n" +
		"event: e-bob@example.org\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there\"}}]}\n\n" +
		"event: response.output_text.delta\ndata: [DONE]\n\n"
	res, err := CopyStream(&out, nil, strings.NewReader(in), EndpointChat, testMasker(t))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "bob@example.org") || strings.Count(out.String(), "event: [EMAIL") != 3 || !strings.Contains(out.String(), "id: [EMAIL") ||
		!strings.Contains(out.String(), "event: response.output_text.delta\n") {
		t.Errorf("relayed %q", out.String())
	}
	// Each name masked where it went out (the two events and the chunk
	// that releases held-back text under the last name), and the id.
	if res.Counts.Total() != 4 {
		t.Errorf("counts %v, want 4", res.Counts)
	}
}
