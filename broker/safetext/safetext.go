// Package safetext makes text that came from a user, a model or an upstream
// safe to show to a person: nothing in it can move the cursor, change
// colours, erase or overwrite a line, reorder what follows it, start a new
// line that looks like the program's own output, or hide text that a model
// would read and a person would not see.
//
// Escape rewrites, as visible escapes (\n, \r, \t, \b, \x1b, \u202e,
// \U000e0061, \xff):
//   - every C0 and C1 control character and DEL (ANSI escape sequences start
//     with one), the Unicode bidirectional controls (U+061C, U+200E, U+200F,
//     U+202A–U+202E, U+2066–U+2069), the line and paragraph separators
//     (U+2028, U+2029) and bytes that are not UTF-8: what a terminal acts on;
//   - every character that renders as nothing (Invisible): format
//     characters (Unicode Cf: tag characters U+E0000–U+E007F, which spell
//     out ASCII a model reads; zero-width spaces and joiners; the word
//     joiner; the BOM; the soft hyphen; the deprecated format controls),
//     the other default-ignorable code points (the combining grapheme
//     joiner, Hangul fillers, U+FFF0–U+FFF8, the unassigned planes of
//     tags) and the braille blank U+2800;
//   - variation selectors, except one text or emoji presentation selector
//     (U+FE0E, U+FE0F) right after a character shown as itself, and one
//     ideographic variation selector (U+E0100–U+E01EF) right after a Han
//     ideograph: a run of them, or one anywhere else, encodes data that
//     renders as nothing;
//   - combining marks (Unicode Mn, Me) past the MaxMarks-th on one
//     character, and one with no character to sit on (at the start, after
//     a newline or after an escape): stacked marks ("Zalgo") spill over
//     the lines around them and cover text;
//   - private-use code points (U+E000–U+F8FF, planes 15 and 16) and
//     noncharacters (U+FDD0–U+FDEF, U+xFFFE and U+xFFFF of every plane)
//     (Private): they have no standard glyph, so they render as nothing,
//     as a box or as a vendor's picture (U+F8FF is an Apple logo on a Mac);
//   - a backslash that would read as the start of an escape: one followed
//     by n, r, t or b, by x and two hex digits, u and four, U and eight, or
//     by another backslash (a backslash of the text, or the start of an
//     escape) is written \\, so the six characters \u202e an agent typed
//     read apart from an escaped U+202E. Every other backslash (C:\Users,
//     \d+ in a regex) stays as it is. To read Escape's output: \\ is one
//     backslash, \n \r \t \b \xHH \uHHHH \UHHHHHHHH are escapes, any other
//     backslash is itself.
//
// Everything else, including all printable Unicode, passes unchanged, so
// ordinary text reads as it was written. Chat notifications
// (broker/notify), the CLI (cmd/pamctl/internal/iostreams) and the web
// page (broker/ui) all show untrusted text through Escape, so a person sees
// the same escapes everywhere.
package safetext

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Unsafe reports whether r must be escaped before it reaches a terminal, a
// chat message or a web page on its own: a control a terminal acts on
// (Control) or a character that renders as nothing (Invisible). Escape
// keeps one presentation selector after a character (see the package
// comment); every other rune Unsafe names, it escapes.
func Unsafe(r rune) bool { return Control(r) || Invisible(r) || Private(r) }

// Control reports whether a terminal acts on r: C0 and C1 controls, DEL,
// the bidirectional controls and the line and paragraph separators.
func Control(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069,
		r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

// Invisible reports whether r renders as nothing, or as a blank that is
// not a space: Unicode format characters (Cf), the other default-ignorable
// code points, variation selectors, and the braille blank.
func Invisible(r rune) bool {
	if r < 0xa0 {
		return false
	}
	return unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) || r == 0x2800
}

// Private reports whether r has no standard glyph: a private-use code
// point (Unicode Co: U+E000–U+F8FF, U+F0000–U+FFFFD, U+100000–U+10FFFD) or
// a noncharacter (U+FDD0–U+FDEF, the last two code points of every plane).
// A font may draw anything for one (U+F8FF is an Apple logo on a Mac) or
// nothing at all.
func Private(r rune) bool {
	if r < 0xe000 {
		return false
	}
	return unicode.In(r, unicode.Co, unicode.Noncharacter_Code_Point)
}

// MaxMarks is how many combining marks Escape shows on one character:
// enough for Vietnamese, Thai, Devanagari and pointed Hebrew; the rest are
// escaped.
const MaxMarks = 3

