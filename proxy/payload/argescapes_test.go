package payload

import (
	"encoding/json"
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
