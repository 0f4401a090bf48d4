package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/scrub"
)

// ---- client simulators -------------------------------------------------------

// rtEvents returns the decoded data of every event the relay wrote.
func rtEvents(t testing.TB, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for _, line := range strings.Split(out, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(data))
		dec.UseNumber()
		var o map[string]any
		if err := dec.Decode(&o); err != nil {
			continue
		}
		evs = append(evs, o)
	}
	return evs
}

// jsKey is how JavaScript indexes an array (snapshot.output[i]) or an
// object with v: JSON.parse numbers are doubles (-0, 0.0, 1e0 are 0, 0, 1;
// 2^53+1 is 2^53), a string indexes as itself ("0" is element 0).
func jsKey(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return "", false
		}
		if f == 0 {
			f = 0 // -0
		}
		return strconv.FormatFloat(f, 'g', -1, 64), true
	case string:
		return x, true
	}
	return "", false
}

// pyKey is how Python keys a dict (or a list, for bool) with v after
// json.loads: 0 == 0.0 == -0 == False, ints exact.
func pyKey(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		if i, ok := new(big.Int).SetString(string(x), 10); ok {
			return i.String(), true
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return "", false
		}
		if f == math.Trunc(f) && !math.IsInf(f, 0) {
			bf := new(big.Float).SetFloat64(f)
			i, _ := bf.Int(nil)
			return i.String(), true
		}
		return strconv.FormatFloat(f, 'g', -1, 64), true
	case bool:
		if x {
			return "1", true
		}
		return "0", true
	case string:
		return "s:" + x, true
	}
	return "", false
}

// goKey is how openai-go (encoding/json-like) reads an index into an int64.
func goKey(v any) (string, bool) {
	if n, ok := v.(json.Number); ok {
		if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			return strconv.FormatInt(i, 10), true
		}
	}
	if v == nil {
		return "0", true
	}
	return "", false
}

// sdkJoins joins the text deltas of the relay's output as clients do:
// Node and Python by output_index and content_index (summary_index), as
// their numbers compare, openai-go by item_id and content_index.
func sdkJoins(t testing.TB, out string) map[string]string {
	j := map[string]string{}
	for _, o := range rtEvents(t, out) {
		typ, _ := o["type"].(string)
		kind, ok := strings.CutSuffix(strings.TrimPrefix(typ, "response."), ".delta")
		if !ok {
			continue
		}
		d, _ := o["delta"].(string)
		part := o["content_index"]
		if _, has := o["content_index"]; !has {
			part = o["summary_index"]
		}
		for name, key := range map[string]func(any) (string, bool){"node": jsKey, "python": pyKey} {
			oi, ok1 := key(o["output_index"])
			ci, ok2 := key(part)
			if part == nil {
				ci, ok2 = "0", true
			}
			if ok1 && ok2 {
				j[name+" output "+oi+" part "+ci+" "+kind] += d
			}
		}
		// openai-go: a missing or null item_id is "" (Go's zero value).
		id, isStr := o["item_id"].(string)
		if isStr || o["item_id"] == nil {
			if ci, ok := goKey(part); ok {
				j["go item "+strconv.Quote(id)+" part "+ci+" "+kind] += d
			}
		}
	}
	return j
}

// rtRun relays events (masking on, or keys only) and returns the output.
func rtRun(t testing.TB, events []string, keys *scrub.Set, masking bool) (string, error) {
	t.Helper()
	var out bytes.Buffer
	m := newMasker(t)
	if !masking {
		m = nil
	}
	r, err := NewScrubbedRelay(&out, nil, strings.NewReader(sseOf(events)), EndpointResponses, m, keys)
	if err != nil {
		t.Fatal(err)
	}
	for r.Step() {
	}
	_, err = r.Result()
	return out.String(), err
}

