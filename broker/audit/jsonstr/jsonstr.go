// Package jsonstr writes JSON strings byte for byte as Go's encoding/json
// writes them, with or without its HTML escaping: the proxy's rewritten
// bodies and stream chunks (without) and the audit trail's canonical
// events (with, encoding/json's default) are encoded without reflection.
package jsonstr

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"unicode/utf8"
	"unsafe"
)

// safe[html] holds the ASCII bytes encoding/json writes as they are.
var safe = func() (t [2][utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[0][c] = c != '"' && c != '\\'
		t[1][c] = t[0][c] && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// Append appends s as a JSON string, as encoding/json writes it: quotes,
// backslashes and control bytes escaped (\b \f \n \r \t, else \u00XX), the
// line and paragraph separators as \u2028 and \u2029, invalid UTF-8 as
// \ufffd, and with escapeHTML <, > and & as \u003c, \u003e and \u0026.
func Append(b []byte, s string, escapeHTML bool) []byte {
	const hex = "0123456789abcdef"
	table := &safe[0]
	if escapeHTML {
		table = &safe[1]
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i = plainRun(s, i, escapeHTML); i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if table[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendObject appends m as a JSON object as encoding/json writes a map:
// keys sorted byte-wise, each written by Append, each value by value (whose
// first error it returns).
func AppendObject[V any](b []byte, m map[string]V, escapeHTML bool, value func([]byte, V) ([]byte, error)) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = Append(b, k, escapeHTML)
		b = append(b, ':')
		var err error
		if b, err = value(b, m[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// plainRun returns the offset of the first byte at or after i that Append
// must look at (not written as it is, or not ASCII), or len(s): eight
// bytes at a time, then byte by byte.
func plainRun(s string, i int, escapeHTML bool) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	zero := func(v uint64) uint64 { return (v - ones) &^ v }
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
		// High bits of the bytes to look at: non-ASCII ones, and (of
		// the ASCII ones) a zero of x^c for each escaped c, or under
		// 0x20. Borrows flag bytes above the lowest such byte only.
		esc := zero(x^('"'*ones)) | zero(x^('\\'*ones)) | (x - 0x20*ones)
		if escapeHTML {
			esc |= zero(x^('<'*ones)) | zero(x^('>'*ones)) | zero(x^('&'*ones))
		}
		if m := x&highs | esc&^x&highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	table := &safe[0]
	if escapeHTML {
		table = &safe[1]
	}
	for ; i < len(s) && s[i] < utf8.RuneSelf && table[s[i]]; i++ {
	}
	return i
}
