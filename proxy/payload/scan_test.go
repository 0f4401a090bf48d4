package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/sse"
)

// The fast paths (scan.go) must mean exactly what the generic map path
// means: these tests run both on the same inputs and compare.

func withFastPaths(on bool, f func()) {
	old := fastPaths
	fastPaths = on
	defer func() { fastPaths = old }()
	f()
}

func testMasker(t testing.TB) *mask.Masker {
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameJSON reports whether a and b are the same JSON value (numbers
// compared as written); texts that are not JSON must be equal bytes.
func sameJSON(a, b []byte) bool {
	va, ea := decodeAny(a)
	vb, eb := decodeAny(b)
	if ea != nil || eb != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

func decodeAny(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

var requestCorpus = []string{
	`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Say hello."}]}`,
	`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"mail bob@example.com or call +1 415 555 0100"}]}`,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"refusal","refusal":"no","text":"both"}]}],"model":"gpt-4o"}`,
	`{"model":"gpt-4o","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"send","arguments":"{\"to\":\"a@b.co\"}"}},"junk",{"function":"x"}]},{"role":"tool","tool_call_id":"c1","content":"sent"}]}`,
	`{"model":"gpt-4o","messages":[{"role":"assistant","function_call":{"name":"f","arguments":"{}"},"refusal":"I can't","content":"x"}],"prediction":{"type":"content","content":"predicted AKIAIOSFODNN7EXAMPLE"}}`,
	`{"model":"gpt-4o","prediction":{"content":[{"type":"text","text":"p1"}]},"messages":[{"content":"m1"}]}`,
	`{"model":"gpt-4o","messages":[{"content":"line\nbreak \"quoted\" \u00e9\u2028 \ud83d\ude00 tab\t"}]}`,
	`{"model":"gpt-4o","messages":[{"content":"a"}],"messages":[{"content":"b"}]}`,
	`{"model":"gpt-4o","messages":[{"content":"a","content":"drop table x"}]}`,
	`{"model":"gpt-4o","messages":[{"\u0063ontent":"hidden","content":"shown"}]}`,
	`{"model":"gpt-4o","messages":[{"Content":"case","content":"exact"}]}`,
	`{"model":42,"stream":"true","messages":[{"content":"x"}]}`,
	`{"model":"gpt-4o","stream":false,"stream_options":{"include_usage":false},"messages":[]}`,
	`{"model":"gpt-4o","messages":{"content":"not an array"}}`,
	`{"model":"gpt-4o","messages":[null,1,"s",[],{"content":7},{"content":{"text":"obj"}}]}`,
	`  {"model" : "gpt-4o" , "messages" : [ { "content" : "spaced" } ] }  `,
	`{"model":"gpt-4o","messages":[{"content":"x"}]} trailing`,
	`{"model":"gpt-4o","messages":[{"content":"x"}],}`,
	`{"model":"gpt-4o","messages":[{"content":"bad \x escape"}]}`,
	`{"model":"gpt-4o","n":01,"messages":[]}`,
	`{"model":"gpt-4o","temperature":1.5e-3,"n":-0,"messages":[{"content":"ok"}]}`,
	`[]`, `null`, ``, `{}`, `{"model":"gpt-4o"`,
	`{"model":"gpt-4o","messages":[{"content":"` + strings.Repeat("long text with sk-proj-", 40) + `"}]}`,
	`{"model":"gpt-4o","messages":[{"content":"invalid utf8 ` + "\xff\xfe" + `"}]}`,
	`{"model":"gpt-4o","messages":[{"content":"lone \ud800 surrogate"}]}`,
	`{"model":"gpt-4o","a":{"b":{"c":{"d":{"e":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}}},"messages":[{"content":"deep"}]}`,
	`{"model":"gpt-4o","messages":[{"role":"user","name":"n","content":[{"type":"text","text":"a"},{"type":"text","text":"b"},{"type":5,"text":"c"}]},{"role":"assistant","audio":null,"tool_calls":[{"function":{"arguments":"{}","name":"f"}}],"function_call":{"name":"g","arguments":"x"}}]}`,
	`{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"https://x"}}]},{"role":"assistant","audio":{"id":"a1"}}]}`,
	`{"model":"gpt-4o","messages":[{"role":"assistant","tool_calls":[{"type":"custom","custom":{"name":"c","input":"i"}}]}],"tools":null,"response_format":null}`,
	`{"model":"gpt-4o","messages":[{"content":"x"}],"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"properties":{"p":{"description":"pd"}}}}}],"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{}}}}`,
	`{"model":"gpt-4o","k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"messages":[{"content":"many keys"}]}`,
}

