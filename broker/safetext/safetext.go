// Package safetext makes text that came from a user, a model or an upstream
// safe to show to a person: nothing in it can move the cursor, change
// colours, erase or overwrite a line, reorder what follows it, or start a
// new line that looks like the program's own output.
//
// Escape rewrites every C0 and C1 control character and DEL (ANSI escape
// sequences start with one), the Unicode bidirectional controls
// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), the line and
// paragraph separators (U+2028, U+2029) and bytes that are not UTF-8 as
// visible escapes: \n, \r, \t, \b, \x1b, \u202e, \xff. Everything else,
// including backslashes and all printable Unicode, passes unchanged, so
// ordinary text reads as it was written.
package safetext

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Unsafe reports whether r must be escaped before it reaches a terminal or
// a chat message.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069,
		r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

// Escape returns s with every unsafe character escaped (see the package
// comment). It is idempotent: escaping twice changes nothing more.
func Escape(s string) string { return escape(s, false) }

// EscapeLines is Escape for text that may span lines: newlines stay.
func EscapeLines(s string) string { return escape(s, true) }

func escape(s string, keepNL bool) string {
	if clean(s, keepNL) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && keepNL:
			b.WriteByte('\n')
		case !Unsafe(r):
			b.WriteString(s[i : i+size])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// clean reports whether s needs no escaping (the common case, fast).
func clean(s string, keepNL bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			for _, r := range s[i:] {
				if (r == utf8.RuneError) || (Unsafe(r) && !(keepNL && r == '\n')) {
					return false
				}
			}
			return true
		}
		if (c < 0x20 && !(keepNL && c == '\n')) || c == 0x7f {
			return false
		}
	}
	return true
}

// Bounded is s escaped (Escape) and, when that is longer than max bytes,
// cut at a rune boundary at most max bytes in, with "… (cut)" after it:
// for text another party sent that ends up in a log line or an error
// (an endpoint's status line of megabytes, a collector's echo).
func Bounded(s string, max int) string {
	s = Escape(s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (cut)"
}

// BoundedError is err, or err with its text Bounded to max bytes when it
// needs escaping or cutting; Unwrap gives err, for errors.Is.
func BoundedError(err error, max int) error {
	msg := err.Error()
	if b := Bounded(msg, max); b != msg {
		return &boundedError{msg: b, err: err}
	}
	return err
}

type boundedError struct {
	msg string
	err error
}

func (e *boundedError) Error() string { return e.msg }
func (e *boundedError) Unwrap() error { return e.err }

// MinSecret is the shortest secret Redact looks for: a shorter one would
// match ordinary words of the text (and guards little anyway).
const MinSecret = 6

// Redact replaces in s every secret of at least MinSecret bytes with
// "[redacted]", longest first (a whole header value before the words in
// it): for what another party sent back that may echo what pamctl sent it.
func Redact(s string, secrets []string) string {
	secrets = slices.DeleteFunc(slices.Clone(secrets), func(x string) bool { return len(x) < MinSecret })
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, x := range secrets {
		s = strings.ReplaceAll(s, x, "[redacted]")
	}
	return s
}
