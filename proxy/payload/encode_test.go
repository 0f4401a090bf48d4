package payload

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// stdEncode is what encode stands in for.
func stdEncode(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func checkEncodeLikeStd(t *testing.T, v any) {
	t.Helper()
	want, werr := stdEncode(v)
	got, err := encode(v)
	if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("encode(%#v) = %s, %v; encoding/json: %s, %v", v, got, err, want, werr)
	}
}

func TestEncodeLikeEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi <b>&amp;</b> \u2028\u2029 \b\f\n\r\t\u0001 \"q\" \\ é 😀"}],"stream":true,"n":1,"t":0.5e-3,"x":null,"z":-0,"big":123456789012345678901234567890}`,
		`{"b":1,"a":{"d":[1,[2,[3,{"e":false}]]],"c":{}},"":[],"A":"upper before lower"}`,
		`{"deep":` + strings.Repeat(`[{"k":`, 200) + `1` + strings.Repeat(`}]`, 200) + `}`,
	} {
		root, err := decodeObject([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		checkEncodeLikeStd(t, root)
	}
	// What code puts in a decoded tree, and what a decoder cannot make.
	for _, v := range []any{
		map[string]any{"include_usage": true, "n": 3, "f": 1.5, "s": []string{"a"}, "m": map[string]int{"b": 2}},
		map[string]any{"bad": "\xff\xfe invalid UTF-8"},
		json.Number("1e5"), json.Number("-0.0E+1"),
		json.Number(""), json.Number("01"), json.Number("1."), json.Number("+1"), json.Number("1e"), json.Number("NaN"),
		map[string]any{"ch": make(chan int)},
		[]any{1, "x", nil, json.RawMessage(`{"raw":true}`)},
	} {
		checkEncodeLikeStd(t, v)
	}
}

func FuzzEncodeLikeEncodingJSON(f *testing.F) {
	f.Add(`{"a":[1,"b",{"c":null}],"d":true}`)
	f.Add(`{"s":"\u00e9\ud83d\ude00<>&\u2028","n":-1.5e10}`)
	f.Fuzz(func(t *testing.T, in string) {
		root, err := decodeObject([]byte(in))
		if err != nil {
			return
		}
		checkEncodeLikeStd(t, root)
	})
}

func BenchmarkEncode(b *testing.B) {
	root, err := decodeObject([]byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"` + strings.Repeat("You are helpful. ", 30) + `"},{"role":"user","content":"` + strings.Repeat("My mail is [EMAIL_1], ", 20) + `"}],"stream_options":{"include_usage":true}}`))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := encode(root); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := stdEncode(root); err != nil {
				b.Fatal(err)
			}
		}
	})
}