// compareRequest parses body with and without the fast path and compares
// everything a caller can see.
func compareRequest(t testing.TB, body string, m *mask.Masker) {
	t.Helper()
	type got struct {
		r      *Request
		err    error
		calls  [3][]string
		outs   [3][]byte
		errs   [3]error
		masked []byte
		counts mask.Counts
		merr   error
	}
	rewrites := []func(string) string{
		func(s string) string { return s },
		strings.ToUpper,
		func(s string) string { out, _ := m.Mask(s); return out },
	}
	run := func() got {
		var g got
		g.r, g.err = ParseRequest(EndpointChat, []byte(body))
		if g.err != nil {
			return g
		}
		for i, f := range rewrites {
			g.outs[i], g.errs[i] = g.r.Rewrite(func(s string) string {
				g.calls[i] = append(g.calls[i], s)
				return f(s)
			})
		}
		g.counts = mask.Counts{}
		g.masked, g.merr = g.r.Rewrite(func(s string) string {
			out, c := m.Mask(s)
			g.counts.Add(c)
			return out
		})
		return g
	}
	var fast, slow got
	withFastPaths(true, func() { fast = run() })
	withFastPaths(false, func() { slow = run() })
	if (fast.err == nil) != (slow.err == nil) {
		t.Fatalf("%q: error fast %v, generic %v", body, fast.err, slow.err)
	}
	if fast.err != nil {
		return
	}
	if fast.r.Model != slow.r.Model || fast.r.Stream != slow.r.Stream || fast.r.Text != slow.r.Text || fast.r.Endpoint != slow.r.Endpoint ||
		!reflect.DeepEqual(fast.r.Unscanned, slow.r.Unscanned) {
		t.Fatalf("%q: fast %q %v %q, generic %q %v %q", body, fast.r.Model, fast.r.Stream, fast.r.Text, slow.r.Model, slow.r.Stream, slow.r.Text)
	}
	for i := range rewrites {
		if !reflect.DeepEqual(fast.calls[i], slow.calls[i]) {
			t.Fatalf("%q: rewrite %d saw fast %q, generic %q", body, i, fast.calls[i], slow.calls[i])
		}
		if (fast.errs[i] == nil) != (slow.errs[i] == nil) || !sameJSON(fast.outs[i], slow.outs[i]) {
			t.Fatalf("%q: rewrite %d: fast %s (%v), generic %s (%v)", body, i, fast.outs[i], fast.errs[i], slow.outs[i], slow.errs[i])
		}
	}
	if !sameJSON(fast.masked, slow.masked) || !reflect.DeepEqual(fast.counts, slow.counts) || (fast.merr == nil) != (slow.merr == nil) {
		t.Fatalf("%q: Mask fast %s %v, generic %s %v", body, fast.masked, fast.counts, slow.masked, slow.counts)
	}
}

func TestFastRequestMatchesGeneric(t *testing.T) {
	m := testMasker(t)
	for _, body := range requestCorpus {
		compareRequest(t, body, m)
	}
}

