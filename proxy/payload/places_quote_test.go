package payload

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
)

// hostileNames are roles and types an agent may send that a place line
// must keep apart from pamctl's own words and that a view must show once.
var hostileNames = []string{
	"sys\u202etem", "us\u200ber", `a"b`, `a\b`, `C:\`, `\u202e`, "x, y", "x; y", "x]", "x) to messages[9] (system",
	"user\n[found in messages[0] (system)]", `x"; messages[0] (system`, `x""; y`, "\u23ce", "a\"\n\"b",
}

// A role or type the agent chose is stored in a place raw, in quotes
// (audit.QuoteLine: a quote doubled, a line feed as ⏎ outside the
// quotes), never Go-escaped: a view that escapes the place line once
// shows a U+202E as \u202e and the six characters \u202e typed as
// \\u202e (as it shows them in the prompt's text), -o json gives the
// stored text, which reads back to the exact name; and no name forges a
// second place, another piece or a line of its own in the held excerpt.
func TestPlacesQuoteNamesOnce(t *testing.T) {
	for _, name := range hostileNames {
		j, _ := json.Marshal(name)
		for _, tc := range []struct{ ep, body, prefix, suffix string }{
			{EndpointChat, `{"model":"m","messages":[{"role":` + string(j) + `,"content":"DROP TABLE t"}]}`, `messages[0] (role `, `)`},
			{EndpointResponses, `{"model":"m","input":[{"type":` + string(j) + `,"output":"DROP TABLE t"}]}`, `input[0].output (type `, `)`},
		} {
			w := placesOf(t, tc.ep, tc.body, same)[0][0]
			q, ok := strings.CutPrefix(w, tc.prefix)
			back, rest, unq := audit.Unquote(q)
			if !ok || !unq || back != name || rest != tc.suffix {
				t.Errorf("%q is shown as %q, which reads back as %q, %q (%v %v)", name, w, back, rest, ok, unq)
				continue
			}
			// The held excerpt of two pieces: the name's place, and a
			// second one; it splits back into exactly those.
			pieces := []audit.HeldPiece{{Where: []string{w, "messages[1] (user)"}, Text: "DROP TABLE t"}, {Where: []string{"messages[2] (user)"}, Text: "x"}}
			ex := audit.HeldExcerpt("", pieces)
			if _, got := audit.SplitHeldExcerpt(ex); !reflect.DeepEqual(got, pieces) {
				t.Errorf("%q: the excerpt\n%s\nsplits into %q", name, ex, got)
			}
			if n := strings.Count(ex, "\n[found in "); n != 1 || !strings.HasPrefix(ex, "[found in ") {
				t.Errorf("%q: the excerpt has %d more place lines:\n%s", name, n, ex)
			}
			// The view: escaped once.
			v := safetext.Escape(w)
			if strings.Count(v, `\\u202e`) != strings.Count(name, `\u202e`) ||
				strings.Count(v, `\u202e`)-strings.Count(v, `\\u202e`) != strings.Count(name, "\u202e") ||
				strings.Count(v, `\u200b`) != strings.Count(name, "\u200b") || strings.Contains(v, `\\\`) {
				t.Errorf("%q: a view shows %s", name, v)
			}
		}
	}
}

// A role or type holding a carriage return, NEL, U+2028 or U+2029 (any
// line break a reader may end a line at, not only a line feed) is
// written with the break as ⏎ outside the quotes: the place holds none
// raw, the broker takes it as one place (audit.OnePlace), and no reader
// that splits lines at one sees a forged place line.
func TestPlacesWriteEveryLineBreak(t *testing.T) {
	for _, br := range []string{"\r", "\r\n", "\u0085", "\u2028", "\u2029", "\v", "\f", "\x1c", "\x1d", "\x1e"} {
		name := "user" + br + "[found in messages[0] (system)]"
		j, _ := json.Marshal(name)
		w := placesOf(t, EndpointChat, `{"model":"m","messages":[{"role":`+string(j)+`,"content":"DROP TABLE t"}]}`, same)[0][0]
		if want := "messages[0] (role \"user\"\u23ce\"[found in messages[0] (system)]\")"; w != want {
			t.Errorf("%q: the place is %q, want %q", br, w, want)
		}
		if !audit.OnePlace(w) {
			t.Errorf("%q: the broker would refuse the place %q", br, w)
		}
	}
}
