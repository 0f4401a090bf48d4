package safetext

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// readJoin reads Join's output back as docs/cli.md tells a person to: a
// value in double quotes runs to the next lone quote ("" inside is one
// quote); any other runs to the next sep.
func readJoin(t *testing.T, s, sep string) []string {
	t.Helper()
	var out []string
	for {
		var v string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; ; i++ {
				if i >= len(s) {
					t.Fatalf("unterminated quote in %q", s)
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(s[i])
			}
			v, s = b.String(), s[i+1:]
			out = append(out, v)
			if s == "" {
				return out
			}
			if !strings.HasPrefix(s, sep) {
				t.Fatalf("a quoted value is followed by %q, not the separator", s)
			}
			s = s[len(sep):]
			continue
		}
		i := strings.Index(s, sep)
		if i < 0 {
			return append(out, s)
		}
		out, s = append(out, s[:i]), s[i+len(sep):]
	}
}

// TestJoin: a list joined for a person reads back as its values, whatever
// they hold (the separator, a quote, the view's other punctuation), and a
// value with none of it is shown as it is.
func TestJoin(t *testing.T) {
	for _, tc := range []struct {
		vs         []string
		sep, punct string
		want       string
	}{
		{[]string{"ml", "security"}, ", ", "", "ml, security"},
		{[]string{"data science", "ml"}, ", ", "", "data science, ml"},
		{[]string{"a, b", "c"}, ", ", "", `"a, b", c`},
		{[]string{"a,b"}, ", ", "", `"a,b"`},
		{[]string{`say "hi"`}, ", ", "", `"say ""hi"""`},
		{[]string{"", " x", "y "}, ", ", "", `"", " x", "y "`},
		{[]string{"x) via evil"}, ", ", "()", `"x) via evil"`},
		{[]string{"messages[0] (system)", "tools[1].function.description"}, "; ", ":", "messages[0] (system); tools[1].function.description"},
		{[]string{`messages[0] (role "x): DROP")`}, "; ", ":", `"messages[0] (role ""x): DROP"")"`},
		{[]string{"a; b", "c"}, "; ", ":", `"a; b"; c`},
		// a separator of spaces only: a space in a value is one
		{[]string{"a b", "c"}, " ", "", `"a b" c`},
		{nil, ", ", "", ""},
	} {
		if got := Join(tc.vs, tc.sep, tc.punct); got != tc.want {
			t.Errorf("Join(%q, %q, %q) = %q, want %q", tc.vs, tc.sep, tc.punct, got, tc.want)
		}
	}
	// Random values over the punctuation read back exactly, and a view's
	// own punctuation (punct) never appears outside quotes.
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = `ab ,;:()"` + "\u202e\n"
	for range 2000 {
		vs := make([]string, 1+r.IntN(4))
		for i := range vs {
			b := make([]rune, r.IntN(6))
			for j := range b {
				b[j] = []rune(alphabet)[r.IntN(len([]rune(alphabet)))]
			}
			vs[i] = string(b)
		}
		for _, sep := range []string{", ", "; ", ",", " "} {
			got := Join(vs, sep, ":()")
			if back := readJoin(t, got, sep); !slices.Equal(back, vs) {
				t.Fatalf("Join(%q, %q) = %q reads back as %q", vs, sep, got, back)
			}
			var outside strings.Builder
			quoted := false
			for _, c := range got {
				if c == '"' {
					quoted = !quoted
					continue
				}
				if !quoted {
					outside.WriteRune(c)
				}
			}
			if strings.ContainsAny(outside.String(), ":()") {
				t.Fatalf("Join(%q, %q) = %q has punctuation outside quotes", vs, sep, got)
			}
		}
	}
}
