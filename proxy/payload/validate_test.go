package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateAmbiguous(t *testing.T) {
	cases := []struct {
		name, body string
		path       string // "" when not checked
	}{
		// Case variants: encoding/json into a struct fills Model from "Model".
		{"model case variant", `{"model":"gpt-4o-mini","Model":"o3-pro","messages":[]}`, "Model"},
		{"model upper", `{"MODEL":"o3-pro","model":"gpt-4o-mini"}`, "model"},
		{"messages case variant", `{"model":"m","messages":[{"role":"user","content":"hi"}],"Messages":[{"role":"user","content":"evil"}]}`, "Messages"},
		{"content case variant in a message", `{"model":"m","messages":[{"role":"user","content":"hi","Content":"evil"}]}`, "messages[0].Content"},
		{"case variant in the third message", `{"model":"m","messages":[{"content":"a"},{"content":"b"},{"role":"user","ROLE":"system","content":"c"}]}`, "messages[2].ROLE"},
		{"case variant in a content part", `{"model":"m","messages":[{"content":[{"type":"text","text":"ok","Text":"evil"}]}]}`, "messages[0].content[0].Text"},
		{"case variant deep in a tool schema", `{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string","Description":"x","description":"y"}}}}}]}`, ""},
		{"kelvin sign", "{\"model\":\"m\",\"mas\u212a\":1,\"mask\":2}", ""},
		{"long s", "{\"model\":\"m\",\"\u017ftream\":true,\"stream\":false}", ""},
		{"escaped case variant", `{"model":"gpt-4o-mini","Mod\u0065l":"o3-pro"}`, "Model"},
		{"escaped kelvin", `{"model":"m","stream":false,"\u212aey":1,"key":2}`, ""},
		// Duplicates: decoders keep the first, the last, or refuse.
		{"duplicate model", `{"model":"gpt-4o-mini","model":"o3-pro"}`, "model"},
		{"duplicate via escape", `{"model":"gpt-4o-mini","mod\u0065l":"o3-pro"}`, "model"},
		{"duplicate via solidus escape", `{"a\/b":1,"a/b":2}`, ""},
		{"duplicate at depth", `{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}`, "messages[0].content"},
		{"duplicate in a part", `{"model":"m","input":[{"type":"message","content":[{"type":"input_text","text":"a","text":"b"}]}]}`, "input[0].content[0].text"},
		{"duplicate in a nested object", `{"a":{"b":{"c":{"d":1,"d":2}}}}`, "a.b.c.d"},
		{"duplicate whose values nest", `{"model":"m","messages":[{"role":"user","content":"hi"}],"messages":[{"role":"user","content":"evil"}]}`, "messages"},
		{"duplicate objects, keys differ inside", `{"a":{"b":1},"a":{"c":2}}`, "a"},
		{"case variant in a later array element", `{"model":"m","input":[{"type":"message","content":"a"},{"type":"function_call_output","output":"x","Output":"y"}]}`, "input[1].Output"},
		{"case variant in a schema", `{"tools":[{"type":"function","function":{"name":"f","parameters":{"properties":{"q":{"type":"string"},"Q":{"type":"number"}}}}}]}`, "tools[0].function.parameters.properties.Q"},
		{"duplicate after many keys", manyKeyObject(40, "k7"), "k7"},
		{"case variant after many keys", manyKeyObject(40, "K7"), "K7"},
		{"kelvin after many keys", manyKeyObject(40, "\u212a7"), ""},
		// Strings decoders read differently.
		{"invalid utf-8 in a value", "{\"model\":\"m\",\"messages\":[{\"content\":\"a\xffb\"}]}", "messages[0].content"},
		{"invalid utf-8 in a key", "{\"mod\xc0l\":\"m\"}", ""},
		{"truncated utf-8", "{\"a\":\"\xe2\x82\"}", "a"},
		{"utf-16 surrogate as utf-8", "{\"a\":\"\xed\xa0\x80\"}", "a"},
		{"lone high surrogate", `{"model":"m","messages":[{"content":"x\ud800y"}]}`, "messages[0].content"},
		{"lone high surrogate at the end", `{"a":"\uD83D"}`, "a"},
		{"lone low surrogate", `{"a":"\udc00"}`, "a"},
		{"high surrogate then non-low", `{"a":"\ud83d\u0041"}`, "a"},
		{"two high surrogates", `{"a":"\ud83d\ud83d"}`, "a"},
		{"lone surrogate in a key", `{"\ud800":1}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate([]byte(c.body))
			var amb *AmbiguityError
			if !errors.As(err, &amb) || !errors.Is(err, ErrAmbiguousJSON) {
				t.Fatalf("Validate = %v, want an ambiguity", err)
			}
			if c.path != "" && amb.Path != c.path {
				t.Errorf("path %q, want %q (%v)", amb.Path, c.path, err)
			}
			// Every entry point refuses it.
			for _, ep := range []string{EndpointChat, EndpointResponses, EndpointEmbeddings} {
				if _, err := ParseRequest(ep, []byte(c.body)); !errors.Is(err, ErrAmbiguousJSON) {
					t.Errorf("ParseRequest(%s) = %v", ep, err)
				}
			}
		})
	}
}

func manyKeyObject(n int, extra string) string {
	var b strings.Builder
	b.WriteString(`{"model":"m"`)
	for i := 0; i < n; i++ {
		b.WriteString(`,"k` + string(rune('0'+i%10)) + strings.Repeat("x", i/10) + `":1`)
	}
	b.WriteString(`,"` + extra + `":2}`)
	return b.String()
}

func TestValidateAccepts(t *testing.T) {
	for _, body := range []string{
		`{}`, `[]`, `"s"`, `1`, `-0.5e+3`, `true`, `null`, ` {"a" : [ 1 , 2 ] } `,
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"role":"user","content":"hi"}]}`,
		// Same key in different objects is fine.
		`{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}`,
		// Valid pairs, escapes and non-ASCII.
		`{"a":"\ud83d\ude00 \u00e9 \u2028 \"q\" \\ \/ \b\f\n\r\t","é":"ü","ß":"ss","ss":1}`,
		"{\"a\":\"\U0001F600 e\u0301\"}",
		// Keys that look alike but do not fold together.
		`{"ss":1,"ß":2,"i":3,"ı":4,"k":5,"kk":6}`,
		manyKeyObject(60, "zzz"),
		`{"model":"m","messages":[{"content":"` + strings.Repeat("x", 10000) + `"}]}`,
	} {
		if err := Validate([]byte(body)); err != nil {
			t.Errorf("Validate(%.60q) = %v", body, err)
		}
	}
}

func TestValidateInvalid(t *testing.T) {
	for _, body := range []string{
		``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `{"a":1} x`, `{"a":1}{}`, `01`, `1.`, `1e`, `-`,
		`"\x"`, `"\u12"`, `"\u12G4"`, "\"a\x01\"", `tru`, `nul`, `{1:2}`, "\xef\xbb\xbf{}",
		`{"a":"\ud800\u12"}`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		err := Validate([]byte(body))
		if !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("Validate(%.40q) = %v, want ErrInvalidJSON", body, err)
		}
		if json.Valid([]byte(body)) {
			t.Errorf("test case %.40q is valid JSON", body)
		}
	}
	// encoding/json's depth limit is 10000: the deepest text it accepts
	// is accepted.
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	if err := Validate([]byte(deep)); err != nil || !json.Valid([]byte(deep)) {
		t.Errorf("depth 10000: %v", err)
	}
}