func rtLeaks(j map[string]string, secrets ...string) []string {
	var bad []string
	for k, v := range j {
		if rtSDKOnly && strings.HasPrefix(k, "go ") {
			continue
		}
		for _, s := range secrets {
			if strings.Contains(v, s) {
				bad = append(bad, fmt.Sprintf("%s joins %q", k, v))
			}
		}
	}
	return bad
}

// rtSDKOnly leaves out openai-go's join by item_id for tests of item-less
// text: such a client reads a missing item_id as "", one field across
// every item-less output, which the relay masks per output_index (a
// documented limitation: docs/rules-and-masking.md).
var rtSDKOnly bool

func rtSDKJoinsOnly(t *testing.T) {
	rtSDKOnly = true
	t.Cleanup(func() { rtSDKOnly = false })
}

// ---- events ------------------------------------------------------------------

// rtDelta is a response.output_text.delta; item "-" has no item_id member,
// oi is the output_index token as written ("" for none).
func rtDelta(kind, item, oi string, text string) string {
	b := `{"type":"response.` + kind + `.delta"`
	if item != "-" {
		b += `,"item_id":` + jsonStr(item)
	}
	if oi != "" {
		b += `,"output_index":` + oi
	}
	idx := "content_index"
	if kind == kindReasoningSum {
		idx = "summary_index"
	}
	return b + `,"` + idx + `":0,"delta":` + jsonStr(text) + `}`
}

func rtTextDone(item, oi string, text string) string {
	b := `{"type":"response.output_text.done"`
	if item != "-" {
		b += `,"item_id":` + jsonStr(item)
	}
	if oi != "" {
		b += `,"output_index":` + oi
	}
	return b + `,"content_index":0,"text":` + jsonStr(text) + `}`
}

func rtItemDone(oi string) string {
	return `{"type":"response.output_item.done","output_index":` + oi + `,"item":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"x"}]}}`
}

// ---- attacks -----------------------------------------------------------------

// A hostile upstream ends an item-less output under one spelling of its
// output_index and streams on under another that clients read as the same
// number (0.0, 1e0, "0", false, -1): only plain integers are read, any
// other spelling ends the stream, so no SDK rejoins the address.
func TestResponsesJoinNonCanonicalOutputIndexAfterEnd(t *testing.T) {
	rtSDKJoinsOnly(t) // Python and Node
	key := fakeKey()
	for _, c := range []struct {
		name      string
		events    []string
		client    string // who rejoins
		mustBlock bool   // the relay must keep the client from rejoining
	}{
		{"0.0 after .done@0", []string{rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("-", "0", "mail ann"), rtDelta("output_text", "-", "0.0", "@example.com, thanks")}, "node+python dict", true},
		{"1e0 after .done@1", []string{rtDelta("output_text", "-", "1", "mail ann"), rtTextDone("-", "1", "mail ann"), rtDelta("output_text", "-", "1e0", "@example.com, thanks")}, "node+python dict", true},
		{"\"0\" (string) after .done@0", []string{rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("-", "0", "mail ann"), rtDelta("output_text", "-", `"0"`, "@example.com, thanks")}, "node", true},
		{"false after .done@0", []string{rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("-", "0", "mail ann"), rtDelta("output_text", "-", `false`, "@example.com, thanks")}, "python (list[False], dict)", true},
		{"0.0 after output_item.done@0", []string{rtDelta("output_text", "-", "0", "mail ann"), rtItemDone("0"), rtDelta("output_text", "-", "0.0", "@example.com, thanks")}, "node+python dict", true},
		{"0.0 after response.completed", []string{rtDelta("output_text", "-", "0", "mail ann"), `{"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}}`, rtDelta("output_text", "-", "0.0", "@example.com, thanks")}, "node+python dict", true},
		{"reverse: end the 0.0 field, go on at 0", []string{rtDelta("output_text", "-", "0.0", "mail ann"), rtTextDone("-", "0.0", "mail ann"), rtDelta("output_text", "-", "0", "@example.com, thanks")}, "node+python dict", false},
		{"2^53+1 then 2^53", []string{rtDelta("output_text", "-", "9007199254740993", "mail ann"), rtTextDone("-", "9007199254740993", "mail ann"), rtDelta("output_text", "-", "9007199254740992", "@example.com, thanks")}, "node", true},
		{"refusal 0.0 after .done@0", []string{rtDelta("refusal", "-", "0", "mail ann"), `{"type":"response.refusal.done","output_index":0,"content_index":0,"refusal":"mail ann"}`, rtDelta("refusal", "-", "0.0", "@example.com, thanks")}, "node+python dict", true},
		{"reasoning summary 0.0 after part done@0", []string{rtDelta(kindReasoningSum, "-", "0", "mail ann"), `{"type":"response.reasoning_summary_part.done","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":"mail ann"}}`, rtDelta(kindReasoningSum, "-", "0.0", "@example.com, thanks")}, "node+python dict", true},
		{"key 0.0 after .done@0", []string{rtDelta("output_text", "-", "0", key[:20]), rtTextDone("-", "0", key[:20]), rtDelta("output_text", "-", "0.0", key[20:]+" thanks")}, "node+python dict", true},
	} {
		out, err := rtRun(t, c.events, nil, true)
		if bad := rtLeaks(sdkJoins(t, out), "ann@example.com", key); len(bad) > 0 {
			t.Errorf("%s (err %v; rejoined by %s, must be kept apart: %v):\n  %s", c.name, err, c.client, c.mustBlock, strings.Join(bad, "\n  "))
		}
	}
}

