package proxy

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/pamctl/pamctl/proxy/payload"
)

// topMembers calls visit with each member of the JSON object data in
// order, its name unescaped and its value raw; it returns false, having
// visited nothing, when data is not one valid JSON object. A walk of the
// text, not a decoder: it needs the same few frames of stack however deep
// data nests, where decoding into a struct takes about 1 KiB a level, on
// the stack of a streaming call's goroutine (docs/performance.md).
func topMembers(data string, visit func(name, value string)) bool {
	return payload.ValidJSONString(data) && walkMembers(data, visit)
}

// objectMembers is topMembers for an answer's bytes, which it does not
// copy: the strings visit gets share b's memory, and are valid only
// while b is unchanged.
func objectMembers(b []byte, visit func(name, value string)) bool {
	return payload.ValidJSON(b) && walkMembers(unsafe.String(unsafe.SliceData(b), len(b)), visit)
}

// walkMembers is topMembers for data known to be valid JSON (a value
// topMembers or objectMembers visited, say): false when it is not an
// object.
func walkMembers(data string, visit func(name, value string)) bool {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	for i < len(data) && data[i] != '}' {
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		end := stringEnd(data, i)
		name := unquoteJSON(data[i:end])
		i = skipSpace(data, skipSpace(data, end)+1) // past the ':'
		end = valueEnd(data, i)
		visit(name, data[i:end])
		i = skipSpace(data, end)
	}
	return true
}

// walkElements calls visit with each element of arr, raw; arr is known
// to be valid JSON (a value topMembers visited, say). It visits nothing
// when arr is not an array.
func walkElements(arr string, visit func(value string)) {
	i := skipSpace(arr, 0)
	if i == len(arr) || arr[i] != '[' {
		return
	}
	i = skipSpace(arr, i+1)
	for i < len(arr) && arr[i] != ']' {
		if arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
		end := valueEnd(arr, i)
		visit(arr[i:end])
		i = skipSpace(arr, end)
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the end of the valid JSON string starting at s[i].
func stringEnd(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// valueEnd returns the end of the valid JSON value starting at s[i].
func valueEnd(s string, i int) int {
	switch s[i] {
	case '"':
		return stringEnd(s, i)
	case '{', '[':
		depth := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '"':
				i = stringEnd(s, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(s)
	}
	for i < len(s) && !strings.ContainsRune(",}] \t\r\n", rune(s[i])) {
		i++
	}
	return i
}

// unquoteJSON returns the text of a valid JSON string literal, as
// encoding/json reads it.
func unquoteJSON(lit string) string {
	plain := true
	for i := 0; i < len(lit) && plain; i++ {
		plain = lit[i] != '\\' && lit[i] < utf8.RuneSelf
	}
	if plain {
		return lit[1 : len(lit)-1]
	}
	var s string
	_ = json.Unmarshal([]byte(lit), &s)
	return s
}
