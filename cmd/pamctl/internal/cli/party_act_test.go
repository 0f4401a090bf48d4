package cli

import (
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// Black-box red team: the approver never saw a CI job's act (who
// triggered the run). Every CLI view of a party (requests table, approve,
// deny, release) names it through PartyName.
func TestPartyNameShowsTheAct(t *testing.T) {
	job := broker.Identity{Subject: "repo:acme/app:ref:refs/heads/main", Issuer: "gha", Kind: "service"}
	for _, tc := range []struct {
		act, actFor, want string
	}{
		{"", "", "repo:acme/app:ref:refs/heads/main"},
		{"alice-gh", "", "repo:acme/app:ref:refs/heads/main for alice-gh"},
		{"alice-gh", "alice@example.com", "repo:acme/app:ref:refs/heads/main for alice-gh = alice@example.com"},
		// An act that reads as more of the label is quoted.
		{"bob = alice@example.com", "", `repo:acme/app:ref:refs/heads/main for "bob = alice@example.com"`},
		{"x (you)", "", `repo:acme/app:ref:refs/heads/main for "x (you)"`},
	} {
		id := job
		id.Act, id.ActFor = tc.act, tc.actFor
		if got := PartyName(id); got != tc.want {
			t.Errorf("act %q for %q: PartyName = %q, want %q", tc.act, tc.actFor, got, tc.want)
		}
	}
	// audit tail and audit show name an event's actor the same way (the
	// trail records the act, not the mapping).
	if got := actorLabel(&audit.Actor{Subject: "repo:acme/app:ref:refs/heads/main", Issuer: "gha", Act: "alice-gh"}); got != "repo:acme/app:ref:refs/heads/main for alice-gh" {
		t.Errorf("actorLabel = %q", got)
	}
}
