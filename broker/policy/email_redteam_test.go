package policy

import "testing"

// An approver named by email is matched by that address only: letters
// compare case-insensitively in ASCII (Kate@Example.COM is kate@example.com),
// every other character exactly. Unicode case mapping would let another
// identity in: the Kelvin sign K (U+212A) lowers and folds to k, the
// capital I with dot İ (U+0130) lowers to i, the long s ſ (U+017F) folds to
// s, so an IdP account "\u212Aate@example.com" matched the approver
// kate@example.com.
func TestApproverEmailsMatchOnlyThatAddress(t *testing.T) {
	approvers := Subjects{Users: []string{"kate@example.com", "admin@example.com", "sam@example.com", "ops@*.example.com"}}
	for _, tc := range []struct {
		email string
		want  bool
	}{
		{"kate@example.com", true},
		{"Kate@EXAMPLE.com", true},
		{"ADMIN@example.com", true},
		{"ops@eu.example.com", true},
		{"\u212aate@example.com", false},   // Kelvin sign
		{"kate@example.co\u1d0d", false},   // small capital M
		{"adm\u0130n@example.com", false},  // capital I with dot above: lowers to i
		{"adm\u0131n@example.com", false},  // dotless i
		{"\u017fam@example.com", false},    // long s: folds to s
		{"ops@eu.e\u0445ample.com", false}, // Cyrillic ha
		{"kate@example.com\u200b", false},
	} {
		who := Subject{ID: "u-x", Email: tc.email, Issuer: "corp", Kind: KindUser}
		if got := approvers.Match(who); got != tc.want {
			t.Errorf("approvers %v match %q: %v, want %v", approvers.Users, tc.email, got, tc.want)
		}
	}
	// An approver named with non-ASCII matches that address exactly.
	j := Subjects{Users: []string{"jürgen@example.com"}}
	if !j.Match(Subject{ID: "u-j", Email: "JüRGEN@example.com"}) || j.Match(Subject{ID: "u-j", Email: "jÜrgen@example.com"}) {
		t.Error("a non-ASCII approver address: its ASCII letters should match in any case, the others exactly")
	}
}

// The checks that refuse (self-approval) or merge approvers (distinct
// count) go the other way: any case mapping of an address is the same
// person, so a second account spelled with a look-alike letter can neither
// approve its owner's request nor count as a second approver.
func TestLookAlikeEmailsAreOnePersonForRefusals(t *testing.T) {
	kate := Subject{ID: "u-kate", Email: "kate@example.com", Issuer: "corp", Kind: KindUser}
	for _, other := range []string{"\u212aate@example.com", "KATE@example.com"} {
		if !SamePerson(kate, Subject{ID: "u-2", Email: other, Issuer: "other", Kind: KindUser}) {
			t.Errorf("%q is not the same person as kate@example.com", other)
		}
	}
	admin := Subject{ID: "u-admin", Email: "admin@example.com", Issuer: "corp", Kind: KindUser}
	if !SamePerson(admin, Subject{ID: "u-3", Email: "adm\u0130n@example.com", Issuer: "other", Kind: KindUser}) {
		t.Error("adm\u0130n@example.com (lowers to admin@…) is not the same person as admin@example.com")
	}
	if !actsFor(Subject{ID: "ci", Act: "adm\u0130n@example.com"}, admin) {
		t.Error("a workload acting for adm\u0130n@example.com does not act for admin@example.com")
	}
}
