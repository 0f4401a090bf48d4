package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/pamctl/pamctl/broker/audit/jsonstr"
)

// encode writes a decoded body back as JSON: what encoding/json writes
// with HTML escaping off (members in key order, the same string escapes),
// without its reflection. A call handler's goroutine keeps the stack its
// deepest call needed for as long as the call streams, and encoding/json
// walking a nested body took a handler past 8 KiB onto a 16 KiB stack
// (docs/performance.md); this walk needs a few dozen bytes a level.
// Values of types a decoder does not produce go through encoding/json.
func encode(v any) ([]byte, error) {
	b, err := appendJSON(make([]byte, 0, 512), v)
	if err != nil {
		return nil, fmt.Errorf("payload: encode: %w", err)
	}
	return b, nil
}

func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case json.Number:
		if x == "" {
			return append(b, '0'), nil // as encoding/json writes it
		}
		if !isJSONNumber(string(x)) {
			return nil, fmt.Errorf("invalid number literal %q", string(x))
		}
		return append(b, x...), nil
	case map[string]any:
		return jsonstr.AppendObject(b, x, false, appendJSON)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

// isJSONNumber reports whether s is a number as JSON writes one.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	return i == len(s)
}
