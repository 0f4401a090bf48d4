package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// A member spelled, in another letter case, as one the relay reads to join
// a field's deltas is one Go's decoder (openai-go) reads in its place, while
// the relay could only mask it within its event: an address split over
// such members came out whole. Such an event ends the stream; the members
// as spelled pass.
func TestStreamCaseVariantMembersEndTheStream(t *testing.T) {
	m := newMasker(t)
	chat := func(choices string) string {
		return sseOf([]string{chunk(`[{"index":0,"delta":{"content":"mail ann"},"finish_reason":null}]`), chunk(choices), "[DONE]"})
	}
	resp := func(ev string) string {
		return sseOf([]string{`{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"mail ann"}`, ev})
	}
	for _, c := range []struct {
		name, endpoint, sse string
		ends                bool
	}{
		{"Content", EndpointChat, chat(`[{"index":0,"delta":{"Content":"@example.com"},"finish_reason":null}]`), true},
		{"long s refusal", EndpointChat, chat(`[{"index":0,"delta":{"refu\u017fal":"@example.com"},"finish_reason":null}]`), true},
		{"Reasoning_content", EndpointChat, chat(`[{"index":0,"delta":{"Reasoning_Content":"@example.com"},"finish_reason":null}]`), true},
		{"Delta", EndpointChat, chat(`[{"index":0,"Delta":{"content":"@example.com"},"finish_reason":null}]`), true},
		{"Index", EndpointChat, chat(`[{"Index":0,"delta":{"content":"@example.com"},"finish_reason":null}]`), true},
		{"Choices", EndpointChat, strings.Replace(chat(`[{"index":0,"delta":{"content":"@example.com"},"finish_reason":null}]`), `"choices":[{"index":0,"delta":{"content":"@`, `"Choices":[{"index":0,"delta":{"content":"@`, 1), true},
		{"Function", EndpointChat, chat(`[{"index":0,"delta":{"tool_calls":[{"index":0,"Function":{"arguments":"@example.com"}}]},"finish_reason":null}]`), true},
		{"Arguments", EndpointChat, chat(`[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"Arguments":"@example.com"}}]},"finish_reason":null}]`), true},
		{"Kelvin", EndpointChat, chat(`[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"\u212aey":"x"}}]},"finish_reason":null}]`), false},
		{"Transcript", EndpointChat, chat(`[{"index":0,"delta":{"audio":{"Transcript":"@example.com"}},"finish_reason":null}]`), true},
		{"as spelled", EndpointChat, chat(`[{"index":0,"delta":{"content":"@example.com"},"finish_reason":null}]`), false},
		{"other member", EndpointChat, chat(`[{"index":0,"delta":{"Contents":"@example.com"},"finish_reason":null}]`), false},
		{"resp Delta", EndpointResponses, resp(`{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"Delta":"@example.com"}`), true},
		{"resp Item_id", EndpointResponses, resp(`{"type":"response.output_text.delta","Item_Id":"m","output_index":0,"content_index":0,"delta":"@example.com"}`), true},
		{"resp Content_index", EndpointResponses, resp(`{"type":"response.output_text.delta","item_id":"m","output_index":0,"CONTENT_INDEX":0,"delta":"@example.com"}`), true},
		{"resp Text", EndpointResponses, resp(`{"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"Text":"mail ann@example.com"}`), true},
		{"resp Type", EndpointResponses, resp(`{"Type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"@example.com"}`), true},
		{"resp as spelled", EndpointResponses, resp(`{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"@example.com"}`), false},
	} {
		for _, n := range []int{1, 1 << 20} {
			var out bytes.Buffer
			_, err := CopyStream(&out, nil, &chunkReader{s: c.sse, n: n}, c.endpoint, m)
			if got := errors.Is(err, ErrUnreadableJSON); got != c.ends {
				t.Errorf("%s (reads of %d): ended %v (%v), want %v", c.name, n, got, err, c.ends)
			}
			if strings.Contains(out.String(), "ann@example.com") || strings.Contains(joinedText(out.String()), "ann@example.com") {
				t.Errorf("%s: the address came out:\n%s", c.name, out.String())
			}
		}
	}
	// Nothing is inspected without masking or keys: passed as it came.
	var out bytes.Buffer
	in := chat(`[{"index":0,"delta":{"Content":"@example.com"},"finish_reason":null}]`)
	if _, err := CopyStream(&out, nil, strings.NewReader(in), EndpointChat, nil); err != nil || out.String() != in {
		t.Errorf("masking off: %v\n%s", err, out.String())
	}
}

