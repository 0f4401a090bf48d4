package policy

import (
	"strings"
	"testing"
)

// A workload that acts for a person (act_claim: the person who triggered
// the CI run) is that person for reviews, both ways: the person may not
// review the workload's request (TestCanReview), the workload may not
// review the person's, two workloads acting for one person are one
// person, and a workload and the person it acts for count as one approver.
func TestWorkloadActingForAPersonIsThatPerson(t *testing.T) {
	set := reviewSet()
	terms := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o"}}).Terms()
	// A CI job in the approvers' group, triggered by the requester.
	ciForAlice := Subject{ID: "repo:acme/app:ref:refs/heads/main", Issuer: "github-actions", Kind: KindService, Groups: []string{"security"}, Act: "u-alice"}
	ciForAliceByEmail := ciForAlice
	ciForAliceByEmail.Act = "Alice@example.com"
	ciForBob := ciForAlice
	ciForBob.Act = "u-bob"
	agentForAlice := Subject{ID: "sa-agent", Issuer: "k8s", Kind: KindService, Groups: []string{"ml"}, Act: "u-alice"}
	for name, tc := range map[string]struct{ requester, reviewer Subject }{
		"workload for the requester":            {alice, ciForAlice},
		"workload for the requester, by email":  {alice, ciForAliceByEmail},
		"two workloads for one person":          {agentForAlice, ciForAlice},
		"two workloads for one person, by case": {agentForAlice, Subject{ID: "other-ci", Issuer: "github-actions", Kind: KindService, Groups: []string{"security"}, Act: "U-ALICE"}},
	} {
		if ok, why := CanReview(set, terms, tc.requester, tc.reviewer); ok {
			t.Errorf("%s: CanReview = true (%s)", name, why)
		}
	}
	if ok, why := CanReview(set, terms, alice, ciForBob); !ok {
		t.Errorf("a workload acting for another approver: CanReview = false (%s)", why)
	}
	// Bob and a job acting for bob are one approver of two needed.
	for _, approvals := range [][]Subject{{bob, ciForBob}, {ciForBob, bob}} {
		if ok, why := Satisfied(set, terms, alice, approvals); ok || !strings.Contains(why, "1 of 2") {
			t.Errorf("Satisfied(%v) = %v, %q; want 1 of 2", approvals, ok, why)
		}
	}
	// Nor does the requester's job count towards her own request.
	if ok, why := Satisfied(set, terms, alice, []Subject{bob, ciForAlice}); ok {
		t.Errorf("the requester's own job counted: %q", why)
	}
}
