package safetext

import (
	"errors"
	"strings"
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

// TestUnsafePinsTheClass pins what Unsafe names, written out here rather
// than derived from it: the escapers and the tests of every output
// (iostreams, the CLI's end-to-end checks) judge "safe" with Unsafe
// itself, so a rune dropped from it would pass them all.
func TestUnsafePinsTheClass(t *testing.T) {
	must := []rune{0x00, 0x07, 0x08, 0x09, 0x0a, 0x0d, 0x1b, 0x1f, 0x7f, 0x80, 0x85, 0x9b, 0x9f,
		0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x2028, 0x2029}
	for _, r := range must {
		if !Unsafe(r) {
			t.Errorf("Unsafe(%U) = false: a terminal acts on it (control, C1, or a bidi/line control)", r)
		}
	}
	for _, r := range []rune{' ', 'a', '~', 0xa0, 0xe9, 0x65e5, 0x200d, 0x2010, 0x2030, 0x206a, 0x1f600} {
		if Unsafe(r) {
			t.Errorf("Unsafe(%U) = true: ordinary text would be escaped", r)
		}
	}
}

func TestBounded(t *testing.T) {
	if got := Bounded("ok\n", 10); got != `ok\n` {
		t.Errorf("Bounded escapes: %q", got)
	}
	got := Bounded(strings.Repeat("é", 10), 5) // 2 bytes a rune: the cut falls inside the third
	if got != "éé… (cut)" {
		t.Errorf("Bounded cuts at a rune boundary: %q", got)
	}
	err := errors.New("a\x1b[2Jb")
	b := BoundedError(err, 100)
	if b.Error() != `a\x1b[2Jb` || !errors.Is(b, err) {
		t.Errorf("BoundedError: %q, Is %v", b.Error(), errors.Is(b, err))
	}
	if plain := errors.New("plain"); BoundedError(plain, 100) != plain {
		t.Error("BoundedError wraps an error that needs nothing")
	}
}

func TestRedact(t *testing.T) {
	got := Redact("auth: Bearer tok3n-abcdef; tok3n-abcdef again; key abc", []string{"tok3n-abcdef", "Bearer tok3n-abcdef", "abc"})
	if got != "auth: [redacted]; [redacted] again; key abc" {
		t.Errorf("Redact: %q (the whole value first, then its words; nothing under MinSecret)", got)
	}
}