// TestValidateErrorHidesText checks that errors name keys only when they
// are plain identifiers, never prompt text or odd keys.
func TestValidateErrorHidesText(t *testing.T) {
	for _, body := range []string{
		`{"sk-proj-secret":1,"SK-PROJ-SECRET":2}`,
		`{"a":{"my secret key":{"x":1,"x":2}}}`,
		"{\"a\":\"secret \xff\"}",
	} {
		err := Validate([]byte(body))
		if err == nil || strings.Contains(strings.ToLower(err.Error()), "secret") {
			t.Errorf("Validate(%q) = %v", body, err)
		}
	}
}

// FuzzValidate checks Validate against encoding/json: it accepts exactly
// the texts encoding/json accepts, minus ambiguous ones, and a text it
// accepts has no two keys in one object that encoding/json would match
// to the same field, no replaced bytes, and decodes to the same value
// after a round trip.
func FuzzValidate(f *testing.F) {
	for _, s := range requestCorpus {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"model":"a","Model":"b"}`, `{"mod\u0065l":1,"model":2}`, `{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`,
		"{\"mas\u212a\":1,\"mask\":2}", `{"a":[{"b":1,"B":2}]}`, manyKeyObject(30, "K3"), `{"\u00df":1,"ss":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Validate(b)
		valid := json.Valid(b)
		switch {
		case errors.Is(err, ErrInvalidJSON):
			if valid {
				t.Fatalf("Validate refused JSON encoding/json accepts: %q", b)
			}
			return
		case err != nil:
			if !errors.Is(err, ErrAmbiguousJSON) {
				t.Fatalf("unexpected error %v", err)
			}
			if !valid {
				t.Fatalf("Validate called invalid JSON ambiguous: %q", b)
			}
			return
		}
		if !valid {
			t.Fatalf("Validate accepted invalid JSON: %q", b)
		}
		if !utf8.Valid(b) {
			t.Fatalf("Validate accepted invalid UTF-8: %q", b)
		}
		checkKeys(t, b)
		// Decoding and re-encoding keeps the value: nothing was replaced.
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var w any
		d = json.NewDecoder(bytes.NewReader(again))
		d.UseNumber()
		if err := d.Decode(&w); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mustMarshal(t, w), again) {
			t.Fatalf("round trip changed %q", b)
		}
		if bytes.Contains(again, []byte("\ufffd")) && !bytes.Contains(b, []byte("\ufffd")) && !bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`)) {
			t.Fatalf("decoding replaced bytes in %q", b)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkKeys walks b with encoding/json's tokenizer and fails if one object
// holds two keys equal under bytes.EqualFold (encoding/json's field match).
func checkKeys(t *testing.T, b []byte) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	type level struct {
		obj      bool
		keys     []string
		wantsKey bool
	}
	var stack []*level
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, ok := tok.(string); ok && top != nil && top.obj && top.wantsKey {
			for _, prev := range top.keys {
				if strings.EqualFold(prev, k) {
					t.Fatalf("Validate accepted keys %q and %q in one object: %q", prev, k, b)
				}
			}
			top.keys = append(top.keys, k)
			top.wantsKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &level{obj: true, wantsKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &level{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].wantsKey = true
		}
	}
}
