package payload

import (
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
)

// The item ids and member names an upstream streams that pamctl names in
// an error (the log, the audit event's detail) are kept raw in quotes
// (audit.Quote), for the view to escape once; before, Go's %q wrote
// \u escapes that a view doubled (\\u202e for a U+202E). A quote in one
// cannot end it early.
func TestStreamErrorsQuoteUpstreamWordsOnce(t *testing.T) {
	for _, word := range hostileNames {
		q := quoteItem(word)
		back, rest, ok := audit.Unquote(q)
		if !ok || back != word && rest != "…" || rest != "" && rest != "…" {
			t.Errorf("quoteItem(%q) = %q reads back %q, %q", word, q, back, rest)
		}
		if v := safetext.Escape(q); strings.Count(v, `\\u202e`) != strings.Count(back, `\u202e`) ||
			strings.Count(v, `\u202e`)-strings.Count(v, `\\u202e`) != strings.Count(back, "\u202e") {
			t.Errorf("quoteItem(%q) reads %s in a view", word, v)
		}
	}
	long := quoteItem(strings.Repeat("é", 30))
	if back, rest, ok := audit.Unquote(long); !ok || rest != "…" || back != strings.Repeat("é", 20) {
		t.Errorf("a long id is quoted %q", long)
	}
	for _, k := range []string{"Choices", "Choic\u202ees", `Cho"ices`} {
		err := caseClash(map[string]any{k: 1}, []string{"choices", strings.ToLower(k)}, "a chunk's")
		if err == nil {
			continue
		}
		_, after, _ := strings.Cut(err.Error(), "member ")
		if back, rest, ok := audit.Unquote(after); !ok || back != k || !strings.HasPrefix(rest, " differs from") {
			t.Errorf("%q: %v", k, err)
		}
	}
}