// mark reports whether r is a combining mark that draws over or under its
// base character (nonspacing or enclosing).
func mark(r rune) bool { return r >= 0x300 && unicode.In(r, unicode.Mn, unicode.Me) }

// presentation reports whether r is a variation selector Escape may keep
// after base (see the package comment).
func presentation(r, base rune) bool {
	switch {
	case r == 0xfe0e, r == 0xfe0f:
		return true
	case r >= 0xe0100 && r <= 0xe01ef:
		return unicode.Is(unicode.Han, base)
	}
	return false
}

// Escape returns s with every unsafe character escaped (see the package
// comment). It is not idempotent, and cannot be while it is unambiguous:
// the escape of U+202E, six characters, must read apart from those six
// characters typed, so escaping it again doubles its backslash. Escape
// text once, where it is shown (Clip cuts it to a width first).
func Escape(s string) string { return escape(s, false) }

// EscapeLines is Escape for text that may span lines: newlines stay.
func EscapeLines(s string) string { return escape(s, true) }

func escape(s string, keepNL bool) string {
	if clean(s, keepNL) {
		return s
	}
	return escapeEach(s, keepNL, nil)
}

// escapeEach escapes s; after each rune of s it calls each, when not nil,
// with where the rune ends in s and how many runes the escape has written
// so far, and stops when each returns false.
func escapeEach(s string, keepNL bool, each func(end, shown int) bool) string {
	var b strings.Builder
	b.Grow(len(s) + 16)
	// base is the last rune shown as itself that marks and a presentation
	// selector may sit on (-1: none); marks counts the marks shown on it;
	// selected says a selector already follows it.
	base, marks, selected := rune(-1), 0, false
	shown := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		before := b.Len()
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i-1])
			base, marks, selected = -1, 0, false
		case r == '\n' && keepNL:
			b.WriteByte('\n')
			base, marks, selected = -1, 0, false
		case mark(r) && !Unsafe(r) && (base < 0 || marks >= MaxMarks):
			writeEscape(&b, r)
			base, marks, selected = -1, 0, false
		case mark(r) && !Unsafe(r):
			b.WriteRune(r)
			marks++
		case Invisible(r) && !Control(r) && base >= 0 && !selected && presentation(r, base):
			b.WriteRune(r)
			selected = true
		case r == '\\' && doubleBackslash(s[i:], keepNL):
			b.WriteString(`\\`)
			base, marks, selected = r, 0, false
		case !Unsafe(r):
			b.WriteRune(r)
			base, marks, selected = r, 0, false
		default:
			writeEscape(&b, r)
			base, marks, selected = -1, 0, false
		}
		if each != nil {
			shown += utf8.RuneCountInString(b.String()[before:])
			if !each(i, shown) {
				break
			}
		}
	}
	return b.String()
}

// Clip cuts s to what fits in about n runes once escaped: s itself when
// Escape(s) has at most n runes, else the runes of s whose escapes start
// within the first n-1 runes of Escape(s), then "…". An escape is never
// cut (one that starts before the cut is kept whole, so the result's
// escape may run up to 9 runes past n): a character the cut reaches is
// shown as its whole escape, never as a piece of one or as nothing.
// The result is raw text, to be escaped where it is shown (Escape, not
// twice); newlines count as escaped unless lines is true (EscapeLines).
func Clip(s string, n int, lines bool) string {
	if n < 1 {
		n = 1
	}
	if utf8.RuneCountInString(escape(s, lines)) <= n {
		return s
	}
	// prev is how many runes the escape of s[:cut] has.
	cut, prev := 0, 0
	escapeEach(s, lines, func(end, shown int) bool {
		if prev >= n-1 {
			return false // this rune's escape starts at the cut
		}
		cut, prev = end, shown
		return true
	})
	if cut == len(s) {
		return s // the last escape starts before the cut: all of s is shown
	}
	return s[:cut] + "…"
}