// The fast path must actually serve the usual request.
func TestFastRequestIsUsed(t *testing.T) {
	r, err := ParseRequest(EndpointChat, []byte(requestCorpus[0]))
	if err != nil || !r.scanned || r.root != nil {
		t.Fatalf("usual request took the generic path: %v", err)
	}
	b, ok := r.AddField("stream_options", json.RawMessage(`{"include_usage":true}`))
	if !ok || !sameJSON(b, []byte(`{"stream_options":{"include_usage":true},`+requestCorpus[0][1:])) {
		t.Fatalf("AddField: %s %v", b, ok)
	}
	if _, ok := r.AddField("model", json.RawMessage(`"x"`)); ok {
		t.Fatal("AddField replaced an existing member")
	}
}

var answerCorpus = []string{
	`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":"fp"}`,
	`{"choices":[{"index":0,"message":{"content":"write to alice@example.com"}}],"usage":{"prompt_tokens":5,"completion_tokens":7}}`,
	`{"choices":[{"message":{"refusal":"I cannot share 4111 1111 1111 1111"}}]}`,
	`{"choices":[{"message":{"content":null,"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}`,
	`{"choices":[{"message":{"content":"x"},"logprobs":{"content":[{"token":"x","logprob":-0.1}]}}]}`,
	`{"choices":[{"message":{"content":"two"}},{"message":{"content":"choices"}}],"usage":{"input_tokens":1.5,"prompt_tokens":"3","output_tokens":2,"total_tokens":1e2}}`,
	`{"choices":["x",{"message":{"content":"second is first object"}}]}`,
	`{"choices":{"0":{"message":{"content":"not an array"}}},"usage":null}`,
	`{"choices":[{"message":"text"}],"usage":[]}`,
	`{"choices":[{"message":{"content":"esc \"q\" \n \u00e9 \u2028"}}]}`,
	`{"choices":[{"message":{"content":"a","content":"b"}}]}`,
	`{"choices":[{"index":"0","message":{"content":"string index"}}]}`,
	`{"choices":[{"message":{"content":"x"}}],"usage":{"total_tokens":9223372036854775808,"prompt_tokens":-1}}`,
	`not json at all, but alice@example.com`,
	`{"choices":[]} {}`,
	`{"choices":[{"message":{"content":"` + strings.Repeat("plain words ", 200) + `"}}]}`,
}

func TestFastAnswerMatchesGeneric(t *testing.T) {
	for _, m := range []*mask.Masker{testMasker(t), nil} {
		for _, body := range answerCorpus {
			compareAnswer(t, body, m)
		}
	}
}

func compareAnswer(t testing.TB, body string, m *mask.Masker) {
	t.Helper()
	var fo, so []byte
	var fr, sr Result
	var fe, se error
	withFastPaths(true, func() { fo, fr, fe = MaskResponse(EndpointChat, []byte(body), m) })
	withFastPaths(false, func() { so, sr, se = MaskResponse(EndpointChat, []byte(body), m) })
	// With masking on the generic path re-encodes what it decoded: the
	// same JSON, not the same bytes.
	same := bytes.Equal(fo, so) || m.Enabled() && fe == nil && se == nil && sameJSON(fo, so)
	if !same || !reflect.DeepEqual(fr, sr) || (fe == nil) != (se == nil) {
		t.Fatalf("%q (masking %v):\nfast    %s %+v %v\ngeneric %s %+v %v", body, m.Enabled(), fo, fr, fe, so, sr, se)
	}
}

// chunk renders a chat chunk with the given choices JSON.
func chunk(choices string) string {
	return `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","system_fingerprint":"fp","choices":` + choices + `,"usage":null}`
}

func delta(content string) string {
	return chunk(`[{"index":0,"delta":{"content":` + jsonStr(content) + `},"logprobs":null,"finish_reason":null}]`)
}

