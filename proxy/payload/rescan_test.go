package payload

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/scrub"
)

// rescanAgrees checks that when rescanChunk reads next after first (the
// chunk template), scanChat reads it the same: same acceptance, same
// choices, texts and offsets. It reports whether rescanChunk read it.
func rescanAgrees(t *testing.T, first, next string) bool {
	t.Helper()
	var d chatDoc
	if !scanChat(first, "delta", true, &d) {
		return false
	}
	s := &streamer{tmplData: first}
	s.keepChunk(&d)
	if !s.tpl.ok {
		return false
	}
	var got chatDoc
	if !s.rescanChunk(next, &got) {
		return false
	}
	var want chatDoc
	if !scanChat(next, "delta", true, &want) {
		t.Fatalf("rescanChunk read a chunk scanChat refuses:\nfirst %s\nnext  %s", first, next)
	}
	if !reflect.DeepEqual(got.choices, want.choices) || got.usage != want.usage || got.hasUsage != want.hasUsage ||
		got.hasObf != want.hasObf || got.obf.raw != want.obf.raw || got.obf.off != want.obf.off {
		t.Fatalf("rescanChunk and scanChat differ:\nfirst %s\nnext  %s\nrescan %+v\nscan   %+v", first, next, got, want)
	}
	return true
}

