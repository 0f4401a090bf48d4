package auditsink

import "testing"

// redactEchoed finds a secret in any case and encoding a collector may
// write it back in, leaves words shorter than safetext.MinSecret, and
// leaves what only looks alike.
func TestRedactEchoed(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"at /in/Tok3nSecret now", "at /in/[redacted] now"},
		{"at /IN/TOK3NSECRET", "at /IN/[redacted]"},
		{"at tok3nsecret", "at [redacted]"},
		{"at %54%4f%4B3nSecret", "at [redacted]"},          // bytes percent-encoded, hex in either case
		{"at Tok3nSecre%74%", "at [redacted]%"},            // a dangling % is text
		{"at Tok3nSecre", "at Tok3nSecre"},                 // a prefix is not the secret
		{"a%20b%2Fc-50%41x", "[redacted]"},                 // the secret "a b/c-50%41x" holds a literal %41
		{"a+b/c-50%2541x", "[redacted]"},                   // '+' for a space, %25 for %
		{"ÉTÉ-secret ÉTÉ-SECRET", "[redacted] [redacted]"}, // non-ASCII: the secret upper-cased whole
		{"v1 http V1", "v1 http V1"},                       // under MinSecret: never looked for
	} {
		if got := redactEchoed(c.in, []string{"Tok3nSecret", "a b/c-50%41x", "été-secret", "v1", "http"}); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}