// Vaulted keys with masking off: the same, through the key scrub.
func TestResponsesJoinNonCanonicalOutputIndexKeyScrub(t *testing.T) {
	rtSDKJoinsOnly(t) // Python and Node
	key := "Zq9xK2mP7vL4wR8tY6uN"
	keys := scrub.New(key)
	out, err := rtRun(t, []string{rtDelta("output_text", "-", "0", "k="+key[:10]), rtTextDone("-", "0", "x"), rtDelta("output_text", "-", "0.0", key[10:]+" thanks")}, keys, false)
	if bad := rtLeaks(sdkJoins(t, out), key); len(bad) > 0 {
		t.Errorf("key rejoined (err %v):\n  %s", err, strings.Join(bad, "\n  "))
	}
}

// ErrSplitOutput cannot be dodged by spelling: "0" and "-0" (or 0.0) are
// one output to the Python and Node SDKs, and the relay refuses the
// second spelling.
func TestResponsesJoinSplitOutputSpellings(t *testing.T) {
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"a@0, .done a, b@-0", []string{rtDelta("output_text", "a", "0", "mail ann"), rtTextDone("a", "0", "mail ann"), rtDelta("output_text", "b", "-0", "@example.com, thanks")}},
		{"a@0, .done a, none@-0", []string{rtDelta("output_text", "a", "0", "mail ann"), rtTextDone("a", "0", "mail ann"), rtDelta("output_text", "-", "-0", "@example.com, thanks")}},
		{"a@0, .done a, b@0.0", []string{rtDelta("output_text", "a", "0", "mail ann"), rtTextDone("a", "0", "mail ann"), rtDelta("output_text", "b", "0.0", "@example.com, thanks")}},
	} {
		out, err := rtRun(t, c.events, nil, true)
		if bad := rtLeaks(sdkJoins(t, out), "ann@example.com"); len(bad) > 0 {
			t.Errorf("%s (err %v):\n  %s", c.name, err, strings.Join(bad, "\n  "))
		}
	}
}