// Text for a chat choice after its finish_reason ends the stream: the
// choice's held-back tail went out at the finish, so an address or a key
// split across it would rejoin in a client. Other choices, empty text and
// what follows [DONE] are not held to it.
func TestChatTextAfterFinishEndsTheStream(t *testing.T) {
	m := newMasker(t)
	key := fakeKey()
	ch := func(idx, content, finish string) string {
		f := "null"
		if finish != "" {
			f = `"` + finish + `"`
		}
		return chunk(`[{"index":` + idx + `,"delta":{"content":` + jsonStr(content) + `},"finish_reason":` + f + `}]`)
	}
	slow := func(c string) string { return strings.Replace(c, `"created":1`, `"created":1,"x":1`, 1) } // not the fast path's members
	for _, c := range []struct {
		name   string
		events []string
		ends   bool
	}{
		{"email across the finish", []string{ch("0", "mail ann", ""), ch("0", "", "stop"), ch("0", "@example.com", ""), "[DONE]"}, true},
		{"key across the finish", []string{ch("0", key[:12], ""), ch("0", "", "stop"), ch("0", key[12:], ""), "[DONE]"}, true},
		{"generic path", []string{slow(ch("0", "mail ann", "")), slow(ch("0", "", "stop")), slow(ch("0", "@example.com", "")), "[DONE]"}, true},
		{"text on the finishing chunk, then more", []string{ch("0", "mail ann", ""), ch("0", "x", "stop"), ch("0", "@example.com", ""), "[DONE]"}, true},
		{"another choice goes on", []string{ch("0", "a", ""), ch("0", "", "stop"), ch("1", "b", ""), ch("1", "", "stop"), "[DONE]"}, false},
		{"empty text after the finish", []string{ch("0", "a", ""), ch("0", "", "stop"), ch("0", "", ""), "[DONE]"}, false},
		{"after [DONE]", []string{ch("0", "a", ""), ch("0", "", "stop"), "[DONE]", ch("0", "late", "")}, false},
	} {
		for _, n := range []int{1, 1 << 20} {
			var out bytes.Buffer
			_, err := CopyStream(&out, nil, &chunkReader{s: sseOf(c.events), n: n}, EndpointChat, m)
			if got := errors.Is(err, ErrTextAfterEnd); got != c.ends {
				t.Errorf("%s (reads of %d): ended %v (%v), want %v", c.name, n, got, err, c.ends)
			}
			if j := joinedText(out.String()); strings.Contains(j, "ann@example.com") || strings.Contains(j, key) {
				t.Errorf("%s: rejoined %q", c.name, j)
			}
		}
	}
}

// Only a reason ends a choice: servers that send "" (or 0, false) on every
// chunk stream as before, fast path and generic path alike.
func TestEmptyFinishReasonIsNoFinish(t *testing.T) {
	m := newMasker(t)
	for _, fr := range []string{`""`, `0`, `false`} {
		for _, extra := range []string{"", `,"x":1`} { // the generic path reads chunks with other members
			ch := func(content string) string {
				return strings.Replace(chunk(`[{"index":0,"delta":{"content":`+jsonStr(content)+`},"finish_reason":`+fr+`}]`), `"created":1`, `"created":1`+extra, 1)
			}
			empty := strings.Replace(chunk(`[{"index":0,"delta":{},"finish_reason":`+fr+`}]`), `"created":1`, `"created":1`+extra, 1)
			var out bytes.Buffer
			_, err := CopyStream(&out, nil, strings.NewReader(sseOf([]string{ch("mail ann"), empty, ch("@example.com"), ch(" ok"), "[DONE]"})), EndpointChat, m)
			if err != nil {
				t.Errorf("finish_reason %s%s: %v", fr, extra, err)
			}
			if j := joinedText(out.String()); strings.Contains(j, "ann@example.com") || !strings.Contains(j, "ok") {
				t.Errorf("finish_reason %s%s: joined %q", fr, extra, j)
			}
		}
	}
}

