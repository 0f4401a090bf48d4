package safetext

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// unicodePunct: a non-ASCII space, punctuation or symbol.
func unicodePunct(r rune) bool {
	return r > 0x7f && unicode.In(r, unicode.Z, unicode.P, unicode.S)
}

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
				// a run of two or more single-quote look-alikes is
				// written doubled (each twice), a lone one as it is
				if r, _ := utf8.DecodeRuneInString(s[i:]); halfQuote(r) {
					var run []rune
					j := i
					for j < len(s) {
						q, n := utf8.DecodeRuneInString(s[j:])
						if !halfQuote(q) {
							break
						}
						run, j = append(run, q), j+n
					}
					if len(run) == 1 {
						b.WriteRune(run[0])
						i = j - 1
						continue
					}
					if len(run)%2 != 0 || len(run) < 4 {
						t.Fatalf("a run of %d single-quote look-alikes inside the quotes of %q", len(run), s)
					}
					for k := 0; k < len(run); k += 2 {
						if run[k] != run[k+1] {
							t.Fatalf("an undoubled run of single-quote look-alikes inside the quotes of %q", s)
						}
						b.WriteRune(run[k])
					}
					i = j - 1
					continue
				}
				// a look-alike of a quote inside quotes is always doubled
				if r, n := utf8.DecodeRuneInString(s[i:]); QuoteLike(r) {
					if !strings.HasPrefix(s[i+n:], string(r)) {
						t.Fatalf("a lone look-alike of a quote (%U) inside the quotes of %q", r, s)
					}
					b.WriteRune(r)
					i += 2*n - 1
					continue
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
		// Unicode spaces and look-alikes of the punctuation pass for it
		// when shown as they are (Escape shows printable Unicode): a value
		// holding a non-ASCII space, punctuation or symbol is quoted.
		{[]string{"gpt-4o\u00a0rule:harmless"}, " ", "()", "\"gpt-4o\u00a0rule:harmless\""},
		{[]string{"gpt-4o\u2003rule:x", "y"}, " ", "()", "\"gpt-4o\u2003rule:x\" y"},
		{[]string{"a\u3000b"}, " ", "", "\"a\u3000b\""},
		{[]string{"\u00a0x"}, ", ", "", "\"\u00a0x\""},
		{[]string{"a\u037e b", "c"}, "; ", ":", "\"a\u037e b\"; c"},          // Greek question mark: ;
		{[]string{"a\uff1b b", "c"}, "; ", ":", "\"a\uff1b b\"; c"},          // fullwidth semicolon
		{[]string{"a\u201a b", "c"}, ", ", "", "\"a\u201a b\", c"},           // single low-9 quote: ,
		{[]string{"a\ufe50 b"}, ", ", "", "\"a\ufe50 b\""},                   // small comma
		{[]string{"gpt \u2022 x"}, " · ", "", "\"gpt \u2022 x\""},            // bullet: ·
		{[]string{"gpt\u2219x"}, " · ", "", "\"gpt\u2219x\""},                // bullet operator
		{[]string{"x\uff09 via\uff08"}, ", ", "()", "\"x\uff09 via\uff08\""}, // fullwidth parens
		{[]string{"a\uff1ab"}, "; ", ":", "\"a\uff1ab\""},                    // fullwidth colon
		// a letter or number whose compatibility form (NFKC) holds the
		// punctuation or a space: U+2474 is "(1)", U+FDFA a phrase
		{[]string{"x\u2474"}, ", ", "()", "\"x\u2474\""},
		{[]string{"\ufdfa", "b"}, " ", "", "\"\ufdfa\" b"},
		// letters drawn as the punctuation: modifier letter colon and
		// double prime, Lisu tone letters (comma, colon), click letter
		{[]string{"a\u02d0b"}, "; ", ":", "\"a\u02d0b\""},
		{[]string{"a\u02bab"}, ", ", "", "\"a\u02ba\u02bab\""}, // and, a quote's look-alike, doubled
		{[]string{"a\ua4f9 b", "c"}, ", ", "", "\"a\ua4f9 b\", c"},
		{[]string{"a\ua4fdb"}, "; ", ":", "\"a\ua4fdb\""},
		{[]string{"a\u01c3"}, ", ", "", "\"a\u01c3\""},
		{[]string{"gpt\u1427x", "gpt\u318dx"}, " · ", "", "\"gpt\u1427x\" · \"gpt\u318dx\""},
		// other scripts' letters and marks are shown as they are
		{[]string{"café", "Ωmega", "日本語", "データ", "e\u0301"}, ", ", "()", "café, Ωmega, 日本語, データ, e\u0301"},
		{[]string{"x\u2474"}, ", ", "", "x\u2474"}, // "(1)" only matters where parentheses are punctuation
		// a look-alike of a quote inside the quotes is doubled, as a quote
		// is: alone, it would read as the end of the value
		{[]string{"alice\u201d (admin)"}, ", ", "()", "\"alice\u201d\u201d (admin)\""},
		{[]string{"\u201cx\u201d, y"}, ", ", "", "\"\u201c\u201cx\u201d\u201d, y\""},
		{[]string{"a\uff02b", "c"}, ", ", "", "\"a\uff02\uff02b\", c"},
		{[]string{"a\u2033 b"}, " ", "", "\"a\u2033\u2033 b\""},
		{[]string{"a\u02bab"}, "; ", ":", "\"a\u02ba\u02bab\""},
		{[]string{"a\u201e\u201f\u2036\u02ee\u05f4\u3003\u301d\u301e\u301f\u275d\u275e\u2e42\U0001f676"}, ", ", "",
			"\"a\u201e\u201e\u201f\u201f\u2036\u2036\u02ee\u02ee\u05f4\u05f4\u3003\u3003\u301d\u301d\u301e\u301e\u301f\u301f\u275d\u275d\u275e\u275e\u2e42\u2e42\U0001f676\U0001f676\""},
		{[]string{"it\u2019s"}, ", ", "", "\"it\u2019s\""}, // a single quote mark is not a double quote's look-alike
		// combining double marks read as a quote over the character
		// before them (over a space, or the opening quote itself):
		// doubled too
		{[]string{"a\u030e, b"}, ", ", "", "\"a\u030e\u030e, b\""},
		{[]string{" \u030e (admin)"}, ", ", "()", "\" \u030e\u030e (admin)\""},
		{[]string{"a\u030b\u030f\u0348\u059e\u1cda\u1cdb, b"}, ", ", "",
			"\"a\u030b\u030b\u030f\u030f\u0348\u0348\u059e\u059e\u1cda\u1cda\u1cdb\u1cdb, b\""},
		// two single-quote look-alikes side by side read as a double
		// quote: a run of two or more is doubled, a lone one is not
		{[]string{"alice\ua78c\ua78c (admin)"}, ", ", "()", "\"alice\ua78c\ua78c\ua78c\ua78c (admin)\""},
		{[]string{"alice\ua78c (admin)"}, ", ", "()", "\"alice\ua78c (admin)\""},
		{[]string{"x\ua78b\ua78c\u2019, y"}, ", ", "", "\"x\ua78b\ua78b\ua78c\ua78c\u2019\u2019, y\""},
		{[]string{"it\u2019\u2019s, \u2032\u2032"}, ", ", "", "\"it\u2019\u2019\u2019\u2019s, \u2032\u2032\u2032\u2032\""},
		{[]string{"\u02b9\u02b9 \u02bc\u02bc \u2018\u2018 \u201a\u201a \u201b\u201b \u2035\u2035"}, ", ", "",
			"\"\u02b9\u02b9\u02b9\u02b9 \u02bc\u02bc\u02bc\u02bc \u2018\u2018\u2018\u2018 \u201a\u201a\u201a\u201a \u201b\u201b\u201b\u201b \u2035\u2035\u2035\u2035\""},
	} {
		if got := Join(tc.vs, tc.sep, tc.punct); got != tc.want {
			t.Errorf("Join(%q, %q, %q) = %q, want %q", tc.vs, tc.sep, tc.punct, got, tc.want)
		}
	}
	// Random values over the punctuation read back exactly, and a view's
	// own punctuation (punct) never appears outside quotes.
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = `ab ,;:()"` + "\u202e\n\u00a0\u037e\uff1b\u201a\u2022\uff08\u2474\ufdfaé\u201c\u201d\uff02\u2033\u02ba\u030e\u1cda\ua78c\ua78c\u2019"
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
			// outside quotes, only the separator's runes are non-ASCII
			// spaces, punctuation or symbols, and nothing else reads as
			// the punctuation in its compatibility form
			rest := strings.ReplaceAll(outside.String(), sep, "")
			special := strings.ReplaceAll(sep, " ", "")
			if special == "" {
				special = " "
			}
			if strings.ContainsFunc(rest, unicodePunct) || strings.ContainsAny(norm.NFKC.String(rest), `:()"`+special) {
				t.Fatalf("Join(%q, %q) = %q has a look-alike of the punctuation outside quotes", vs, sep, got)
			}
		}
	}
}

// TestQuoteLikeCombiningMarks: the combining marks drawn as a double quote
// (or a double prime) over or under the character before them.
func TestQuoteLikeCombiningMarks(t *testing.T) {
	for _, r := range []rune{0x030b, 0x030e, 0x030f, 0x0348, 0x059e, 0x1cda, 0x1cdb} {
		if !QuoteLike(r) {
			t.Errorf("QuoteLike(%U) = false", r)
		}
	}
	// single marks and other combining marks are not
	for _, r := range []rune{0x0301, 0x0300, 0x030d, 0x0308, 0x0303, 0x1cd0, 0xa78c, 0x2019} {
		if QuoteLike(r) {
			t.Errorf("QuoteLike(%U) = true", r)
		}
	}
}