var streamCorpus = [][]string{
	// The mock's shape: role chunk, content deltas, finish chunk, [DONE].
	append(append([]string{chunk(`[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`)},
		deltas("Hello! Write to alice@exam", "ple.com or use key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "456789ABCDEF now.\n\"Done\" ✓")...),
		chunk(`[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`), "[DONE]"),
	// Usage on request: null on every chunk, then a usage-only chunk.
	{delta("plain"), delta(" words"), chunk(`[{"index":0,"delta":{},"finish_reason":"length"}]`),
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, "[DONE]"},
	// Refusals, two choices, keys in another order, text on the finishing chunk.
	{chunk(`[{"delta":{"refusal":"I can't email bob@"},"index":1,"finish_reason":null},{"index":0,"delta":{"content":"AKIAIOSFODNN"}}]`),
		chunk(`[{"index":1,"delta":{"refusal":"example.com"}},{"index":0,"delta":{"content":"7EXAMPLE ok","refusal":null}}]`),
		chunk(`[{"index":0,"delta":{"content":" end"},"finish_reason":"stop"},{"index":1,"delta":{},"finish_reason":"stop"}]`), "[DONE]"},
	// Tails of two choices, of both kinds, interleaved, released before a
	// finishing chunk whose members differ (no object, obfuscation, usage).
	flushCase,
	// Tool calls and logprobs take the generic path mid-stream.
	{delta("call "), chunk(`[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"send","arguments":"{\"to\":\"a@b"}}]}}]`),
		chunk(`[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[{"token":"x"}]}}]`), delta(".co\"}"), "[DONE]"},
	// Unusual shapes.
	{chunk(`[{"index":"0","delta":{"content":"string index"}}]`), chunk(`[{"index":1.0,"delta":{"content":"float index"}}]`),
		chunk(`[{"index":0,"delta":"not an object"}]`), chunk(`{"0":1}`), chunk(`["x",null]`),
		`{"choices":[{"delta":{"content":"dup"},"delta":{"content":"keys"}}]}`, `{"choices":[{"delta":{"\u0063ontent":"escaped key"}}]}`,
		`{"choices":[{"delta":{"content":"trailing"}}]} x`, `not json with alice@example.com`, `{"choices":[{"delta":{"content":"  spaced "} } ] , "obfuscation" : "abc" }`,
		chunk(`[{"index":0,"delta":{"content":"esc \u0041KIA \ud83d\ude00 \u2028 \\ \/"}}]`), "[DONE]"},
}

// flushCase ends with tails held back in two choices (an address and a key
// cut short), released by flushChat before the finishing chunk.
var flushCase = []string{
	`{"id":"c","model":"m","service_tier":"default","choices":[{"index":0,"delta":{"content":"mail bob@"}},{"index":1,"delta":{"content":"key AKIAIOSFODNN"}}]}`,
	`{"id":"c","model":"m","choices":[{"index":0,"delta":{"refusal":"or carol@"}}]}`,
	`{"created":2,"id":"c","obfuscation":"zz","choices":[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{},"finish_reason":"stop"}],"usage":null}`,
	"[DONE]",
}

// The tails go out in a chunk written from the finishing chunk's text, its
// members in their order (the generic path sorts them): the fast path
// serves the usual flush, and writes what TestFastStreamMatchesGeneric
// holds to the generic path's meaning.
func TestFastFlushChunk(t *testing.T) {
	var out bytes.Buffer
	if _, err := CopyStream(&out, nil, strings.NewReader(sseOf(flushCase)), EndpointChat, testMasker(t)); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, out.String())
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5 (the flush chunk among them):\n%s", len(evs), out.String())
	}
	want := `{"created":2,"id":"c","object":"chat.completion.chunk","choices":[` +
		`{"delta":{"content":"bob@","refusal":"carol@"},"finish_reason":null,"index":0,"logprobs":null},` +
		`{"delta":{"content":"AKIAIOSFODNN"},"finish_reason":null,"index":1,"logprobs":null}]}`
	if got := evs[2].Data; got != want {
		t.Fatalf("flush chunk %q %q,\nwant     %q", evs[2].Type, got, want)
	}
}

