package scrub

import (
	"encoding/json"
	"strings"
	"testing"
)

// validStringContent reports whether t is the content of a JSON string
// (what goes between its quotes).
func validStringContent(t string) bool {
	var s string
	return json.Unmarshal([]byte(`"`+t+`"`), &s) == nil
}

// decoded is t read as JSON string content, or t when it is not one.
func decoded(t string) string {
	var s string
	if json.Unmarshal([]byte(`"`+t+`"`), &s) != nil {
		return t
	}
	return s
}

// A match never starts on the second byte of an escape pair: after any
// run of backslashes, whatever spelling of the key follows, text that was
// valid JSON string content stays so (no "\[redacted]"), the key is in
// neither its first nor its second decoding, and a stream gives what the
// whole text gives, for every split.
func TestMatchNeverSplitsAnEscapePair(t *testing.T) {
	s := New(key)
	spellings := map[string]string{
		"literal":       key,
		"first level":   `\u0073` + key[1:],
		"second level":  `\\u0073` + key[1:],
		"second, u005c": `\u005cu0073` + key[1:],
		"all escaped":   jsonEscape(key, false),
		"slash escaped": strings.ReplaceAll(key, "/", `\/`),
		"slash, second": strings.ReplaceAll(key, "/", `\\/`),
	}
	for name, sp := range spellings {
		for n := 0; n <= 9; n++ {
			text := "a" + strings.Repeat(`\`, n) + sp + " b"
			got := s.String(text)
			if validStringContent(text) && !validStringContent(got) {
				t.Errorf("%s after %d backslashes: %q became %q, not valid JSON string content", name, n, text, got)
			}
			once := decoded(got)
			if strings.Contains(once, key) || strings.Contains(decoded(once), key) {
				t.Errorf("%s after %d backslashes: %q became %q, which still decodes to the key", name, n, text, got)
			}
			for _, split := range []int{1, 2, 3, 5, 7, 64} {
				if st := streamAll(s, text, split); st != got {
					t.Errorf("%s after %d backslashes, split %d: stream %q, whole %q", name, n, split, st, got)
				}
				if st := streamAllLent(s, text, split); st != got {
					t.Errorf("%s after %d backslashes, split %d, lent: stream %q, whole %q", name, n, split, st, got)
				}
			}
		}
	}
}
