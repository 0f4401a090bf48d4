package safetext

import "testing"

// TestValue: one value of a view is quoted as Join quotes a list of one,
// with no separator of its own: a value that could pass for the view's
// punctuation, or for the end of its own quotes, is quoted.
func TestValue(t *testing.T) {
	for _, tc := range []struct{ v, punct, want string }{
		{"Alice Liddell", "()", "Alice Liddell"},
		{"café", "()", "café"},
		{"alice (admin@corp)", "()", `"alice (admin@corp)"`},
		{"x)", "()", `"x)"`},
		{`say "hi"`, "()", `"say ""hi"""`},
		{"", "()", `""`},
		{" alice", "()", `" alice"`},
		{"alice\uff08admin\uff09", "()", "\"alice\uff08admin\uff09\""}, // fullwidth parentheses
		{"alice\u2474", "()", "\"alice\u2474\""},                       // "(1)"
		{"a\u00a0b", "()", "\"a\u00a0b\""},                             // a no-break space
		{"alice\u201d (admin)", "()", "\"alice\u201d\u201d (admin)\""}, // a look-alike quote is doubled
		{"a:b", "()", "a:b"},
	} {
		if got := Value(tc.v, tc.punct); got != tc.want {
			t.Errorf("Value(%q, %q) = %q, want %q", tc.v, tc.punct, got, tc.want)
		}
	}
}

// TestParty: "NAME (subject)" names the person whose subject it shows:
// a display name (or a subject) holding parentheses, a quote or a
// look-alike of them is quoted, so it cannot read as another person's
// name and subject.
func TestParty(t *testing.T) {
	for _, tc := range []struct{ display, subject, want string }{
		{"Alice Liddell", "alice", "Alice Liddell (alice)"},
		{"", "alice", "alice"},
		{"alice", "alice", "alice"},
		{"", "", ""},
		{"alice (admin@corp)", "mallory", `"alice (admin@corp)" (mallory)`},
		{"alice", "admin) (root", `alice ("admin) (root")`},
		{"", "bob (alice)", `"bob (alice)"`},
		{"alice\uff08admin\uff09", "mallory", "\"alice\uff08admin\uff09\" (mallory)"},
		{`alice" (admin`, "mallory", `"alice"" (admin" (mallory)`},
		{"alice\u201d (admin", "mallory", "\"alice\u201d\u201d (admin\" (mallory)"},
		{" alice", "mallory", `" alice" (mallory)`},
		{"Zoë O'Brien", "zoe", "Zoë O'Brien (zoe)"},
	} {
		if got := Party(tc.display, tc.subject); got != tc.want {
			t.Errorf("Party(%q, %q) = %q, want %q", tc.display, tc.subject, got, tc.want)
		}
	}
}
