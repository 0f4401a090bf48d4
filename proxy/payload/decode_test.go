package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// decodeObjectStd is what decodeObject must equal: a json.Decoder with
// UseNumber into a map[string]any, then only white space left.
func decodeObjectStd(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var root map[string]any
	if err := d.Decode(&root); err != nil || root == nil {
		return nil, ErrInvalidJSON
	}
	if len(bytes.TrimSpace(b[d.InputOffset():])) > 0 {
		return nil, ErrInvalidJSON
	}
	return root, nil
}

func checkDecodeLikeStd(t *testing.T, in []byte) {
	t.Helper()
	want, werr := decodeObjectStd(in)
	got, gerr := decodeObject(in)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", in, gerr, werr)
	}
	if gerr != nil && !errors.Is(gerr, ErrInvalidJSON) {
		t.Fatalf("%q: error %v, want ErrInvalidJSON", in, gerr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got  %#v\n want %#v", in, got, want)
	}
}

var decodeCases = []string{
	`{}`, ` {} `, "\t\r\n{}\n", `{"a":1}`, `{"a":{}}`, `{"a":[]}`, `{"a":[[],{}]}`,
	`{"a":null,"b":true,"c":false,"d":"","e":0,"f":-0.5e+10,"g":1E-2,"h":12345678901234567890123}`,
	// Duplicates: the last wins whole, nothing merges.
	`{"a":{"x":1},"a":{"y":2}}`, `{"a":1,"A":2,"a":3}`,
	// Escapes, surrogates and invalid UTF-8.
	`{"s":"\"\\\/\b\f\n\r\t"}`, `{"s":"\u0041\u00e9\u20AC"}`, `{"s":"\ud83d\ude00"}`,
	`{"s":"\ud83d"}`, `{"s":"\ude00"}`, `{"s":"\ud83d\u0041"}`, `{"s":"\ud83dx"}`,
	`{"s":"\ude00\ud83d\ude00"}`, `{"s":"\ud83d\ud83d\ude00"}`, `{"s":"\ud83d\\u0041"}`,
	"{\"s\":\"\xff\xfe\"}", "{\"s\":\"a\xc3\"}", "{\"s\":\"\xed\xa0\x80\"}", "{\"\xff\":1}",
	`{"\u0061":1,"a":2}`, `{"k\"ey":"v"}`, "{\"s\":\"\u2028\u2029\"}",
	// Trailing and leading bytes.
	`{}x`, `{} {}`, "{}\u00a0", "{}\u0085", "{}\v\f", "\f{}", "\ufeff{}", `{}]`, ``, ` `,
	// Not objects.
	`null`, `[]`, `"s"`, `1`, `true`, `[{}]`,
	// Syntax errors.
	`{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a" 1}`, `{'a':1}`, `{a:1}`, `{"a":01}`,
	`{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":truex}`,
	`{"a":nul}`, `{"a":NaN}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`, "{\"a\":\"\x01\"}",
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":"\'"}`, `{"a":"open}`, `{"a":1}}`,
	`{"a":[}`, `{"a":{]}`, `{"a":1 "b":2}`,
}

func TestDecodeObjectMatchesEncodingJSON(t *testing.T) {
	for _, in := range decodeCases {
		checkDecodeLikeStd(t, []byte(in))
	}
	// encoding/json's nesting limit: 10000 levels decode, 10001 do not.
	for _, depth := range []int{maxDecodeDepth - 1, maxDecodeDepth, maxDecodeDepth + 1} {
		in := `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		checkDecodeLikeStd(t, []byte(in))
		in = strings.Repeat(`{"a":`, depth) + `1` + strings.Repeat(`}`, depth)
		checkDecodeLikeStd(t, []byte(in))
	}
	if _, err := decodeObject([]byte(strings.Repeat(`{"a":`, maxDecodeDepth+1) + `1` + strings.Repeat(`}`, maxDecodeDepth+1))); err == nil {
		t.Fatal("a tree deeper than encoding/json's limit decoded")
	}
}

// The tree's strings are its own: a caller may reuse the bytes it decoded
// (a lent stream buffer) while the tree lives on.
func TestDecodeObjectOwnsItsStrings(t *testing.T) {
	in := []byte(`{"plain":"hello","key":{"inner":["abc"]}}`)
	root, err := decodeObject(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 'X'
	}
	want := map[string]any{"plain": "hello", "key": map[string]any{"inner": []any{"abc"}}}
	if !reflect.DeepEqual(root, want) {
		t.Fatalf("the tree changed with its input: %#v", root)
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, in := range decodeCases {
		f.Add([]byte(in))
	}
	f.Add([]byte(`{"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"call_1","name":"shell","arguments":"{\"cmd\":\"ls\"}","status":"completed"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkDecodeLikeStd(t, in)
	})
}

func BenchmarkDecodeObject(b *testing.B) {
	in := []byte(`{"type":"response.completed","sequence_number":57,"response":{"id":"resp_1","object":"response","created_at":1741476542,"status":"completed","model":"gpt-4o","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"` +
		strings.Repeat("Paris is the capital of France. ", 20) + `","annotations":[]}]}],"parallel_tool_calls":true,"temperature":1.0,"tool_choice":"auto","tools":[],"top_p":1.0,"usage":{"input_tokens":36,"output_tokens":87,"total_tokens":123,"output_tokens_details":{"reasoning_tokens":0}},"metadata":{}}}`)
	b.Run("decodeObject", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if _, err := decodeObject(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if _, err := decodeObjectStd(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	extra := []string{`[]`, `[1,2]`, `"s"`, `1`, `-0.5e3`, `true`, `null`, ` [ {} ] `, `[`, `]`, `[1,]`, `{"a":[}`, `01`, `"\x01"`,
		"\"\xff\"", `"\ud800"`, "\ufeff1", "1\u00a0", `{"a":1}x`, `1 2`, ``, ` `}
	for _, in := range append(slices.Clone(decodeCases), extra...) {
		if got, want := ValidJSON([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("%q: ValidJSON %v, json.Valid %v", in, got, want)
		}
	}
	for _, depth := range []int{maxDecodeDepth, maxDecodeDepth + 1} {
		in := []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
		if got, want := ValidJSON(in), json.Valid(in); got != want {
			t.Errorf("depth %d: ValidJSON %v, json.Valid %v", depth, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, in := range decodeCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := ValidJSON(in), json.Valid(in); got != want {
			t.Fatalf("%q: ValidJSON %v, json.Valid %v", in, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	in := []byte(`{"id":"resp_1","object":"response","created_at":1741476542,"status":"completed","model":"gpt-4o","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"` +
		strings.Repeat("Paris is the capital of France. ", 40) + `","annotations":[]}]}],"usage":{"input_tokens":36,"output_tokens":87,"total_tokens":123}}`)
	b.Run("ValidJSON", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if !ValidJSON(in) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if !json.Valid(in) {
				b.Fatal("invalid")
			}
		}
	})
}