// A Responses text streamed on after its .done, its part's or its item's
// end ends the stream, refusals too; text without an item_id is held to
// the end of its output_index, and only text with neither is not.
func TestResponsesTextAfterEndEndsTheStream(t *testing.T) {
	m := newMasker(t)
	d := func(item, text string) string {
		id := `"item_id":` + jsonStr(item) + `,`
		switch item {
		case "-": // no item_id member
			id = ""
		case "--": // neither an item_id nor an output_index
			return `{"type":"response.output_text.delta","content_index":0,"delta":` + jsonStr(text) + `}`
		}
		return `{"type":"response.output_text.delta",` + id + `"output_index":0,"content_index":0,"delta":` + jsonStr(text) + `}`
	}
	refusal := func(item, text string) string {
		return strings.Replace(d(item, text), "output_text", "refusal", 1)
	}
	for _, c := range []struct {
		name, end, item string
		ends            bool
	}{
		{"text done", `{"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"text":"mail ann"}`, "m", true},
		{"part done", `{"type":"response.content_part.done","item_id":"m","output_index":0,"content_index":0,"part":{"type":"output_text","text":"mail ann"}}`, "m", true},
		{"item done", `{"type":"response.output_item.done","output_index":0,"item":{"id":"m","type":"message","role":"assistant","content":[{"type":"output_text","text":"mail ann"}]}}`, "m", true},
		{"another item", `{"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"text":"mail ann"}`, "m2", false},
		{"empty item_id, text done", `{"type":"response.output_text.done","output_index":0,"content_index":0,"text":"mail ann"}`, "", true},
		{"no item_id, text done", `{"type":"response.output_text.done","output_index":0,"content_index":0,"text":"mail ann"}`, "-", true},
		{"no item_id, part done", `{"type":"response.content_part.done","output_index":0,"content_index":0,"part":{"type":"output_text","text":"mail ann"}}`, "-", true},
		{"no item_id, item done", `{"type":"response.output_item.done","output_index":0,"item":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"mail ann"}]}}`, "-", true},
		{"no item_id, another output's end", `{"type":"response.output_text.done","output_index":1,"content_index":0,"text":"x"}`, "-", false},
		{"no item_id nor output_index", `{"type":"response.output_text.done","content_index":0,"text":"mail ann"}`, "--", false},
		{"response completed", `{"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}}`, "m", true},
		{"no item_id, response completed", `{"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}}`, "-", true},
	} {
		for _, slow := range []bool{false, true} {
			ev := func(item, text string) string {
				e := d(item, text)
				if slow {
					e = strings.Replace(e, `"delta":`, `"x":1,"delta":`, 1) // the generic path
				}
				return e
			}
			var out bytes.Buffer
			_, err := CopyStream(&out, nil, strings.NewReader(sseOf([]string{ev(c.item, "mail ann"), c.end, ev(c.item, "@example.com")})), EndpointResponses, m)
			if got := errors.Is(err, ErrTextAfterEnd); got != c.ends {
				t.Errorf("%s (generic path %v): ended %v (%v), want %v", c.name, slow, got, err, c.ends)
			}
		}
	}
	// A refusal ends at its part's end as text does.
	for _, item := range []string{"m", "-"} {
		end := `{"type":"response.content_part.done","item_id":"m","output_index":0,"content_index":0,"part":{"type":"refusal","refusal":"mail ann"}}`
		if item == "-" {
			end = strings.Replace(end, `"item_id":"m",`, "", 1)
		}
		var out bytes.Buffer
		_, err := CopyStream(&out, nil, strings.NewReader(sseOf([]string{refusal(item, "mail ann"), end, refusal(item, "@example.com")})), EndpointResponses, m)
		if !errors.Is(err, ErrTextAfterEnd) {
			t.Errorf("refusal after its part's end (item %q): %v, want ErrTextAfterEnd", item, err)
		}
	}
}

