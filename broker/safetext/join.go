package safetext

import "strings"

// Join joins vs with sep for a person to read, so that no value can pass
// for the list's punctuation: a value that is empty, starts or ends with
// a space, or holds a double quote, a character of sep other than a
// space (a space too when sep is only spaces), or one of punct (the
// view's own punctuation around the list:
// the ": " after a list of places, the parentheses around a list of
// groups) is written in double quotes, each double quote in it doubled,
// as CSV writes a field. Every other value is written as it is, so
// ordinary lists read as before ("ml, security"). To read it back: a
// value in quotes runs to the next lone quote ("" in it is one quote);
// any other value runs to the next sep.
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
		if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' || strings.ContainsAny(v, special) {
			b.WriteByte('"')
			b.WriteString(strings.ReplaceAll(v, `"`, `""`))
			b.WriteByte('"')
			continue
		}
		b.WriteString(v)
	}
	return b.String()
}
