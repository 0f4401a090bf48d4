package audit

import (
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/safetext"
)

// What a broken trail holds where pamctl expected its own text (a
// malformed line, a prev_hash that is not hex) is in BreakError.Found raw
// in quotes (Quote), for the view (audit verify, -o json, the
// server log) to escape once: Go's quoting wrote \u escapes a view then
// doubled, so a person read \\u202e where the line held a U+202E.
func TestBreakErrorFoundQuotedOnce(t *testing.T) {
	for _, word := range []string{"x\u202ey", "x\u200by", `a"b`, `a\b`, `\u202e`, "x, y", "x]", "x\ny"} {
		lines := chain(t, 1, GenesisHash, 3)
		lines[1] = []byte(`{"seq":2,"word":"` + word + `"}`)
		_, err := Verify(nil, nil, seqOf(lines), testKeys)
		var be *BreakError
		if !errors.As(err, &be) || be.Kind != BreakMalformed {
			t.Fatalf("%q: %v", word, err)
		}
		back, rest, ok := Unquote(be.Found)
		if !ok || back != string(lines[1]) || rest != "" {
			t.Errorf("%q: found %q reads back %q, %q", word, be.Found, back, rest)
		}
		v := safetext.Escape(be.Error())
		if strings.Count(v, `\\u202e`) != strings.Count(word, `\u202e`) || strings.Count(v, `\u200b`) != strings.Count(word, "\u200b") ||
			strings.Count(v, `\u202e`)-strings.Count(v, `\\u202e`) != strings.Count(word, "\u202e") {
			t.Errorf("%q reads %s", word, v)
		}
	}
	// A prev_hash that is not hex.
	lines := chain(t, 1, GenesisHash, 2)
	l := string(lines[1])
	i := strings.Index(l, `"prev_hash":"`) + len(`"prev_hash":"`)
	lines[1] = []byte(l[:i] + "\u202e" + l[i+3:])
	_, err := Verify(nil, nil, seqOf(lines), testKeys)
	var be *BreakError
	if !errors.As(err, &be) || !strings.HasPrefix(be.Found, "\"\u202e") {
		t.Errorf("a prev_hash with a U+202E is found as %v", err)
	}
}
