package audit

// Quoting text another party sent inside pamctl's own words.

import (
	"strings"
	"unicode/utf8"
)

// Quote is s between double quotes, each " of s doubled ("" inside the
// quotes is one "), every other character as it is: for text another
// party sent (a tool's or a role's name, an upstream's word) inside a
// line that also holds pamctl's own words, a place of a held excerpt or
// an error's detail. The quotes keep the text apart from those words: no
// ", "; ", "]" or quote in it can end it early, forge a second name or
// end the line's structure. Nothing else is escaped, and no backslash is
// added: a bidi control, a zero-width character or the six characters
// \u202e typed stay as they were, raw, and whatever shows the line to a
// person escapes it there, once (safetext.Escape: \u202e for a U+202E, \\u202e
// for the six characters), as it does all other text another party sent.
// Unquote reads it back. (Go's strconv.Quote, which pamctl used before
// 2026-12-08, wrote escapes that a view's Escape then doubled: a person
// read \\u202e where \u202e was meant.)
func Quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// lineFeedMark is how QuoteLine writes a line break of its text: outside
// the quotes, between two quoted parts.
const lineFeedMark = "\u23ce" // ⏎

// lineBreaks are the characters QuoteLine writes as ⏎ and OnePlace
// refuses raw: the line feed and every other character a reader may end a
// line at (a terminal, an editor, a browser, Python's str.splitlines): the
// carriage return (a CR LF is one break), the vertical tab, the form
// feed, the file, group and record separators (U+001C, U+001D, U+001E,
// which str.splitlines ends a line at), NEL (U+0085) and the line and
// paragraph separators (U+2028, U+2029).
const lineBreaks = "\n\r\v\f\x1c\x1d\x1e\u0085\u2028\u2029"

// QuoteLine is Quote for a line of a text read line by line (a held
// excerpt's place line, the line naming a held tool call): each line
// break of s (a line feed, a carriage return, a CR LF, NEL, U+2028,
// U+2029, a vertical tab, a form feed, U+001C, U+001D or U+001E:
// lineBreaks) closes the quote and
// is written ⏎ between it and the next quoted part ("user"⏎"[found in
// …]" is user, a line break, [found in …]), so the quoted text holds no
// line break and starts no line. A ⏎ of s is inside the quotes; one
// outside them is always a line break, which Unquote reads as a line
// feed.
func QuoteLine(s string) string {
	if !strings.ContainsAny(s, lineBreaks) {
		return Quote(s)
	}
	var parts []string
	for {
		i := strings.IndexAny(s, lineBreaks)
		if i < 0 {
			break
		}
		parts = append(parts, Quote(s[:i]))
		_, n := utf8.DecodeRuneInString(s[i:])
		if strings.HasPrefix(s[i:], "\r\n") {
			n = 2
		}
		s = s[i+n:]
	}
	parts = append(parts, Quote(s))
	return strings.Join(parts, lineFeedMark)
}

// Unquote reads back the Quote or QuoteLine that q starts with: the text,
// and the rest of q after it. ok is false when q does not start with one
// (no opening quote, or no closing one).
func Unquote(q string) (s, rest string, ok bool) {
	var b strings.Builder
	for {
		if !strings.HasPrefix(q, `"`) {
			return "", "", false
		}
		q = q[1:]
		for {
			i := strings.IndexByte(q, '"')
			if i < 0 {
				return "", "", false
			}
			b.WriteString(q[:i])
			q = q[i+1:]
			if !strings.HasPrefix(q, `"`) {
				break // the closing quote
			}
			b.WriteByte('"')
			q = q[1:]
		}
		if !strings.HasPrefix(q, lineFeedMark+`"`) {
			return b.String(), q, true
		}
		b.WriteByte('\n')
		q = q[len(lineFeedMark):]
	}
}
