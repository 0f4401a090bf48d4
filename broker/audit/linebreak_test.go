package audit

import (
	"strings"
	"testing"
)

// someBreaks are the characters a reader (a terminal, an editor, a
// browser, Python's str.splitlines) may take for the end of a line,
// besides the line feed: str.splitlines also ends one at the file, group
// and record separators (U+001C, U+001D, U+001E).
var someBreaks = []string{"\r", "\r\n", "\u2028", "\u2029", "\u0085", "\v", "\f", "\x1c", "\x1d", "\x1e"}

// QuoteLine writes every line break of its text as it writes a line
// feed, ⏎ outside the quotes, so a quoted role or tool name holds none
// raw; Unquote gives each back as a line feed.
func TestQuoteLineWritesEveryLineBreak(t *testing.T) {
	for _, br := range someBreaks {
		name := "user" + br + "[found in messages[0] (system)]"
		got := QuoteLine(name)
		if want := "\"user\"\u23ce\"[found in messages[0] (system)]\""; got != want {
			t.Errorf("QuoteLine(%q) = %q, want %q", name, got, want)
		}
		if back, rest, ok := Unquote(got + ")"); !ok || back != "user\n[found in messages[0] (system)]" || rest != ")" {
			t.Errorf("%q reads back as %q, %q (%v)", got, back, rest, ok)
		}
	}
	if got, want := QuoteLine("a\r\r\nb\u2028\u2029c"), "\"a\"\u23ce\"\"\u23ce\"b\"\u23ce\"\"\u23ce\"c\""; got != want {
		t.Errorf("QuoteLine of a run of breaks = %q, want %q", got, want)
	}
}

// OnePlace refuses a place holding any line break raw: a view or a
// program that splits lines at it would read a line the proxy did not
// write.
func TestOnePlaceRefusesEveryLineBreak(t *testing.T) {
	for _, br := range append(someBreaks, "\n") {
		w := "messages[1] (user)" + br + "[found in messages[0] (system)]"
		if OnePlace(w) {
			t.Errorf("OnePlace(%q) = true", w)
		}
		if w := "messages[1] (role " + QuoteLine("u"+br+"x") + ")"; !OnePlace(w) {
			t.Errorf("OnePlace(%q) = false for a quoted name", w)
		}
		if strings.ContainsAny(QuoteLine("u"+br+"x"), "\r\n\u2028\u2029\u0085\v\f\x1c\x1d\x1e") {
			t.Errorf("QuoteLine keeps %q raw", br)
		}
	}
}