// content_index spelled 1.0 is part 1 to Node and Python: the relay refuses
// it rather than read it as another part.
func TestResponsesJoinNonCanonicalContentIndex(t *testing.T) {
	d := func(ci, text string) string {
		return `{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":` + ci + `,"delta":` + jsonStr(text) + `}`
	}
	events := []string{d("1", "mail ann"), `{"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":1,"text":"mail ann"}`, d("1.0", "@example.com, thanks")}
	out, err := rtRun(t, events, nil, true)
	if bad := rtLeaks(sdkJoins(t, out), "ann@example.com"); len(bad) > 0 {
		t.Errorf("err %v:\n  %s", err, strings.Join(bad, "\n  "))
	}
}

// The fields a stream keeps are bounded (maxFieldsSeen): an upstream that
// names a new output or item in every event does not grow them without
// end.
func TestResponsesJoinFieldsGrowPerOutputIndex(t *testing.T) {
	var b strings.Builder
	const n = 20000
	for i := range n {
		oi := strconv.Itoa(i)
		b.WriteString("data: " + `{"type":"response.output_text.done","output_index":` + oi + `,"content_index":0,"text":"x"}` + "\n\n")
	}
	var out bytes.Buffer
	r, err := NewRelay(&out, nil, strings.NewReader(b.String()), EndpointResponses, newMasker(t))
	if err != nil {
		t.Fatal(err)
	}
	for r.Step() {
	}
	if _, err := r.Result(); !errors.Is(err, ErrTooManyFields) {
		t.Fatalf("%d ends of item-less outputs: %v, want ErrTooManyFields once the ends kept reach the bound", n, err)
	}
	if got := len(r.s.fields); got > maxFieldsSeen {
		t.Errorf("%d .done events without an item_id left %d field entries (one per output_index), more than %d", n, got, maxFieldsSeen)
	}
	// With item ids: each id's delta and .done make a field; past the
	// bound the stream ends.
	b.Reset()
	for i := range n {
		id := "m" + strconv.Itoa(i)
		b.WriteString("data: " + `{"type":"response.output_text.delta","item_id":"` + id + `","content_index":0,"delta":"x"}` + "\n\n")
		b.WriteString("data: " + `{"type":"response.output_text.done","item_id":"` + id + `","content_index":0,"text":"x"}` + "\n\n")
	}
	r, _ = NewRelay(&out, nil, strings.NewReader(b.String()), EndpointResponses, newMasker(t))
	for r.Step() {
	}
	if _, err = r.Result(); !errors.Is(err, ErrTooManyFields) || len(r.s.fields) > maxFieldsSeen {
		t.Errorf("%d items: %v, %d field entries; want ErrTooManyFields and at most %d", n, err, len(r.s.fields), maxFieldsSeen)
	}
}

// The Python SDK's accumulator indexes lists: snapshot.output[i] and
// output.content[j] with i, j as json.loads read them, so -1 is the last
// output (or part) and False is 0; the relay refuses both spellings.
func TestResponsesJoinPythonListIndexing(t *testing.T) {
	added := `{"type":"response.output_item.added","output_index":0,"item":{"type":"message","role":"assistant","content":[]}}`
	part := `{"type":"response.content_part.added","output_index":0,"content_index":0,"part":{"type":"output_text","text":""}}`
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"output -1 after .done@0", []string{added, part, rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("-", "0", "mail ann"), rtDelta("output_text", "-", "-1", "@example.com, thanks")}},
		{"output false after .done@0", []string{added, part, rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("-", "0", "mail ann"), rtDelta("output_text", "-", "false", "@example.com, thanks")}},
		{"content -1 after .done (item m)", []string{added, part, rtDelta("output_text", "m", "0", "mail ann"), rtTextDone("m", "0", "mail ann"), strings.Replace(rtDelta("output_text", "m", "0", "@example.com, thanks"), `"content_index":0`, `"content_index":-1`, 1)}},
	} {
		out, err := rtRun(t, c.events, nil, true)
		got := pySDKJoin(t, out)
		if strings.Contains(got, "ann@example.com") {
			t.Errorf("%s (err %v): the Python SDK's output[0].content[0].text is %q", c.name, err, got)
		}
	}
}