// doubleBackslash reports whether a backslash of the text followed by rest
// must be written \\: when what Escape writes next would read, after the
// backslash, as an escape or as \\ (see the package comment).
func doubleBackslash(rest string, keepNL bool) bool {
	if len(rest) == 0 {
		return false
	}
	hexRun := func(n int) bool {
		if len(rest) < 1+n {
			return false
		}
		for _, c := range []byte(rest[1 : 1+n]) {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	switch rest[0] {
	case '\\', 'n', 'r', 't', 'b':
		return true
	case 'x':
		return hexRun(2)
	case 'u':
		return hexRun(4)
	case 'U':
		return hexRun(8)
	}
	// What comes next is written as an escape (it starts with a
	// backslash) unless it is shown as itself: a newline EscapeLines
	// keeps, the first combining mark or a presentation selector on the
	// backslash, or a safe character.
	r, size := utf8.DecodeRuneInString(rest)
	switch {
	case r == utf8.RuneError && size == 1:
		return true
	case r == '\n' && keepNL:
		return false
	case mark(r) && !Unsafe(r):
		return false
	case Invisible(r) && !Control(r) && presentation(r, '\\'):
		return false
	}
	return Unsafe(r)
}

// writeEscape writes r as a visible escape.
func writeEscape(b *strings.Builder, r rune) {
	switch {
	case r == '\n':
		b.WriteString(`\n`)
	case r == '\r':
		b.WriteString(`\r`)
	case r == '\t':
		b.WriteString(`\t`)
	case r == '\b':
		b.WriteString(`\b`)
	case r < 0x80:
		fmt.Fprintf(b, `\x%02x`, r)
	case r <= 0xffff:
		fmt.Fprintf(b, `\u%04x`, r)
	default:
		fmt.Fprintf(b, `\U%08x`, r)
	}
}

// clean reports whether s needs no escaping (the common case, fast): ASCII
// without controls or a backslash to double, or text without a rune Escape
// would look at twice.
func clean(s string, keepNL bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			for j, r := range s[i:] {
				if r == utf8.RuneError || Unsafe(r) && !(keepNL && r == '\n') || mark(r) ||
					r == '\\' && doubleBackslash(s[i+j+1:], keepNL) {
					return false
				}
			}
			return true
		}
		if (c < 0x20 && !(keepNL && c == '\n')) || c == 0x7f || c == '\\' && doubleBackslash(s[i+1:], keepNL) {
			return false
		}
	}
	return true
}

// Cut is s as it is (raw: not escaped) when it is at most max bytes, else
// cut at a rune boundary at most max bytes in, with "… (cut)" after it:
// for text another party sent (an endpoint's status line of megabytes, a
// collector's echo) kept in an error, a status or a record, which is data.
// Whatever shows it to a person escapes it there, once (Escape, the CLI's
// tables, the web page, chat; the server log's handlers): escaping it here
// too would show an escape as typed text (\\u202e for a U+202E).
func Cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut > max-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = max // not UTF-8 there: any byte boundary
	}
	return s[:cut] + "… (cut)"
}

// CutError is err, or err with its text Cut to max bytes when it is
// longer; Unwrap gives err, for errors.Is. Its text stays raw (see Cut).
func CutError(err error, max int) error {
	msg := err.Error()
	if b := Cut(msg, max); b != msg {
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

// EscapeJSON rewrites as \uXXXX escapes (a surrogate pair past U+FFFF) the
// characters encoding/json leaves raw but a terminal would act on or show
// as nothing (Unsafe: DEL, C1 and bidi controls, tag characters,
// zero-width characters, variation selectors, ...) and combining marks
// stacked past MaxMarks on one character. It decodes to the same
// value: such characters only occur inside strings, and encoding/json
// already escapes C0 controls, quotes, backslashes and U+2028/U+2029.
func EscapeJSON(b []byte) []byte {
	unsafe := func(r rune) bool { return r != '\n' && Unsafe(r) } // the encoder's own newlines stay
	if bytes.IndexFunc(b, func(r rune) bool { return unsafe(r) || unicode.In(r, unicode.Mn, unicode.Me) }) < 0 {
		return b
	}
	var out bytes.Buffer
	out.Grow(len(b) + 16)
	marks := 0
	for _, r := range string(b) {
		mark := unicode.In(r, unicode.Mn, unicode.Me)
		if mark {
			marks++
		}
		switch {
		case unsafe(r), mark && marks > MaxMarks:
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
			} else {
				fmt.Fprintf(&out, `\u%04x`, r)
			}
			marks = MaxMarks // no base left: later marks are escaped too
		default:
			out.WriteRune(r)
			if !mark {
				marks = 0
			}
		}
	}
	return out.Bytes()
}

// JSONWriter is w with every Write rewritten by EscapeJSON: for a writer
// each Write of which is whole JSON values (log/slog's JSONHandler writes
// one record a Write), such as a server's JSON log, read in a terminal
// (kubectl logs, journalctl) by people and decoded by programs, which
// get the exact text. Text that came from outside (an upstream's header
// line Go's transport quotes in an error, a display name) then shows
// \u202e, never a raw bidi control.
func JSONWriter(w io.Writer) io.Writer { return jsonWriter{w} }

type jsonWriter struct{ w io.Writer }

func (j jsonWriter) Write(p []byte) (int, error) {
	if _, err := j.w.Write(EscapeJSON(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

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
