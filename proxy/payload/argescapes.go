package payload

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/pamctl/pamctl/proxy/scrub"
)

// Tool-call arguments are a JSON document inside a JSON string: the agent
// decodes the answer, then decodes the arguments again. Masking and key
// scrubbing read the arguments as text after the first decode only, so
// {"mail":"bob.smith\u0040example.com"} showed them no address, while the
// agent's second decode reads bob.smith@example.com. ArgumentEscapes
// rewrites the arguments' JSON escapes that stand for a printable
// character (\u0040, a surrogate pair, \/) as that character, so masking
// reads what the second decode yields; the JSON value is the same. Escapes
// that must stay escapes inside a JSON string stay: control characters,
// and a quote or backslash (written \" and \\). A lone surrogate escape
// stays as it is (the tool-call firewall refuses it). Text that is not
// JSON is rewritten alike: a backslash escape means nothing else there.

// argumentKinds are the streamed text fields that hold call arguments as
// JSON text (chat tool_calls and function_call; Responses function and
// MCP calls).
var argumentKinds = map[string]bool{"tool": true, "function_call": true, kindFuncArgs: true, "mcp_call_arguments": true}

// ArgumentEscapes returns s, the JSON text of a call's arguments, with the
// escapes of printable characters written as the characters.
func ArgumentEscapes(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var u argUnescaper
	return u.write(s) + u.flush()
}

// argUnescaper is ArgumentEscapes for text that arrives in pieces: it
// holds back only an escape the piece ends inside (at most 11 bytes), so
// its output for any split equals ArgumentEscapes of the whole.
type argUnescaper struct {
	held string
}

func (u *argUnescaper) write(s string) string {
	if u.held == "" && strings.IndexByte(s, '\\') < 0 {
		return s
	}
	out, rest := unescapeArgs(u.held+s, false)
	u.held = rest
	return out
}

func (u *argUnescaper) flush() string {
	out, _ := unescapeArgs(u.held, true)
	u.held = ""
	return out
}

// unescapeArgs rewrites s; unless final, an escape s ends inside is
// returned as rest, unwritten.
func unescapeArgs(s string, final bool) (out, rest string) {
	var b strings.Builder
	b.Grow(len(s))
	i := 0
	for {
		k := strings.IndexByte(s[i:], '\\')
		if k < 0 {
			b.WriteString(s[i:])
			return b.String(), ""
		}
		b.WriteString(s[i : i+k])
		i += k
		if i+1 >= len(s) {
			if final {
				b.WriteString(s[i:])
				return b.String(), ""
			}
			return b.String(), s[i:]
		}
		switch s[i+1] {
		case '/':
			b.WriteByte('/')
			i += 2
			continue
		case 'u':
		default:
			b.WriteString(s[i : i+2]) // \" \\ \n ...: one escape, kept
			i += 2
			continue
		}
		if i+6 > len(s) {
			if !final && validHexPrefix(s[i+2:]) {
				return b.String(), s[i:]
			}
			b.WriteString(s[i : i+2])
			i += 2
			continue
		}
		r, ok := hex4(s, i+2)
		if !ok {
			b.WriteString(s[i : i+2]) // not an escape: left for the decoder to refuse
			i += 2
			continue
		}
		switch {
		case r < 0x20:
			b.WriteString(s[i : i+6])
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case 0xDC00 <= r && r <= 0xDFFF:
			b.WriteString(s[i : i+6]) // a lone low surrogate: kept
		case 0xD800 <= r && r <= 0xDBFF:
			if i+12 > len(s) && !final && (i+6 == len(s) || s[i+6] == '\\' && (i+7 == len(s) || s[i+7] == 'u' && validHexPrefix(s[i+8:]))) {
				return b.String(), s[i:] // its low half may follow
			}
			if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
				if r2, ok := hex4(s, i+8); ok && 0xDC00 <= r2 && r2 <= 0xDFFF {
					b.WriteRune(utf16Pair(r, r2))
					i += 12
					continue
				}
			}
			b.WriteString(s[i : i+6]) // a lone high surrogate: kept
		default:
			if utf8.ValidRune(r) {
				b.WriteRune(r)
			} else {
				b.WriteString(s[i : i+6])
			}
		}
		i += 6
	}
}

func utf16Pair(hi, lo rune) rune { return (hi-0xD800)<<10 | (lo - 0xDC00) + 0x10000 }

// validHexPrefix reports whether the first (up to) four bytes of s are
// hex digits: s may begin a \u escape's digits.
func validHexPrefix(s string) bool {
	for i := 0; i < len(s) && i < 4; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// The masker reads call arguments as the agent's second decode does: an
// escape the arguments keep (\n, \t, \u000b, \", \\, a lone surrogate)
// stands for one character, which ends a word, so "key:\nsk-proj-…"
// shows the masker a key after a line break, not "nsk-proj-…". And a
// placeholder must never replace part of an escape ("x\[EMAIL]" is not
// JSON). So before masking, each escape becomes one private-use character
// (argView) that, like a line break or a quote, no detector reads as part
// of a word; after masking each is written back as its escape (argUnview).
// An escape inside a finding goes with it. A raw private-use character of
// those planes in the arguments is marked (viewRaw before it) so it comes
// back as itself.
const (
	viewU     = 0xF0000  // + XXXX: the escape \uXXXX
	viewShort = 0x100000 // + c: the escape \c (c ASCII); + 0x80: a lone backslash
	viewRaw   = 0x10FF00 // the next character is the arguments' own
)

// maskArguments masks a call's arguments (JSON text, as the first decode
// yields it) with f, as the agent's second decode reads them.
func maskArguments(a string, f func(string) string) string {
	return viewMasked(ArgumentEscapes(a), f)
}

// viewMasked is f of plain (arguments whose printable escapes are
// written plainly), each escape reading as one character.
func viewMasked(plain string, f func(string) string) string {
	if !needsView(plain) {
		return f(plain)
	}
	v, _ := toView(plain, true)
	out, _ := fromView(f(v), true)
	return out
}

// needsView reports whether s holds an escape or a byte that may begin a
// character of the private-use planes.
func needsView(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == 0xF3 || c == 0xF4 {
			return true
		}
	}
	return false
}

