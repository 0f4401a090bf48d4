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
// Inside the quotes, each double quote is doubled, and so is each
// character that looks like one (QuoteLike: a typographic “ or ”, a
// fullwidth ＂, a double prime ″, a modifier letter ʺ, a combining double
// mark ̎, …), and each of a run of two or more single-quote look-alikes
// (halfQuote: ꞌꞌ, ’’, ′′ read as one), so no character inside them can
// pass for their end: "alice”” (admin)" is the one value alice” (admin),
// "aliceꞌꞌꞌꞌ (admin)" the one value aliceꞌꞌ (admin).
// To read it back: a value in quotes runs to the next lone quote (""
// in it is one quote, a doubled look-alike one look-alike, and a run of
// single-quote look-alikes, always of four or more, half as many); any
// other value runs to the next sep.
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
		writeValue(&b, v, special)
	}
	return b.String()
}

// writeValue writes v as Join writes a value, special being the
// characters that make it quoted.
func writeValue(b *strings.Builder, v, special string) {
	if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' || strings.ContainsAny(v, special) || lookAlike(v, special) {
		b.WriteByte('"')
		rs := []rune(v) // as ranging over v: an invalid byte is U+FFFD
		for i, r := range rs {
			b.WriteRune(r)
			// doubled: alone it would read as the end
			if QuoteLike(r) || halfQuote(r) && (i > 0 && halfQuote(rs[i-1]) || i+1 < len(rs) && halfQuote(rs[i+1])) {
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
		return
	}
	b.WriteString(v)
}

// QuoteLike reports whether r is a double quote or may be read as one: a
// typographic double quotation mark (“ ” „ ‟ ❝ ❞ 〝 〞 〟 ⹂, the
// ornaments U+1F676–U+1F678), a double or triple prime (″ ‴ ‶ ⁗), a
// letter or accent drawn as one (ʺ ˮ ˝ ˵ ˶), the Hebrew gershayim ״, the
// ditto mark 〃, the Vedic nihshvasa ᳓, a combining double mark drawn as
// one over or under the character before it (U+030B, U+030E, U+030F,
// U+0348, the Hebrew accent gershayim U+059E, the Vedic double and triple
// svarita U+1CDA, U+1CDB), or a character whose compatibility form (NFKC)
// holds a double quote (the fullwidth ＂). Guillemets (« ») and single
// quotes are not: they read as themselves (but two side by side read as a
// double quote: Join doubles such runs, see halfQuote).
func QuoteLike(r rune) bool {
	switch {
	case r == '"':
		return true
	case r < utf8.RuneSelf:
		return false
	case r >= 0x201c && r <= 0x201f, r >= 0x2033 && r <= 0x2034, r == 0x2036, r == 0x2057,
		r == 0x02ba, r == 0x02dd, r == 0x02ee, r == 0x02f5, r == 0x02f6,
		r == 0x05f4, r == 0x1cd3, r == 0x3003, r >= 0x301d && r <= 0x301f,
		r == 0x275d, r == 0x275e, r == 0x2e42, r >= 0x1f676 && r <= 0x1f678,
		// combining double marks, drawn as a quote over or under the
		// character before them: double acute, double vertical line,
		// double grave, double vertical line below, Hebrew accent
		// gershayim, Vedic double and triple svarita
		r == 0x030b, r == 0x030e, r == 0x030f, r == 0x0348, r == 0x059e, r == 0x1cda, r == 0x1cdb:
		return true
	}
	return strings.ContainsRune(norm.NFKC.String(string(r)), '"')
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

// Value is v as one value of a view, written as Join writes a value:
// quoted (each double quote and look-alike of one doubled) when it is
// empty, starts or ends with a space, or holds a double quote, one of
// punct (the view's punctuation around it: the parentheses of "NAME
// (subject)") or a look-alike of them; else as it is. The result is raw
// text, to be escaped where it is shown.
func Value(v, punct string) string {
	var b strings.Builder
	writeValue(&b, v, `"`+punct)
	return b.String()
}

// Party is how a view names a person or a workload: the display name
// with the subject in parentheses when the two differ ("Alice Liddell
// (alice)"), else the subject. The display name is whatever the IdP let
// its owner set, and a workload's subject may hold a branch name the
// agent chose: each is written by Value with the parentheses as
// punctuation, so a display name "alice (admin@corp)" shows as
// "\"alice (admin@corp)\" (mallory)", never as another person. The CLI,
// the web page and chat messages all name people through it.
func Party(display, subject string) string {
	if display == "" || display == subject {
		if subject == "" {
			return ""
		}
		return Value(subject, "()")
	}
	return Value(display, "()") + " (" + Value(subject, "()") + ")"
}

// halfQuote reports whether r reads as a single quote mark, two of which
// side by side read as a double quote: the typographic single quotes
// (‘ ’ ‚ ‛), the prime and reversed prime (′ ‵), the modifier letters
// prime and apostrophe (ʹ ʼ) and the saltillo (Ꞌ ꞌ). ASCII ' is not: it
// reads as itself.
func halfQuote(r rune) bool {
	switch r {
	case 0x2018, 0x2019, 0x201a, 0x201b, 0x2032, 0x2035, 0x02b9, 0x02bc, 0xa78b, 0xa78c:
		return true
	}
	return false
}
