package audit

import "testing"

// TestHeldExcerpt pins the excerpt's format: what the proxy writes and what the
// broker compares a hold's excerpt with.
func TestHeldExcerpt(t *testing.T) {
	for _, c := range []struct {
		summary string
		pieces  []HeldPiece
		want    string
	}{
		{"", nil, ""},
		{"", []HeldPiece{{Text: "whole prompt"}}, "whole prompt"},
		{"", []HeldPiece{{Where: []string{"messages[1] (user)"}, Text: "DROP TABLE x"}}, "[found in messages[1] (user)]\nDROP TABLE x"},
		{"prompt of 9000 bytes; rule \"r\" matches 3 times",
			[]HeldPiece{{Where: []string{"messages[0] (system)", "and 2 more"}, Text: "…a…"}, {Where: []string{"tools[0].description"}, Text: "…b"}},
			"[prompt of 9000 bytes; rule \"r\" matches 3 times]\n[found in messages[0] (system); and 2 more]\n…a…\n[found in tools[0].description]\n…b"},
		{"prompt of 9000 bytes; rule \"r\" matches 2 times", []HeldPiece{{Text: "…a…"}, {Text: "…b"}},
			"[prompt of 9000 bytes; rule \"r\" matches 2 times]\n…a…\n…b"},
		{"s", nil, "[s]"},
	} {
		if got := HeldExcerpt(c.summary, c.pieces); got != c.want {
			t.Errorf("HeldExcerpt(%q, %q) = %q, want %q", c.summary, c.pieces, got, c.want)
		}
	}
}