func deltas(parts ...string) []string {
	var out []string
	for _, p := range parts {
		for _, piece := range split(p, 5) {
			out = append(out, delta(piece))
		}
	}
	return out
}

func sseOf(datas []string) string {
	var b strings.Builder
	for i, d := range datas {
		if i == 1 {
			b.WriteString("event: chunk\nid: 7\n")
		}
		b.WriteString("data: " + strings.ReplaceAll(d, "\n", "\ndata: ") + "\n\n")
	}
	return b.String()
}

func compareStream(t testing.TB, stream string, m *mask.Masker) {
	t.Helper()
	compareStreamAt(t, EndpointChat, stream, m)
}

func compareStreamAt(t testing.TB, ep, stream string, m *mask.Masker) {
	t.Helper()
	run := func() (string, Result, error) {
		var out bytes.Buffer
		res, err := CopyStream(&out, nil, strings.NewReader(stream), ep, m)
		return out.String(), res, err
	}
	var fo, so string
	var fr, sr Result
	var fe, se error
	withFastPaths(true, func() { fo, fr, fe = run() })
	withFastPaths(false, func() { so, sr, se = run() })
	// A Relay whose source declines to wait before every byte, as the
	// proxy's does, must write exactly what CopyStream writes.
	var ro bytes.Buffer
	relay, err := NewRelay(&ro, nil, &wouldBlock{r: iotest.OneByteReader(strings.NewReader(stream))}, ep, m)
	if err != nil {
		t.Fatal(err)
	}
	for relay.Step() {
	}
	rr, re := relay.Result()
	if ro.String() != fo || !reflect.DeepEqual(rr, fr) || fmt.Sprint(re) != fmt.Sprint(fe) {
		t.Fatalf("stream %q (masking %v): relay over a blocking source wrote\n%s\n%+v %v\nCopyStream wrote\n%s\n%+v %v", stream, m.Enabled(), ro.String(), rr, re, fo, fr, fe)
	}
	if !reflect.DeepEqual(fr, sr) || fmt.Sprint(fe) != fmt.Sprint(se) {
		t.Fatalf("stream %q (masking %v): result fast %+v %v, generic %+v %v", stream, m.Enabled(), fr, fe, sr, se)
	}
	fev, sev := readEvents(t, fo), readEvents(t, so)
	if len(fev) != len(sev) {
		t.Fatalf("stream %q (masking %v): %d events fast, %d generic\nfast:\n%s\ngeneric:\n%s", stream, m.Enabled(), len(fev), len(sev), fo, so)
	}
	for i := range fev {
		a, b := fev[i], sev[i]
		if a.Type != b.Type || a.ID != b.ID || a.HasID != b.HasID || a.Retry != b.Retry || !sameJSON([]byte(a.Data), []byte(b.Data)) {
			t.Fatalf("stream %q (masking %v): event %d fast %+v, generic %+v", stream, m.Enabled(), i, a, b)
		}
	}
}

func TestFastStreamMatchesGeneric(t *testing.T) {
	for _, m := range []*mask.Masker{testMasker(t), nil} {
		for _, datas := range streamCorpus {
			compareStream(t, sseOf(datas), m)
		}
	}
}

// respDelta is a response.output_text.delta event's data.
func respDelta(seq int, item, text string) string {
	return fmt.Sprintf(`{"type":"response.output_text.delta","sequence_number":%d,"item_id":%q,"output_index":0,"content_index":0,"delta":%q,"logprobs":[]}`, seq, item, text)
}

// respEvents frames Responses events, each named by its type unless named.
func respEvents(datas ...string) string {
	var b strings.Builder
	for _, d := range datas {
		var v struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal([]byte(d), &v)
		if v.Type != "" {
			b.WriteString("event: " + v.Type + "\n")
		}
		b.WriteString("data: " + d + "\n\n")
	}
	return b.String()
}

