package safetext

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Join joins vs with sep for a person to read, so that no value can pass
// for the list's punctuation: a value that is empty, starts or ends with
// a space, or holds a double quote, a character of sep other than a
// space (a space too when sep is only spaces), or one of punct (the
// view's own punctuation around the list:
// the ": " after a list of places, the parentheses around a list of
// groups) is written in double quotes, each double quote in it doubled,
// as CSV writes a field. So is a value holding a look-alike of any of
// those: a non-ASCII space, punctuation mark or symbol (Unicode classes
// Z, P and S: a no-break space, U+037E that looks like ';', a fullwidth
// parenthesis, a bullet that looks like '·'), a letter drawn as
// punctuation (ː, ꓹ, ǃ: letterLikePunct), or a character whose
// compatibility form (NFKC) holds one of them (U+2474 is "(1)"), since
// Escape shows printable Unicode as it is. Every other value is written
// as it is, so ordinary lists read as before ("ml, security", "café").
// To read it back: a value in quotes runs to the next lone quote (""
// in it is one quote); any other value runs to the next sep.
//
// The result is raw text, to be escaped where it is shown (Escape): the
// quotes are plain characters, so the escapes of a value read the same
// inside quotes as outside.
func Join(vs []string, sep, punct string) string {
	special := `"` + strings.ReplaceAll(sep, " ", "") + punct
	if strings.Trim(sep, " ") == "" {
		special += " " // a separator of spaces: a space in a value is one
	}
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteString(sep)
		}
		if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' || strings.ContainsAny(v, special) || lookAlike(v, special) {
			b.WriteByte('"')
			b.WriteString(strings.ReplaceAll(v, `"`, `""`))
			b.WriteByte('"')
			continue
		}
		b.WriteString(v)
	}
	return b.String()
}

// lookAlike reports whether v holds a non-ASCII rune that may read as
// punctuation or a space (Unicode Z, P or S), or whose compatibility
// form holds one of special.
func lookAlike(v, special string) bool {
	if !strings.ContainsFunc(v, func(r rune) bool { return r >= utf8.RuneSelf }) {
		return false // ASCII: ContainsAny has judged it
	}
	if strings.ContainsFunc(v, func(r rune) bool {
		return r >= utf8.RuneSelf && (unicode.In(r, unicode.Z, unicode.P, unicode.S) || letterLikePunct(r))
	}) {
		return true
	}
	return strings.ContainsAny(norm.NFKC.String(v), special)
}

// letterLikePunct reports whether r is a letter drawn as punctuation
// (Unicode calls it a letter, so class P does not name it): the spacing
// modifier letters (ː, ʺ, ʼ), the click letters (ǀ ǁ ǂ ǃ), the Lisu tone
// letters (ꓹ, ꓽ, ꓸ) and the letters drawn as a middle dot (ᐧ, ㆍ).
func letterLikePunct(r rune) bool {
	switch {
	case r >= 0x01c0 && r <= 0x01c3, r >= 0x02b0 && r <= 0x02ff, r >= 0xa4f8 && r <= 0xa4ff,
		r == 0x1427, r == 0x318d:
		return true
	}
	return false
}
