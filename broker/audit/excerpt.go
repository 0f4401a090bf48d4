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

// HeldExcerpt is the excerpt of pieces under their count line summary:
// "[summary]" when there is one, then each piece, one after the other on
// lines of their own, each after the line naming its places,
// "[found in P1; P2]" (a piece that names none is its text alone: a
// proxy that cannot tell where the matches are shows the windows bare).
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
			b.WriteString("[found in " + strings.Join(p.Where, "; ") + "]\n")
		}
		b.WriteString(p.Text)
	}
	return b.String()
}