// The Responses fast path (output_text deltas) means what the generic path
// means, on usual and unusual events.
func TestFastResponsesStreamMatchesGeneric(t *testing.T) {
	created := `{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4o","output":[]}}`
	part := `{"type":"response.content_part.added","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}`
	done := `{"type":"response.output_text.done","sequence_number":90,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hello! Write to alice@example.com","logprobs":[]}`
	completed := `{"type":"response.completed","sequence_number":99,"response":{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o","output":[],"usage":{"input_tokens":3,"output_tokens":5,"total_tokens":8}}}`
	var mail []string
	for i, piece := range split("Hello! Write to alice@example.com or use sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEF now.\n\"Done\" ✓", 5) {
		mail = append(mail, respDelta(2+i, "msg_1", piece))
	}
	corpus := [][]string{
		append(append([]string{created, part}, mail...), done, completed),
		{created, respDelta(2, "msg_1", "two "), respDelta(3, "msg_2", "items "), strings.Replace(respDelta(4, "msg_1", "bob@"), `"content_index":0`, `"content_index":1`, 1),
			strings.Replace(respDelta(5, "msg_1", "example.com"), `"content_index":0`, `"content_index":1`, 1), completed},
		// Shapes the fast path leaves to the generic one.
		{created,
			`{"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"dup","delta":"keys"}`,
			`{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"Delta":"case","delta":"variant"}`,
			`{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"logprobs","logprobs":[{"token":"x","logprob":-0.1}]}`,
			`{"type":"response.output_text.delta","sequence_number":5.0,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"float seq"}`,
			`{"type":"response.output_text.delta","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":"0","delta":"string index"}`,
			`{"type":"response.output_text.delta","sequence_number":7,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"extra","annotations":["carol@example.com"]}`,
			`{"type":"response.output_text.delta","sequence_number":8,"item_id":"msg_1","output_index":0,"content_index":0}`,
			`{"type":"response.output_text.delta","sequence_number":9,"item_id":"msg_1","output_index":0,"content_index":0,"delta":7}`,
			`{"type":"response.output_text.delta","sequence_number":10,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"esc \u0041KIA \ud83d\ude00 \u2028 \\ \/","obfuscation":"abc"}`,
			`{"type":"response.refusal.delta","sequence_number":11,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"dave@example.com"}`,
			` { "type" : "response.output_text.delta" , "item_id" : "msg_1" , "delta" : "spaced dave@" } `,
			`{"type":"response.output_text.delta","item_id":"msg_1","delta":"example.com"} trailing`,
			`{"type":"response.output_text.delta","item_id":"msg_1","delta":"example.com"}`,
			completed},
	}
	for _, m := range []*mask.Masker{testMasker(t), nil} {
		for _, datas := range corpus {
			compareStreamAt(t, EndpointResponses, respEvents(datas...), m)
		}
	}
	// The fast path serves the usual delta: its bytes are kept but for the
	// delta string.
	var out bytes.Buffer
	in := respEvents(respDelta(1, "msg_1", "mail alice@example.com"), respDelta(2, "msg_1", " now"), completed)
	if _, err := CopyStream(&out, nil, strings.NewReader(in), EndpointResponses, testMasker(t)); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, out.String())
	if want := respDelta(1, "msg_1", "mail "); len(evs) == 0 || evs[0].Data != want {
		t.Fatalf("first event\n got %+v\nwant %s", evs, want)
	}
}