// pySDKJoin is the Python SDK accumulator's output[0].content[0].text:
// outputs appended at output_item.added, parts at content_part.added, a
// delta indexed with Python's list semantics (negative from the end, bool
// as int; a float raises).
func pySDKJoin(t testing.TB, out string) string {
	outputs := [][]string{}
	idx := func(v any, n int) (int, bool) {
		var i int64
		switch x := v.(type) {
		case bool:
			if x {
				i = 1
			}
		case json.Number:
			var err error
			if i, err = strconv.ParseInt(string(x), 10, 64); err != nil {
				return 0, false
			}
		default:
			return 0, false
		}
		if i < 0 {
			i += int64(n)
		}
		return int(i), i >= 0 && i < int64(n)
	}
	for _, o := range rtEvents(t, out) {
		switch o["type"] {
		case "response.output_item.added":
			outputs = append(outputs, nil)
		case "response.content_part.added":
			if i, ok := idx(o["output_index"], len(outputs)); ok {
				outputs[i] = append(outputs[i], "")
			}
		case "response.output_text.delta":
			i, ok := idx(o["output_index"], len(outputs))
			if !ok {
				continue
			}
			j, ok := idx(o["content_index"], len(outputs[i]))
			if !ok {
				continue
			}
			outputs[i][j] += o["delta"].(string)
		}
	}
	if len(outputs) == 0 || len(outputs[0]) == 0 {
		return ""
	}
	return outputs[0][0]
}

// Huge output_index tokens (multi-megabyte integers) are refused, not
// kept: 1024 of them would have pinned 1024 × 4 MiB (the line limit).
func TestResponsesJoinHugeIndexesAreRefused(t *testing.T) {
	const n, size = 64, 256 << 10
	var b strings.Builder
	for i := range n {
		tok := strconv.Itoa(i+1) + strings.Repeat("0", size)
		b.WriteString("data: " + `{"type":"response.output_text.delta","item_id":"m` + strconv.Itoa(i) + `","output_index":` + tok + `,"content_index":0,"delta":"x"}` + "\n\n")
	}
	var out bytes.Buffer
	r, err := NewRelay(&out, nil, strings.NewReader(b.String()), EndpointResponses, newMasker(t))
	if err != nil {
		t.Fatal(err)
	}
	for r.Step() {
	}
	kept := 0
	for k := range r.s.idxItem {
		kept += len(k)
	}
	for _, v := range r.s.outIdx {
		if n, ok := v.(json.Number); ok {
			kept += len(n)
		}
	}
	if kept > 1<<20 {
		t.Errorf("the relay keeps %d MiB of output_index tokens after %d events", kept>>20, n)
	}
}

// Item-less text streamed on the fast and the generic path, under
// spellings of output_index, comes out the same.
func TestResponsesJoinItemlessFastMatchesGeneric(t *testing.T) {
	m := newMasker(t)
	for _, evs := range [][]string{
		{rtDelta("output_text", "-", "0", "mail ann"), rtDelta("output_text", "", "-0", "@example.com"), rtTextDone("-", "0", "x")},
		{rtDelta("output_text", "-", "0", "mail ann"), rtDelta("output_text", "-", "1", "b"), rtItemDone("0"), rtDelta("output_text", "-", "1", "c")},
		{rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("", "-0", "x"), rtDelta("output_text", "-", "0", "@example.com")},
		{rtDelta("output_text", "-", "", "a"), rtDelta("output_text", "-", "0", "mail ann"), `{"type":"response.completed","response":{"output":[]}}`},
	} {
		compareStreamAt(t, EndpointResponses, sseOf(evs), m)
	}
}