const rescanHead = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[`

func rescanChunkOf(choices string, obf string) string {
	s := rescanHead + choices + `],"usage":null`
	if obf != "" {
		s += `,"obfuscation":` + obf
	}
	return s + "}"
}

func contentChoice(i int, content string) string {
	return `{"index":` + string(rune('0'+i)) + `,"delta":{"content":` + content + `},"logprobs":null,"finish_reason":null}`
}

// The usual deltas are read from the template, and what is not the same
// chunk with other strings is scanned whole.
func TestRescanChunk(t *testing.T) {
	first := rescanChunkOf(contentChoice(0, `"Hello"`), `"abc"`)
	for _, c := range []struct {
		next string
		read bool
	}{
		{rescanChunkOf(contentChoice(0, `" world"`), `"abcdef"`), true},
		{rescanChunkOf(contentChoice(0, `"\u00e9 \"q\" \\ \ud83d\ude00"`), `""`), true},
		{rescanChunkOf(contentChoice(0, `""`), `"x"`), true},
		// Not a string where the template had one.
		{rescanChunkOf(contentChoice(0, `null`), `"abc"`), false},
		{rescanChunkOf(contentChoice(0, `"a"`), `null`), false},
		{rescanChunkOf(contentChoice(0, `"a"`), ""), false},
		// Bad strings: unterminated, a control byte, a bad escape, bad UTF-8.
		{rescanChunkOf(contentChoice(0, `"a`), `"abc"`), false},
		{rescanChunkOf(contentChoice(0, "\"a\x01\""), `"abc"`), false},
		{rescanChunkOf(contentChoice(0, `"a\x"`), `"abc"`), false},
		{rescanChunkOf(contentChoice(0, "\"a\xff\""), `"abc"`), false},
		// Anything else that changed.
		{strings.Replace(rescanChunkOf(contentChoice(0, `"a"`), `"abc"`), `"gpt-4o"`, `"gpt-4"`, 1), false},
		{strings.Replace(rescanChunkOf(contentChoice(0, `"a"`), `"abc"`), `"finish_reason":null`, `"finish_reason":"stop"`, 1), false},
		{rescanChunkOf(contentChoice(0, `"a"`), `"abc"`) + " ", false},
		{rescanChunkOf(contentChoice(0, `"a"`)+","+contentChoice(1, `"b"`), `"abc"`), false},
		{strings.Replace(rescanChunkOf(contentChoice(0, `"a"`), `"abc"`), `"content"`, `"refusal"`, 1), false},
		// A string that spells the next member into the template's.
		{rescanChunkOf(contentChoice(0, `"a"},"x":{"content":"b"`), `"abc"`), false},
	} {
		if got := rescanAgrees(t, first, c.next); got != c.read {
			t.Errorf("rescanChunk read %s: %v, want %v", c.next, got, c.read)
		}
	}
	// Two choices, content and refusal.
	two := rescanChunkOf(contentChoice(0, `"a"`)+`,{"index":1,"delta":{"refusal":"no"},"logprobs":null,"finish_reason":null}`, "")
	next := rescanChunkOf(contentChoice(0, `"bb"`)+`,{"index":1,"delta":{"refusal":"not that"},"logprobs":null,"finish_reason":null}`, "")
	if !rescanAgrees(t, two, next) {
		t.Errorf("two choices: not read from the template")
	}
	// No template from a finishing chunk, a usage chunk or one without text.
	for _, first := range []string{
		strings.Replace(first, `"finish_reason":null`, `"finish_reason":"stop"`, 1),
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`,
		rescanChunkOf(`{"index":0,"delta":{},"logprobs":null,"finish_reason":null}`, ""),
	} {
		var d chatDoc
		if !scanChat(first, "delta", true, &d) {
			t.Fatalf("scanChat refused %s", first)
		}
		s := &streamer{tmplData: first}
		s.keepChunk(&d)
		if s.tpl.ok {
			t.Errorf("a template was kept from %s", first)
		}
	}
}

func FuzzRescanChunk(f *testing.F) {
	f.Add(`"a"`, `"b"`, `"abc"`, `"d"`, "")
	f.Add(`"a\"b"`, `"\u0041"`, `""`, `null`, "")
	f.Add(`"a"`, `"b"`, `"abc"`, `"d"`, rescanChunkOf(contentChoice(0, `"zz"`), `"q"`))
	f.Fuzz(func(t *testing.T, c1, c2, o1, o2, raw string) {
		first := rescanChunkOf(contentChoice(0, c1), o1)
		rescanAgrees(t, first, rescanChunkOf(contentChoice(0, c2), o2))
		rescanAgrees(t, first, raw)
	})
}

// copyChatBoth relays stream with chunk templates on and off and fails
// unless the two give the same bytes, result and error.
func copyChatBoth(t *testing.T, stream string, m *mask.Masker, keys *scrub.Set) {
	t.Helper()
	run := func(on bool) (string, Result, string) {
		old := chunkTemplates
		chunkTemplates = on
		defer func() { chunkTemplates = old }()
		var out bytes.Buffer
		relay, err := NewScrubbedRelay(&out, nil, strings.NewReader(stream), EndpointChat, m, keys)
		if err != nil {
			t.Fatal(err)
		}
		for relay.Step() {
		}
		r, err := relay.Result()
		return out.String(), r, fmt.Sprint(err)
	}
	o1, r1, e1 := run(true)
	o2, r2, e2 := run(false)
	if o1 != o2 || !reflect.DeepEqual(r1, r2) || e1 != e2 {
		t.Fatalf("chunk templates change the relay:\nin:  %q\non:  %q %+v %s\noff: %q %+v %s", stream, o1, r1, e1, o2, r2, e2)
	}
}

// A stream of chunks that differ from the last in their texts, in their
// obfuscation, or in anything else, relays the same with and without
// templates: whole text, split emails and keys, a chunk that changes shape.
func FuzzRescanStream(f *testing.F) {
	f.Add("Hello ann@exa", "mple.net and sk-", uint8(0), uint8(3))
	f.Add("a\"b", "\\u0040", uint8(1), uint8(7))
	f.Add("x", "y", uint8(2), uint8(255))
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		f.Fatal(err)
	}
	keys := scrub.New(fakeKey())
	f.Fuzz(func(t *testing.T, a, b string, shape, seed uint8) {
		if len(a)+len(b) > 1024 {
			return
		}
		head := `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[`
		var sb strings.Builder
		pieces := []string{a, b, a + b, fakeKey()[:10], fakeKey()[10:], " mail ann@", "example.net.", b}
		for i, p := range pieces {
			content := jsonStr(p)
			if seed&(1<<i) != 0 {
				content = `"` + p + `"` // as written, escapes or not
			}
			choice := `{"index":0,"delta":{"content":` + content + `},"logprobs":null,"finish_reason":null}`
			switch (int(shape) + i/3) % 5 { // runs of three alike
			case 1:
				choice += `,{"index":1,"delta":{"refusal":` + jsonStr(p) + `},"logprobs":null,"finish_reason":null}`
			case 2:
				choice = `{"index":0,"delta":{"content":null},"logprobs":null,"finish_reason":null}`
			}
			ev := head + choice + `],"usage":null`
			if (int(shape)+i/2)%3 != 0 {
				ev += `,"obfuscation":` + jsonStr(strings.Repeat("z", i))
			}
			sb.WriteString("data: " + ev + "}\n\n")
		}
		sb.WriteString("data: " + head + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}` + "\n\n")
		sb.WriteString("data: [DONE]\n\n")
		copyChatBoth(t, sb.String(), m, keys)
	})
}
