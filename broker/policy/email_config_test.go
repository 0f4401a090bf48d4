package policy

import (
	"strings"
	"testing"
)

// Approvers and subjects named by email are compared with the identity's
// verified email case-insensitively in ASCII only (LowerASCII), so an entry
// written with a capital outside ASCII (JÖRG@…, or a look-alike such as the
// Kelvin sign) never matches the lower-case address the IdP sends. Config
// load refuses such an entry, saying to write it in lower case, instead of
// leaving a person silently unmatched; ASCII capitals, lower-case
// non-ASCII and subject ids (no @) are kept.
func TestNonASCIICapitalEmailsInConfigAreRefused(t *testing.T) {
	// Matching stays ASCII-only: this is why the config must refuse.
	if (Subjects{Users: []string{"JÖRG@example.com"}}).Match(Subject{ID: "00u1", Email: "jörg@example.com"}) {
		t.Fatal("JÖRG@example.com matches jörg@example.com: matching is no longer ASCII-only; revisit this check")
	}
	base := func(edit func(p *Policy)) Set {
		p := Policy{Name: "p", Subjects: Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o"},
			Approval: Approval{Required: true, Approvers: Subjects{Groups: []string{"security"}}}}
		edit(&p)
		return Set{p}
	}
	for _, bad := range []string{"JÖRG@example.com", "jörg@EXAMPLÉ.com", "\u212Aate@example.com", "adm\u0130n@example.com", "*@MÜNCHEN.example"} {
		for field, edit := range map[string]func(p *Policy){
			"subjects.users":             func(p *Policy) { p.Subjects.Users = []string{"ok@example.com", bad} },
			"approval.approvers.users":   func(p *Policy) { p.Approval.Approvers.Users = []string{bad} },
			"approval.break_glass.users": func(p *Policy) { p.Approval.BreakGlass.Users = []string{bad} },
		} {
			errs := base(edit).Validate()
			if len(errs) != 1 {
				t.Errorf("%s %q: %d errors %v, want it refused once", field, bad, len(errs), errs)
				continue
			}
			msg := errs[0].Error()
			if !strings.Contains(msg, field) || !strings.Contains(msg, "lower case") || !strings.Contains(msg, "U+") {
				t.Errorf("%s %q: the error does not say where, which letter and what to do: %s", field, bad, msg)
			}
		}
	}
	for _, good := range []string{"jörg@example.com", "Kate@Example.COM", "ops@*.example.com", "00uÖ1", "*"} {
		if errs := base(func(p *Policy) { p.Subjects.Users = []string{good}; p.Approval.Approvers.Users = []string{good} }).Validate(); len(errs) != 0 {
			t.Errorf("%q refused: %v", good, errs)
		}
	}
}