// What held: each of these ends the stream or rejoins nothing.
func TestResponsesJoinHeld(t *testing.T) {
	slow := func(e string) string { return strings.Replace(e, `"delta":`, `"x":1,"delta":`, 1) }
	for _, c := range []struct {
		name   string
		events []string
	}{
		{"-0 after .done@0", []string{rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("-", "0", "x"), rtDelta("output_text", "-", "-0", "@example.com, thanks")}},
		{"item_id \"\" vs none", []string{rtDelta("output_text", "", "0", "mail ann"), rtTextDone("-", "0", "x"), rtDelta("output_text", "-", "0", "@example.com, thanks")}},
		{"fast then generic", []string{rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("", "0", "x"), slow(rtDelta("output_text", "-", "0", "@example.com, thanks"))}},
		{"generic then fast", []string{slow(rtDelta("output_text", "-", "0", "mail ann")), rtTextDone("-", "0", "x"), rtDelta("output_text", "-", "0", "@example.com, thanks")}},
		{"item done with an id, text without", []string{rtDelta("output_text", "-", "0", "mail ann"), strings.Replace(rtItemDone("0"), `"item":{`, `"item":{"id":"m",`, 1), rtDelta("output_text", "-", "0", "@example.com, thanks")}},
		{"part done under -0", []string{rtDelta("output_text", "-", "0", "mail ann"), `{"type":"response.content_part.done","output_index":-0,"content_index":0,"part":{"type":"output_text","text":"x"}}`, rtDelta("output_text", "-", "0", "@example.com, thanks")}},
		{"null index after .done@0", []string{rtDelta("output_text", "-", "0", "mail ann"), rtTextDone("-", "0", "x"), rtDelta("output_text", "-", "null", "@example.com, thanks")}},
		{"end of 0.0, more at 0", []string{rtDelta("output_text", "-", "0.0", "mail ann"), rtTextDone("-", "0.0", "x"), rtDelta("output_text", "-", "0", "@example.com, thanks")}},
		{"no end, two spellings interleaved", []string{rtDelta("output_text", "-", "0", "mail ann"), rtDelta("output_text", "-", "0.0", "@example.com, thanks")}},
		{"key with id after completed", []string{rtDelta("output_text", "m", "0", fakeKey()[:20]), `{"type":"response.completed","response":{"output":[]}}`, rtDelta("output_text", "m", "0", fakeKey()[20:])}},
	} {
		out, err := rtRun(t, c.events, nil, true)
		j := sdkJoins(t, out)
		var bad []string
		for k, v := range j {
			if strings.HasPrefix(k, "go ") { // openai-go's item "" join of item-less outputs: see rtSDKOnly
				continue
			}
			if strings.Contains(v, "ann@example.com") || strings.Contains(v, fakeKey()) {
				bad = append(bad, k+": "+v)
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s (err %v): %v", c.name, err, bad)
		}
	}
}

// The released tail of a field with an item_id carries the output_index
// its deltas carried: only a plain integer, never a string the upstream
// wrote there (which the tail would carry unmasked and unscrubbed).
func TestResponsesJoinTailNeverEchoesARawIndex(t *testing.T) {
	key := fakeKey()
	for _, oi := range []string{`"ann@example.com"`, jsonStr(key)} {
		events := []string{
			`{"type":"response.output_text.delta","item_id":"m","output_index":` + oi + `,"content_index":0,"delta":"mail bob"}`,
			`{"type":"response.output_text.done","item_id":"m","content_index":0,"text":"x"}`,
		}
		out, err := rtRun(t, events, nil, true)
		if strings.Contains(out, "ann@example.com") || strings.Contains(out, key) {
			t.Errorf("output_index %s (err %v) came out whole:\n%s", oi, err, out)
		}
		events[0] = strings.Replace(events[0], `"delta":"mail bob"`, `"delta":"k=`+key[:6]+`"`, 1) // a tail the key scrub holds back
		out, err = rtRun(t, events, scrub.New(key), false)
		if strings.Contains(out, key) {
			t.Errorf("keys only, output_index %s (err %v): the key came out whole (the proxy's byte scrub is the only net)", oi, err)
		}
	}
}
