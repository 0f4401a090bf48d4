package safetext

import (
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want, lines string }{
		{"plain text, üñíçødé, 日本語, emoji 🙂 and a \\ backslash", "", ""},
		{"red \x1b[31malert\x1b[0m", `red \x1b[31malert\x1b[0m`, ""},
		{"ok\rFAKE", `ok\rFAKE`, ""},
		{"abc\b\b\bxyz", `abc\b\b\bxyz`, ""},
		{"one\ntwo\tthree", `one\ntwo\tthree`, "one\ntwo\\tthree"},
		{"bell\a nul\x00 del\x7f", `bell\x07 nul\x00 del\x7f`, ""},
		{"c1 \u009b31m csi", `c1 \u009b31m csi`, ""},
		{"file\u202egpj.exe", `file\u202egpj.exe`, ""},
		{"\u2066isolate\u2069 \u200emark\u200f \u061c", `\u2066isolate\u2069 \u200emark\u200f \u061c`, ""},
		{"line\u2028sep\u2029", `line\u2028sep\u2029`, ""},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`, ""},
		{"real \ufffd replacement", "", ""},
	} {
		want := tc.want
		if want == "" {
			want = tc.in
		}
		got := Escape(tc.in)
		if got != want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, want)
		}
		if Escape(got) != got {
			t.Errorf("Escape is not idempotent on %q", got)
		}
		for _, r := range got {
			if Unsafe(r) {
				t.Errorf("Escape(%q) left %U", tc.in, r)
			}
		}
		if !utf8.ValidString(got) {
			t.Errorf("Escape(%q) is not UTF-8", tc.in)
		}
		if tc.lines != "" {
			if got := EscapeLines(tc.in); got != tc.lines {
				t.Errorf("EscapeLines(%q) = %q, want %q", tc.in, got, tc.lines)
			}
		}
	}
}
