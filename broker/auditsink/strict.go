package auditsink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxJSONDepth bounds the nesting of one anchor line.
const maxJSONDepth = 32

// checkUniqueKeys refuses JSON in which an object repeats a key, at any
// depth. encoding/json keeps the last of two equal keys and matches
// struct fields case-insensitively, so {"head":A,"head":B} or
// {"seq":1,"SEQ":2} would be read as whatever came last while a reader
// of the first sees another value. Keys are compared as encoding/json
// matches them (case-folded). Trailing data after the value is refused.
func checkUniqueKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		obj     bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	for seen := false; ; seen = true {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 || !seen {
				return io.ErrUnexpectedEOF
			}
			break
		}
		if err != nil {
			return err
		}
		if seen && len(stack) == 0 {
			return errors.New("data after the JSON value")
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].wantKey = true
				}
				continue
			}
			k, _ := tok.(string)
			fold := strings.ToLower(strings.ToUpper(k))
			if top.keys[fold] {
				return fmt.Errorf("duplicate key %s", clean([]byte(k), 40))
			}
			top.keys[fold] = true
			top.wantKey = false
			continue
		}
		switch d, _ := tok.(json.Delim); d {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return errors.New("nested too deeply")
			}
			stack = append(stack, &frame{obj: d == '{', keys: map[string]bool{}, wantKey: d == '{'})
			continue
		case ']':
			stack = stack[:len(stack)-1]
		}
		// A value (or a closed array) ends: the enclosing object wants a key next.
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].wantKey = true
		}
	}
	return nil
}
