package payload

import (
	"bytes"
	"encoding/json"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// maxDecodeDepth is encoding/json's nesting limit: a value nested deeper
// is a syntax error there, and so here.
const maxDecodeDepth = 10000

// decodeObject decodes a JSON object into the generic tree the slow paths
// work on, exactly as a json.Decoder with UseNumber into a map[string]any
// reads it, followed by a check that only white space (bytes.TrimSpace's)
// is left: the same maps, []any, json.Number, strings, bools and nils,
// the last of duplicate keys, invalid UTF-8 and lone surrogates as
// U+FFFD, the same syntax errors and depth limit (FuzzDecodeObject holds
// it to that). It reads b once, where the Decoder scans it and then
// unmarshals it, and its strings share one copy of b rather than being
// allocated one by one.
func decodeObject(b []byte) (map[string]any, error) {
	d := objDecoder{jscan: jscan{s: string(b)}}
	d.ws()
	if d.peek() != '{' {
		return nil, ErrInvalidJSON
	}
	root, ok := d.object()
	if !ok || len(bytes.TrimSpace(b[d.i:])) > 0 {
		return nil, ErrInvalidJSON
	}
	return root, nil
}

// objDecoder builds values from the text its scanner reads.
type objDecoder struct{ jscan }

func (d *objDecoder) value() (any, bool) {
	d.ws()
	switch c := d.peek(); c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		return d.string()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c != '-' && !isDigit(c) {
			return nil, false
		}
		tok, _, ok := d.number()
		return json.Number(tok), ok
	}
}

func (d *objDecoder) object() (map[string]any, bool) {
	if d.depth++; d.depth > maxDecodeDepth {
		return nil, false
	}
	d.i++ // '{'
	m := make(map[string]any)
	d.ws()
	if d.peek() == '}' {
		d.i++
		d.depth--
		return m, true
	}
	for {
		d.ws()
		if d.peek() != '"' {
			return nil, false
		}
		k, ok := d.string()
		if !ok {
			return nil, false
		}
		if d.ws(); d.peek() != ':' {
			return nil, false
		}
		d.i++
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		m[k] = v
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			d.depth--
			return m, true
		default:
			return nil, false
		}
	}
}

func (d *objDecoder) array() ([]any, bool) {
	if d.depth++; d.depth > maxDecodeDepth {
		return nil, false
	}
	d.i++ // '['
	a := make([]any, 0)
	d.ws()
	if d.peek() == ']' {
		d.i++
		d.depth--
		return a, true
	}
	for {
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			d.depth--
			return a, true
		default:
			return nil, false
		}
	}
}

// string scans a string and decodes it: a plain one is a slice of the
// text, one with escapes or invalid UTF-8 is rebuilt.
func (d *objDecoder) string() (string, bool) {
	raw, esc, ok := d.str()
	if !ok {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	if !esc && utf8.ValidString(in) {
		return in, true
	}
	return unquoteLikeJSON(in), true
}

// unquoteLikeJSON decodes the inside of a scanned string token as
// encoding/json does: escapes, a \u surrogate pair as one rune, a lone
// surrogate and each byte of invalid UTF-8 as U+FFFD.
func unquoteLikeJSON(s string) string {
	b := make([]byte, 0, len(s)+utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'b':
				b, r = append(b, '\b'), r+2
			case 'f':
				b, r = append(b, '\f'), r+2
			case 'n':
				b, r = append(b, '\n'), r+2
			case 'r':
				b, r = append(b, '\r'), r+2
			case 't':
				b, r = append(b, '\t'), r+2
			case 'u':
				rr, _ := hex4(s, r+2) // the scanner checked the digits
				r += 6
				if utf16.IsSurrogate(rr) {
					if r+6 <= len(s) && s[r] == '\\' && s[r+1] == 'u' {
						lo, _ := hex4(s, r+2)
						if pair := utf16.DecodeRune(rr, lo); pair != utf8.RuneError {
							b, r = utf8.AppendRune(b, pair), r+6
							break
						}
					}
					rr = utf8.RuneError
				}
				b = utf8.AppendRune(b, rr)
			default: // '"', '\\', '/': the scanner allows no other
				b, r = append(b, e), r+2
			}
		case c < utf8.RuneSelf:
			b, r = append(b, c), r+1
		default:
			rr, size := utf8.DecodeRuneInString(s[r:])
			b, r = utf8.AppendRune(b, rr), r+size
		}
	}
	return string(b)
}

// ValidJSON reports whether b is one JSON value, with JSON white space
// around it, exactly as json.Valid does (invalid UTF-8 inside strings is
// valid there too; FuzzValidJSON holds it to json.Valid), in one pass that
// builds nothing.
func ValidJSON(b []byte) bool { return ValidJSONString(unsafe.String(unsafe.SliceData(b), len(b))) }

// ValidJSONString is ValidJSON for text held as a string.
func ValidJSONString(s string) bool {
	d := objDecoder{jscan: jscan{s: s}}
	return d.skip() && d.end()
}

// skip scans one value, with the white space before it.
func (d *objDecoder) skip() bool {
	d.ws()
	switch c := d.peek(); c {
	case '{', '[':
		if d.depth++; d.depth > maxDecodeDepth {
			return false
		}
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		d.i++
		if d.ws(); d.peek() == close {
			d.i++
			d.depth--
			return true
		}
		for {
			if c == '{' {
				if d.ws(); d.peek() != '"' {
					return false
				}
				if _, _, ok := d.str(); !ok {
					return false
				}
				if d.ws(); d.peek() != ':' {
					return false
				}
				d.i++
			}
			if !d.skip() {
				return false
			}
			d.ws()
			switch d.peek() {
			case ',':
				d.i++
			case close:
				d.i++
				d.depth--
				return true
			default:
				return false
			}
		}
	case '"':
		_, _, ok := d.str()
		return ok
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		if c != '-' && !isDigit(c) {
			return false
		}
		_, _, ok := d.number()
		return ok
	}
}