// The fast path must actually serve the usual chunk, and a masked delta
// replaces only its own string.
func TestFastStreamSplicesChangedDeltas(t *testing.T) {
	m := testMasker(t)
	var out bytes.Buffer
	in := sseOf([]string{delta("mail alice@example.com"), delta(" now"), "[DONE]"})
	if _, err := CopyStream(&out, nil, strings.NewReader(in), EndpointChat, m); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, out.String())
	if len(evs) < 2 {
		t.Fatalf("events: %q", out.String())
	}
	// The address is held back until it is complete; the chunk keeps its
	// own bytes but for the content string.
	if want := delta("mail "); evs[0].Data != want {
		t.Fatalf("first chunk\n got %s\nwant %s", evs[0].Data, want)
	}
	if got := reassembleChat(t, out.String()).content; got != "mail [EMAIL] now" {
		t.Fatalf("content %q", got)
	}
}

func FuzzChatFastPaths(f *testing.F) {
	for _, s := range requestCorpus {
		f.Add(s)
	}
	for _, s := range answerCorpus {
		f.Add(s)
	}
	for _, datas := range streamCorpus {
		for _, d := range datas {
			f.Add(d)
		}
	}
	f.Add(respDelta(2, "msg_1", "mple.co"))
	f.Add(`{"type":"response.output_text.delta","item_id":"msg_1","content_index":1,"delta":"x\u2028y","obfuscation":"o","logprobs":[]}`)
	m := testMasker(f)
	f.Fuzz(func(t *testing.T, s string) {
		compareRequest(t, s, m)
		compareAnswer(t, s, m)
		compareAnswer(t, s, nil)
		if strings.ContainsAny(s, "\r\n") {
			return // one data line per event
		}
		stream := sseOf([]string{delta("a@exa"), s, delta("mple.com"), s, chunk(`[{"index":0,"delta":{},"finish_reason":"stop"}]`), "[DONE]"})
		compareStream(t, stream, m)
		compareStream(t, stream, nil)
		// The same event amid a Responses stream, named and not.
		resp := respEvents(respDelta(1, "msg_1", "a@exa"), s, respDelta(3, "msg_1", "mple.com")) + "data: " + s + "\n\n" +
			respEvents(`{"type":"response.completed","sequence_number":9,"response":{"id":"r","status":"completed","output":[]}}`)
		compareStreamAt(t, EndpointResponses, resp, m)
		compareStreamAt(t, EndpointResponses, resp, nil)
	})
}

// wouldBlock returns sse.ErrWouldBlock before every piece of its input.
type wouldBlock struct {
	r       io.Reader
	blocked bool
}

func (b *wouldBlock) Read(p []byte) (int, error) {
	if !b.blocked {
		b.blocked = true
		return 0, sse.ErrWouldBlock
	}
	b.blocked = false
	return b.r.Read(p)
}

// The mock upstream's answer and one of its chunks, as the load benchmark
// sees them.
const (
	benchAnswerBody = `{"id":"chatcmpl-6ye5ptr3bbpg3ncn3uj5bzenkb","object":"chat.completion","created":1795636547,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"[pamctl mock upstream] You said: \"Please review the following design notes for our internal ticket router and tell me …\" (171 words). This answer comes from pamctl's built-in mock, not a model: vault a provider key to reach a real one.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":297,"completion_tokens":56,"total_tokens":353,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_pamctl_mock"}`
	benchChunk      = `{"id":"chatcmpl-r7dbpag4xzdny4wsj4c2hth7dk","object":"chat.completion.chunk","created":1795636547,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_pamctl_mock","choices":[{"index":0,"delta":{"content":"our i"},"logprobs":null,"finish_reason":null}],"usage":null}`
)