// argView is toView for text that arrives in pieces; argUnview is
// fromView. Both hold back at most an escape or a character a piece ends
// inside, so any split gives the whole's output.
type argView struct{ held string }

func (v *argView) write(s string) string {
	if v.held == "" && !needsView(s) {
		return s
	}
	out, rest := toView(v.held+s, false)
	v.held = rest
	return out
}

func (v *argView) flush() string {
	out, _ := toView(v.held, true)
	v.held = ""
	return out
}

type argUnview struct{ held string }

func (v *argUnview) write(s string) string {
	if v.held == "" && !needsView(s) {
		return s
	}
	out, rest := fromView(v.held+s, false)
	v.held = rest
	return out
}

func (v *argUnview) flush() string {
	out, _ := fromView(v.held, true)
	v.held = ""
	return out
}

// toView writes each escape of s as one character; unless final, an
// escape or a 4-byte character s ends inside is returned as rest.
func toView(s string, final bool) (string, string) {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				if !final {
					return b.String(), s[i:]
				}
				b.WriteRune(viewShort + 0x80)
				i++
				continue
			}
			e := s[i+1]
			if e == 'u' {
				if i+6 > len(s) && !final && validHexPrefix(s[i+2:]) {
					return b.String(), s[i:]
				}
				if r, ok := hex4(s, i+2); ok {
					b.WriteRune(viewU + r)
					i += 6
					continue
				}
			}
			if e < 0x80 {
				b.WriteRune(viewShort + rune(e))
				i += 2
				continue
			}
			b.WriteRune(viewShort + 0x80)
			i++
		case c == 0xF3 || c == 0xF4:
			if i+4 > len(s) && !final {
				return b.String(), s[i:]
			}
			r, n := utf8.DecodeRuneInString(s[i:])
			if n == 4 && r >= viewU {
				b.WriteRune(viewRaw)
			}
			b.WriteString(s[i : i+n])
			i += n
		default:
			j := i + 1
			for j < len(s) && s[j] != '\\' && s[j] != 0xF3 && s[j] != 0xF4 {
				j++
			}
			b.WriteString(s[i:j])
			i = j
		}
	}
	return b.String(), ""
}

// fromView writes back what toView wrote; unless final, a character s
// ends inside (or a viewRaw mark without the character it marks) is
// returned as rest. A mark whose character a finding replaced is dropped.
func fromView(s string, final bool) (string, string) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != 0xF3 && c != 0xF4 {
			j := i + 1
			for j < len(s) && s[j] != 0xF3 && s[j] != 0xF4 {
				j++
			}
			b.WriteString(s[i:j])
			i = j
			continue
		}
		if i+4 > len(s) && !final {
			return b.String(), s[i:]
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case n != 4:
			b.WriteString(s[i : i+n])
		case r == viewRaw:
			k := i + n
			if k < len(s) && (s[k] == 0xF3 || s[k] == 0xF4) || k == len(s) {
				if k+4 > len(s) && !final {
					return b.String(), s[i:]
				}
				if r2, n2 := utf8.DecodeRuneInString(s[k:]); n2 == 4 && r2 >= viewU {
					b.WriteString(s[k : k+n2])
					n += n2
				}
			}
		case viewU <= r && r < viewU+0x10000:
			const hexDigits = "0123456789abcdef"
			x := r - viewU
			b.WriteString(`\u`)
			b.WriteByte(hexDigits[x>>12&0xf])
			b.WriteByte(hexDigits[x>>8&0xf])
			b.WriteByte(hexDigits[x>>4&0xf])
			b.WriteByte(hexDigits[x&0xf])
		case viewShort <= r && r < viewShort+0x80:
			b.WriteByte('\\')
			b.WriteByte(byte(r - viewShort))
		case r == viewShort+0x80:
			b.WriteByte('\\')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String(), ""
}

// ScrubArguments removes keys from the call arguments of a JSON answer as
// the agent's second decode reads them: every string member named
// arguments, at any depth, has its printable escapes written plainly
// (ArgumentEscapes) and is then scrubbed, so a key whose escapes are
// themselves spelled with escapes (\\\u0075 0073, \u005c\u0075 0073,
// \\u\u0030 073: the answer's bytes hold no spelling of the key the
// scrubber knows) is found. The body is re-encoded only when a key was
// found; it is returned as it is when none was, when keys is empty, when
// it holds no escaped backslash (the arguments then hold no escape), or
// when it is not a JSON object (the callers refuse or mask it as text).
func ScrubArguments(body []byte, keys *scrub.Set) []byte {
	if keys.Empty() || !bytes.Contains(body, []byte(`\\`)) && !bytes.Contains(body, []byte(`\u005c`)) && !bytes.Contains(body, []byte(`\u005C`)) {
		return body
	}
	root, err := decodeObject(body)
	if err != nil {
		return body
	}
	found := false
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if a, ok := e.(string); ok && k == "arguments" {
					plain := ArgumentEscapes(a)
					if clean := keys.String(plain); clean != plain {
						x[k], found = clean, true
					}
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(root)
	if !found {
		return body
	}
	out, err := encode(root)
	if err != nil {
		return body
	}
	return out
}
