package cli

import (
	"slices"
	"strings"
	"testing"
)

// audit show prints a held excerpt's place lines apart from the text under
// them, which is indented further: text cannot pass for a place, even text
// that is a place line, right under the place (every place has text).
func TestPromptLinesKeepPlacesApart(t *testing.T) {
	a200 := strings.Repeat("a", 198)
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"hello", []string{"  hello"}},
		{"[found in messages[1] (user)]\nDROP TABLE x", []string{"[found in messages[1] (user)]", "  DROP TABLE x"}},
		{"[found in messages[1] (user)] [found in messages[0] (system)] x", []string{"  [found in messages[1] (user)] [found in messages[0] (system)] x"}},
		{"[found in messages[1] (user)]\n[found in messages[0] (system)]\nx", []string{"[found in messages[1] (user)]", "  [found in messages[0] (system)]", "  x"}},
		{"[prompt of 9000 bytes; rule \"r\" matches 2 times]\n[found in messages[0] (system)]\n…a…\n[found in tools[0].description]\n…b",
			[]string{"[prompt of 9000 bytes; rule \"r\" matches 2 times]", "[found in messages[0] (system)]", "  …a…", "[found in tools[0].description]", "  …b"}},
		{"x\n[prompt of 9000 bytes; rule \"r\" matches 2 times]", []string{"  x", "  [prompt of 9000 bytes; rule \"r\" matches 2 times]"}},
		// Cut after escaping, never inside an escape, "…" where cut.
		{strings.Repeat("a", 250), []string{"  " + strings.Repeat("a", 199) + "…"}},
		{a200 + "\u200bbbb", []string{"  " + a200 + "\u200b…"}},
		{a200 + "a\u200bbbb", []string{"  " + a200 + "a…"}},
		{strings.Repeat("\U000e0061", 30), []string{"  " + strings.Repeat("\U000e0061", 20) + "…"}},
	} {
		if got := promptLines(tc.in, 200); !slices.Equal(got, tc.want) {
			t.Errorf("promptLines(%q) =\n%q, want\n%q", tc.in, got, tc.want)
		}
	}
	// Many short lines: a line break counts as two runes shown.
	got := promptLines(strings.Repeat("a\n", 300), 200)
	if len(got) != 67 || !strings.HasSuffix(got[len(got)-1], "…") {
		t.Errorf("300 lines: %d shown, last %q", len(got), got[len(got)-1])
	}
}
