package devupstream

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		text string
		n    int
		want int
	}{
		{"", 8, 0},
		{"abc", 8, 3},
		{"abcdefghij", 3, 3},
		{strings.Repeat("x", 1000), 50, 50},
		{"ünïcødé ✓ 日本語", 5, 5},
		{"日本", 1, 1},
	} {
		parts := split(c.text, c.n)
		if len(parts) != c.want {
			t.Errorf("split(%q, %d): %d parts, want %d", c.text, c.n, len(parts), c.want)
		}
		if got := strings.Join(parts, ""); got != c.text {
			t.Errorf("split(%q, %d) joins to %q", c.text, c.n, got)
		}
		lo, hi := len(c.text), 0
		for _, p := range parts {
			if p == "" || !utf8.ValidString(p) {
				t.Errorf("split(%q, %d): bad part %q", c.text, c.n, p)
			}
			lo, hi = min(lo, utf8.RuneCountInString(p)), max(hi, utf8.RuneCountInString(p))
		}
		if len(parts) > 0 && hi-lo > 1 {
			t.Errorf("split(%q, %d): part sizes range %d..%d runes, want nearly equal", c.text, c.n, lo, hi)
		}
	}
}

func TestCountTokens(t *testing.T) {
	for s, want := range map[string]int64{"": 0, "a": 1, "abcd": 1, "abcde": 2, strings.Repeat("a", 400): 100} {
		if got := countTokens(s); got != want {
			t.Errorf("countTokens(%d bytes) = %d, want %d", len(s), got, want)
		}
	}
}
