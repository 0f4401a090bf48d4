package jsonstr

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// marshal is what encoding/json writes for s.
func marshal(t *testing.T, s string, escapeHTML bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func agrees(t *testing.T, s string) {
	t.Helper()
	for _, html := range []bool{false, true} {
		if got, want := Append(nil, s, html), marshal(t, s, html); !bytes.Equal(got, want) {
			t.Fatalf("Append(%q, html %v) = %s, encoding/json %s", s, html, got, want)
		}
	}
}

// Every byte value at every position of a word, among neighbours that make
// the word arithmetic borrow, and the runes encoding/json treats apart.
func TestAppendIsEncodingJSON(t *testing.T) {
	fillers := []byte{'a', 0x00, 0x1f, 0x20, 0x21, 0x23, 0x25, 0x27, 0x3b, 0x3d, 0x3f, 0x5b, 0x5d, 0x7f, 0x80, 0xff}
	for _, fill := range fillers {
		for c := range 256 {
			for pos := range 17 {
				b := bytes.Repeat([]byte{fill}, 17)
				b[pos] = byte(c)
				agrees(t, string(b))
			}
		}
	}
	for _, s := range []string{"", "plain", "\u2028\u2029", "é😀", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a<b>&c", strings.Repeat("x", 100) + "\"", "\xc3"} {
		agrees(t, s)
	}
}

func FuzzAppend(f *testing.F) {
	f.Add("<script>&\u2028\xff\"\\\n")
	f.Fuzz(func(t *testing.T, s string) { agrees(t, s) })
}
