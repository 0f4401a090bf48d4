package policy

import "testing"

// Black-box red team: a GitHub Actions job (act_claim: actor) triggered by
// the approver was approvable by that approver whenever the actor was not
// spelled exactly like their sub or email: "ALICE", "alice-gh". The act is
// now compared after NFKC and case folding with the person's sub, email and
// email's local part, and a login the IdP cannot know is declared with the
// issuer's act_people map (ActFor).
func TestActorNeverApprovesTheirOwnJob(t *testing.T) {
	set := reviewSet()
	approver := Subject{ID: "alice", Email: "alice@example.com", Issuer: "corp", Kind: KindUser, Groups: []string{"security"}}
	job := func(act, actFor string) Subject {
		return Subject{ID: "repo:acme/app:ref:refs/heads/main", Issuer: "gha", Kind: KindService, Groups: []string{"ml"}, Act: act, ActFor: actFor}
	}
	terms := Evaluate(set, job("x", ""), Ask{Scopes: []string{"model:gpt-4o"}}).Terms()
	if !terms.Required {
		t.Fatal("the job's request needs no approval: the test proves nothing")
	}
	if ok, why := CanReview(set, terms, job("carol", ""), approver); !ok {
		t.Fatalf("baseline: alice may not approve carol's job: %s", why)
	}
	for _, tc := range []struct{ act, actFor string }{
		{"alice", ""},
		{"alice@example.com", ""},
		{"ALICE", ""},
		{"Alice", ""},
		{"ALICE@EXAMPLE.COM", ""},
		{"\uff41lice", ""}, // fullwidth a: NFKC makes it a
		{"alice-gh", "alice@example.com"},
		{"alice-gh", "ALICE@example.com"},
		{"alice-gh", "alice"}, // the sub
	} {
		if ok, why := CanReview(set, terms, job(tc.act, tc.actFor), approver); ok {
			t.Errorf("act %q (for %q): alice may approve her own job (%s)", tc.act, tc.actFor, why)
		}
		// And the job may not approve alice's own request either.
		aliceTerms := Evaluate(set, approver, Ask{Scopes: []string{"model:gpt-4o"}}).Terms()
		reviewer := job(tc.act, tc.actFor)
		reviewer.Groups = []string{"security"}
		if ok, why := CanReview(set, aliceTerms, approver, reviewer); ok && aliceTerms.Required {
			t.Errorf("act %q (for %q): the job may approve alice's request (%s)", tc.act, tc.actFor, why)
		}
	}
	// Without a mapping, a login unlike the person's names is not theirs:
	// the guard cannot know (documented), and act_people is the answer.
	for _, act := range []string{"alice-gh", "al1ce", "bob"} {
		if ok, why := CanReview(set, terms, job(act, ""), approver); !ok {
			t.Errorf("act %q: refused (%s); want allowed without a mapping", act, why)
		}
	}
	// Two jobs of one person, one by login and one by its mapping.
	a, b := job("alice-gh", "alice@example.com"), job("ALICE@example.com", "")
	b.Groups = []string{"security"}
	if ok, why := CanReview(set, terms, a, b); ok {
		t.Errorf("two jobs of one person: CanReview = true (%s)", why)
	}
}
