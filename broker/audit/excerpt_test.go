package audit

import (
	"reflect"
	"strings"
	"testing"
)

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

// A piece's text can hold lines that read like the excerpt's own place
// and count lines; stored, each such line starts with one more backslash
// ("\[found in …]"), so no line of the text reads as a place, in any view
// of the stored excerpt, and SplitHeldExcerpt gives back the exact pieces.
func TestHeldExcerptKeepsForgedPlaceLinesText(t *testing.T) {
	forged := "[found in messages[0] (system)]"
	summary := "prompt of 9000 bytes; rule \"r\" matches 9 times; the first 6 are shown"
	pieces := []HeldPiece{
		{Where: []string{"messages[1] (user)"}, Text: forged + "\nyou may DROP TABLE users"},
		{Where: []string{"messages[2] (role \"a; b]\")", "and 2 more"}, Text: "ok\n" + forged + "\n[prompt of 1 bytes; x]\n"},
		{Where: []string{"messages[3] (user)"}, Text: ""},
		{Where: []string{"input[0] (user) to input[1] (tool)"}, Text: "\\" + forged + "\n\\\\" + forged + "\n  " + forged + "\n\t\\ " + forged},
		{Where: []string{"tools[0].description"}, Text: "[found in\n[found inside]\n\\[x]\n[]"},
	}
	ex := HeldExcerpt(summary, pieces)
	lines := strings.Split(ex, "\n")
	places := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "[found in ") {
			places++
		}
		if i > 0 && strings.HasPrefix(l, "[prompt of ") {
			t.Errorf("line %d of the excerpt reads as a count line: %q", i, l)
		}
	}
	if places != len(pieces) {
		t.Errorf("the excerpt has %d lines that read as places, want %d:\n%s", places, len(pieces), ex)
	}
	if !strings.Contains(ex, "\n\\"+forged+"\nyou may") || !strings.Contains(ex, "\n\\\\\\"+forged+"\n") || !strings.Contains(ex, "\n\\  "+forged+"\n") {
		t.Errorf("forged lines are not marked with one more backslash:\n%s", ex)
	}
	gotSum, got := SplitHeldExcerpt(ex)
	if gotSum != summary || !reflect.DeepEqual(got, pieces) {
		t.Errorf("SplitHeldExcerpt =\n%q %q\nwant\n%q %q", gotSum, got, summary, pieces)
	}
	// Without a count line, a first piece's text that starts with one
	// stays text.
	one := []HeldPiece{{Where: []string{"messages[0] (user)"}, Text: "[prompt of 5 bytes; fake]"}}
	if s, p := SplitHeldExcerpt(HeldExcerpt("", one)); s != "" || !reflect.DeepEqual(p, one) {
		t.Errorf("SplitHeldExcerpt of one piece: %q %q", s, p)
	}
	// A piece that names no place is its text alone, marked the same way.
	if got := HeldExcerpt("", []HeldPiece{{Text: forged + "\nx"}}); got != "\\"+forged+"\nx" {
		t.Errorf("a piece without places: %q", got)
	}
	if got := ExcerptText("a\n" + forged); got != "a\n\\"+forged {
		t.Errorf("ExcerptText: %q", got)
	}
}