func BenchmarkScan(b *testing.B) {
	for _, in := range []struct{ name, s, key string }{{"answer", benchAnswerBody, "message"}, {"chunk", benchChunk, "delta"}} {
		b.Run(in.name+"/scan", func(b *testing.B) {
			b.ReportAllocs()
			var d chatDoc
			for b.Loop() {
				d.choices = d.choices[:0]
				if !scanChat(in.s, in.key, true, &d) {
					b.Fatal("scan failed")
				}
			}
		})
		b.Run(in.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeObject([]byte(in.s)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	body := []byte(chatBody())
	b.Run("request/scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var sc reqScan
			if !scanChatRequest(string(body), &sc) {
				b.Fatal("scan failed")
			}
		}
	})
	b.Run("request/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeObject(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func chatBody() string {
	return `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a careful assistant for an engineering team."},{"role":"user","content":` +
		jsonStr(strings.Repeat("Please review the following design notes for our internal ticket router. ", 14)) + `}]}`
}

// A stream the parser gives up on (a line over sse.DefaultMaxLine) is
// still copied through byte for byte with masking off, by CopyStream and by
// a Relay over a source that declines to wait.
func TestRelayRawCopyWithBlockingSource(t *testing.T) {
	stream := "data: " + strings.Repeat("a", sse.DefaultMaxLine+10) + "\n\ndata: after\n\n"
	var want bytes.Buffer
	wr, werr := CopyStream(&want, nil, strings.NewReader(stream), EndpointChat, nil)
	var got bytes.Buffer
	relay, err := NewRelay(&got, nil, &wouldBlock{r: strings.NewReader(stream)}, EndpointChat, nil)
	if err != nil {
		t.Fatal(err)
	}
	for relay.Step() {
	}
	gr, gerr := relay.Result()
	if got.String() != stream || want.String() != stream || !reflect.DeepEqual(gr, wr) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Fatalf("raw copy: relay %d bytes %+v %v, CopyStream %d bytes %+v %v, input %d bytes", got.Len(), gr, gerr, want.Len(), wr, werr, len(stream))
	}
}

// BenchmarkRelayChatStream relays what the bench's mock upstream streams (a
// role chunk, 50 content deltas, the finishing chunk, the usage chunk,
// [DONE]) with every detector masking: the relay's own cost per stream,
// without the network (ns/event divides it by the 54 events).
func BenchmarkRelayChatStream(b *testing.B) {
	text := strings.Repeat("Please review the design notes for our router. ", 6)
	var datas []string
	datas = append(datas, chunk(`[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`))
	for _, piece := range split(text, len(text)/50) {
		datas = append(datas, delta(piece))
	}
	datas = append(datas, chunk(`[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`),
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":300,"completion_tokens":50,"total_tokens":350}}`, "[DONE]")
	var stream strings.Builder
	for _, d := range datas {
		stream.WriteString("data: " + d + "\n\n")
	}
	s := stream.String()
	m := testMasker(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := CopyStream(io.Discard, nil, strings.NewReader(s), EndpointChat, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(datas)), "ns/event")
}

// plainRunNaive is plainRun byte by byte.
func plainRunNaive(s string, i int) int {
	for ; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return i
}

// plainRun finds the same byte as a byte loop: every byte value at every
// position of a word, among neighbours that make the word arithmetic
// borrow (0x00, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xff), from every start.
func TestPlainRunMatchesByteLoop(t *testing.T) {
	fillers := []byte{'a', 0x00, 0x01, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	for _, fill := range fillers {
		for c := range 256 {
			for pos := range 19 {
				b := bytes.Repeat([]byte{fill}, 19)
				b[pos] = byte(c)
				s := string(b)
				for from := range len(s) + 1 {
					if got, want := plainRun(s, from), plainRunNaive(s, from); got != want {
						t.Fatalf("plainRun(%q, %d) = %d, byte loop %d", s, from, got, want)
					}
				}
			}
		}
	}
}

func FuzzPlainRun(f *testing.F) {
	f.Add([]byte(`"abc\"def\\ghi"`), 0)
	f.Add([]byte("\x80\x80\x80\x80\x80\x80\x80\x22"), 1)
	f.Fuzz(func(t *testing.T, b []byte, from int) {
		if from < 0 || from > len(b) {
			return
		}
		if got, want := plainRun(string(b), from), plainRunNaive(string(b), from); got != want {
			t.Fatalf("plainRun(%q, %d) = %d, byte loop %d", b, from, got, want)
		}
	})
}