// Text streamed without an item_id is its output's: the tail held back at
// its end goes out under its output_index (which the Python and Node SDKs
// join by), with no item_id made up, and two such outputs are two fields.
func TestResponsesTextWithoutItemIDKeyedByOutput(t *testing.T) {
	m := newMasker(t)
	d := func(idx int, text string) string {
		return `{"type":"response.output_text.delta","output_index":` + strconv.Itoa(idx) + `,"content_index":0,"delta":` + jsonStr(text) + `}`
	}
	done := func(idx int, text string) string {
		return `{"type":"response.output_text.done","output_index":` + strconv.Itoa(idx) + `,"content_index":0,"text":` + jsonStr(text) + `}`
	}
	var out bytes.Buffer
	// Output 1's text ends with the start of an address; output 0's goes
	// on after output 1 ended.
	_, err := CopyStream(&out, nil, strings.NewReader(sseOf([]string{
		d(0, "hello "), d(1, "write to ann"), done(1, "write to ann"), d(0, "@example.com"), done(0, "hello @example.com"),
	})), EndpointResponses, m)
	if err != nil {
		t.Fatal(err)
	}
	joined := map[int]string{} // what an SDK joining by output_index reads
	for _, line := range strings.Split(out.String(), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || !strings.Contains(data, ".delta") {
			continue
		}
		var e struct {
			ItemID *string `json:"item_id"`
			Output *int    `json:"output_index"`
			Delta  string  `json:"delta"`
		}
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatal(err)
		}
		if e.ItemID != nil {
			t.Errorf("a delta event with an item_id the upstream never sent: %s", data)
		}
		if e.Output == nil {
			t.Errorf("a delta event without its output_index: %s", data)
			continue
		}
		joined[*e.Output] += e.Delta
	}
	if joined[0] != "hello @example.com" || joined[1] != "write to ann" {
		t.Errorf("joined by output: %v, want output 0 %q and output 1 %q", joined, "hello @example.com", "write to ann")
	}
}

// The text deltas of one output_index under two item ids, or with and
// without one, end the stream: the Python and Node SDKs join by index,
// openai-go by item id. Separate outputs, and outputs whose deltas never
// carry an id (shell commands), stream on.
func TestResponsesOutputUnderTwoItemsEndsTheStream(t *testing.T) {
	m := newMasker(t)
	d := func(item string, idx int, text string) string {
		id := ""
		if item != "-" {
			id = `"item_id":` + jsonStr(item) + `,`
		}
		return `{"type":"response.output_text.delta",` + id + `"output_index":` + strconv.Itoa(idx) + `,"content_index":0,"delta":` + jsonStr(text) + `}`
	}
	slow := func(ev string) string { return strings.Replace(ev, `"delta":`, `"x":1,"delta":`, 1) } // the generic path
	for _, c := range []struct {
		name   string
		events []string
		ends   bool
	}{
		{"two ids, one index", []string{d("a", 0, "mail ann"), d("b", 0, "@example.com")}, true},
		{"an id, then none", []string{d("a", 0, "mail ann"), d("-", 0, "@example.com")}, true},
		{"none, then an id", []string{d("-", 0, "mail ann"), d("a", 0, "@example.com")}, true},
		{"generic path", []string{slow(d("a", 0, "mail ann")), slow(d("b", 0, "@example.com"))}, true},
		{"case of the id", []string{d("msg_1", 0, "mail ann"), d("MSG_1", 0, "@example.com")}, true},
		{"two outputs", []string{d("a", 0, "mail ann"), d("b", 1, "x"), d("a", 0, " more")}, false},
		{"never an id", []string{d("-", 0, "ls"), d("-", 1, "rm"), d("-", 0, " -la")}, false},
	} {
		var out bytes.Buffer
		_, err := CopyStream(&out, nil, strings.NewReader(sseOf(c.events)), EndpointResponses, m)
		if got := errors.Is(err, ErrSplitOutput); got != c.ends {
			t.Errorf("%s: ended %v (%v), want %v", c.name, got, err, c.ends)
		}
		if strings.Contains(out.String(), "ann@example.com") {
			t.Errorf("%s: the address came out", c.name)
		}
	}
}
