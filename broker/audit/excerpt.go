package audit

// A held call's excerpt: the proxy writes it from its pieces
// (proxy.HoldRequest.Excerpt) and the broker refuses a hold whose excerpt is
// not its pieces (broker.holdBounds), so the trail, chat and the CLI, which
// show the text, show the words the approval page shows as pieces.

import "strings"

// HeldPiece is one piece of a held prompt an approver is shown: Text, the
// masked prompt around one or more matches of the rule, and Where, the
// places in the call they are in (proxy.HeldMatch, broker.HeldMatch).
type HeldPiece struct {
	Where []string
	Text  string
}

// The excerpt's own lines: the count line, first, and each piece's place
// line. A line of a piece's text that starts with one of these prefixes
// (after any backslashes, spaces and tabs) is stored with one more
// backslash in front (ExcerptText), so no text reads as one of them.
const (
	placePrefix = "[found in "
	countPrefix = "[prompt of "
)

// HeldExcerpt is the excerpt of pieces under their count line summary:
// "[summary]" when there is one, then each piece, one after the other on
// lines of their own, each after the line naming its places,
// "[found in P1; P2]" (a piece that names none is its text alone: a
// proxy that cannot tell where the matches are shows the windows bare).
// Each piece's text is written through ExcerptText: a line of it that
// reads like a place or count line ("[found in messages[0] (system)]")
// starts with one more backslash ("\[found in …]"), so a line that starts
// with "[found in " is always a place line, and SplitHeldExcerpt gives
// the pieces back. (Events written before this was so hold the text as
// it was: docs/audit.md.)
func HeldExcerpt(summary string, pieces []HeldPiece) string {
	var b strings.Builder
	if summary != "" {
		b.WriteString("[" + summary + "]")
	}
	for i, p := range pieces {
		if i > 0 || summary != "" {
			b.WriteByte('\n')
		}
		if len(p.Where) > 0 {
			b.WriteString(placePrefix + strings.Join(p.Where, "; ") + "]\n")
		}
		b.WriteString(ExcerptText(p.Text))
	}
	return b.String()
}

// ExcerptText is text as a held call's excerpt holds it: each line that
// starts, after any backslashes, spaces and tabs, with "[found in " or
// "[prompt of " gets one more backslash in front; every other line is as
// it is. For every excerpt of a held call (HeldExcerpt; the proxy's
// excerpts without places), so that no prompt text reads as a place.
func ExcerptText(s string) string {
	if !strings.Contains(s, placePrefix) && !strings.Contains(s, countPrefix) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if looksOwn(l) {
			lines[i] = `\` + l
		}
	}
	return strings.Join(lines, "\n")
}

// looksOwn reports whether a line of text reads like one of the excerpt's
// own lines once its leading backslashes, spaces and tabs are dropped.
func looksOwn(l string) bool {
	t := strings.TrimLeft(l, "\\ \t")
	return strings.HasPrefix(t, placePrefix) || strings.HasPrefix(t, countPrefix)
}

// SplitHeldExcerpt is HeldExcerpt read back: the count line's summary and
// the pieces, each text as it was before ExcerptText. Exact for an
// excerpt whose pieces all name places (what the broker takes with
// pieces) and whose summary is a count ("prompt of …"); pieces that name
// none are not apart in the text, and come back as one piece.
func SplitHeldExcerpt(ex string) (summary string, pieces []HeldPiece) {
	if ex == "" {
		return "", nil
	}
	lines := strings.Split(ex, "\n")
	if l := lines[0]; strings.HasPrefix(l, countPrefix) && strings.HasSuffix(l, "]") {
		summary, lines = l[1:len(l)-1], lines[1:]
	}
	var text []string
	flush := func() {
		if len(pieces) > 0 {
			pieces[len(pieces)-1].Text = strings.Join(text, "\n")
		}
		text = nil
	}
	for i, l := range lines {
		if strings.HasPrefix(l, placePrefix) && strings.HasSuffix(l, "]") {
			flush()
			pieces = append(pieces, HeldPiece{Where: splitPlaces(l[len(placePrefix) : len(l)-1])})
			continue
		}
		if len(pieces) == 0 && i == 0 {
			pieces = append(pieces, HeldPiece{}) // text without a place
		}
		if strings.HasPrefix(l, `\`) && looksOwn(l) {
			l = l[1:]
		}
		text = append(text, l)
	}
	flush()
	return summary, pieces
}

// OnePlace reports whether w can be a place of a held excerpt's place
// line: one line, with no line break of any kind raw in it (a line feed,
// a carriage return, NEL, U+2028, U+2029, a vertical tab, a form feed,
// U+001C, U+001D or U+001E:
// a view or a program that splits lines at one would read a line the
// proxy did not write), and one place (no "; " outside quotes, so
// SplitHeldExcerpt reads it back as it is). A name the agent chose is in
// a place quoted (QuoteLine, which writes each line break as ⏎), so the
// proxy's places all are.
func OnePlace(w string) bool {
	return w != "" && !strings.ContainsAny(w, lineBreaks) && len(splitPlaces(w)) == 1
}

// splitPlaces splits a place line's places at "; " outside quotes (a role
// or type that is not a plain word is quoted, QuoteLine, and may
// hold "; "; a quote in it is doubled, so each quote toggles). Events
// written before 2026-12-08 quoted names with Go escapes (\" for a
// quote): a name with a quote in one of them may split elsewhere.
func splitPlaces(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case !quoted && strings.HasPrefix(s[i:], "; "):
			out = append(out, s[start:i])
			start = i + 2
			i++
		}
	}
	return append(out, s[start:])
}
