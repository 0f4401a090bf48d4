package payload

import (
	"strings"
	"unicode/utf8"
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
