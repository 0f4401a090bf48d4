package audit

// Quoting text another party sent inside pamctl's own words.

import "strings"

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

// lineFeedMark is how QuoteLine writes a line feed of its text: outside
// the quotes, between two quoted parts.
const lineFeedMark = "\u23ce" // ⏎

// QuoteLine is Quote for a line of a text read line by line (a held
// excerpt's place line, the line naming a held tool call): each line feed
// of s closes the quote and is written ⏎ between it and the next quoted
// part ("user"⏎"[found in …]" is user, a line feed, [found in …]), so the
// quoted text holds no line feed and starts no line. A ⏎ of s is inside
// the quotes; one outside them is always a line feed.
func QuoteLine(s string) string {
	if !strings.Contains(s, "\n") {
		return Quote(s)
	}
	parts := strings.Split(s, "\n")
	for i, p := range parts {
		parts[i] = Quote(p)
	}
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
