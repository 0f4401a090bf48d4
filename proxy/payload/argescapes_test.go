package payload

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestArgumentEscapes(t *testing.T) {
	for in, want := range map[string]string{
		`{"mail":"bob.smith\u0040example.com"}`:           `{"mail":"bob.smith@example.com"}`,
		`{"k":"sk-REALKEY\u00312\u0033"}`:                 `{"k":"sk-REALKEY123"}`,
		`{"p":"a\/b","e":"\ud83d\ude00"}`:                 `{"p":"a/b","e":"😀"}`,
		`{"q":"\u0022\u005c\u000a\n\"\\"}`:                `{"q":"\"\\\u000a\n\"\\"}`,
		`{"s":"\\u0040"}`:                                 `{"s":"\\u0040"}`, // a backslash, then text
		`{"s":"\\\u0040"}`:                                `{"s":"\\@"}`,
		`{"l":"\ud800x","m":"\udc00","n":"\ud800\u0041"}`: `{"l":"\ud800x","m":"\udc00","n":"\ud800A"}`,
		`\u00zz \u12`:                                     `\u00zz \u12`,
		`plain`:                                           `plain`,
		`ends \`:                                          `ends \`,
		`{"a":"\u00e9\u2028"}`:                            "{\"a\":\"\u00e9\u2028\"}",
	} {
		if got := ArgumentEscapes(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
		// Any split gives the same text.
		for i := 0; i <= len(in); i++ {
			for j := i; j <= len(in); j++ {
				var u argUnescaper
				if got := u.write(in[:i]) + u.write(in[i:j]) + u.write(in[j:]) + u.flush(); got != want {
					t.Fatalf("%s split at %d, %d: %s, want %s", in, i, j, got, want)
				}
			}
		}
		// The JSON value is the same.
		var a, b any
		if json.Unmarshal([]byte(in), &a) == nil {
			if err := json.Unmarshal([]byte(want), &b); err != nil {
				t.Errorf("%s: the rewrite is not JSON: %v", in, err)
			}
			x, _ := json.Marshal(a)
			y, _ := json.Marshal(b)
			if string(x) != string(y) {
				t.Errorf("%s: the value changed: %s, %s", in, x, y)
			}
		}
	}
}

// Escapes as one character each, and back: the same text (a \u escape's
// hex digits in lower case), for any split of the text and of the view.
func TestArgumentView(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"x\ny\t\"\\\u000B\ud800"}`:               `{"a":"x\ny\t\"\\\u000b\ud800"}`,
		"raw \U000F0041 and \U0010FF00 and \U00100022": "raw \U000F0041 and \U0010FF00 and \U00100022",
		`bad \x \u00zz \u12 ends \`:                    `bad \x \u00zz \u12 ends \`,
		"\\\u00e9 plain é":                             "\\\u00e9 plain é",
	} {
		v, _ := toView(in, true)
		if strings.Contains(v, `\`) {
			t.Errorf("%q: a backslash in the view %q", in, v)
		}
		if got, _ := fromView(v, true); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
		for i := 0; i <= len(in); i++ {
			var a argView
			got := a.write(in[:i]) + a.write(in[i:]) + a.flush()
			if got != v {
				t.Fatalf("%q split at %d: view %q, want %q", in, i, got, v)
			}
		}
		for i := 0; i <= len(v); i++ {
			var u argUnview
			if got := u.write(v[:i]) + u.write(v[i:]) + u.flush(); got != want {
				t.Fatalf("%q: view split at %d: %q, want %q", in, i, got, want)
			}
		}
	}
}
