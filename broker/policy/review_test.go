package policy

import (
	"strings"
	"testing"
	"time"
)

func reviewSet() Set {
	return Set{
		{Name: "ml", Subjects: Subjects{Groups: []string{"ml", "security"}}, Scopes: []string{"model:gpt-4o"},
			Approval: Approval{Required: true, Approvers: Subjects{Groups: []string{"security"}}, Count: 2,
				BreakGlass: Subjects{Users: []string{"ciso@example.com"}}}},
		{Name: "open", Subjects: Subjects{Users: []string{"*"}}, Scopes: []string{"model:gpt-4o-mini"}},
	}
}

func TestCanReview(t *testing.T) {
	set := reviewSet()
	terms := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o"}}).Terms()
	if !terms.Required || terms.Count != 2 {
		t.Fatalf("terms = %+v", terms)
	}
	bobOtherIssuer := bob
	bobOtherIssuer.Issuer = "partner"
	agent := Subject{ID: "sa-agent", Issuer: "k8s", Kind: KindService, Act: "u-bob"}
	tests := []struct {
		name                string
		terms               Terms
		set                 Set
		requester, reviewer Subject
		ok                  bool
		reason              string
	}{
		{"approver", terms, set, alice, bob, true, "bob@example.com (issuer corp) is an approver (groups [security])"},
		{"break glass", terms, set, alice, ciso, true, "is a break-glass approver (users [ciso@example.com])"},
		{"not an approver", terms, set, bob, alice, false, "you are not an approver for this request; approvers: groups [security]"},
		{"self", terms, set, bob, bob, false, "you cannot review your own request"},
		{"self under another issuer, same email", terms, set, bob, bobOtherIssuer, false, "you cannot review your own request"},
		{"self by email case", terms, set, bob, Subject{ID: "other", Email: "BOB@example.com", Groups: []string{"security"}}, false, "your own request"},
		{"person behind a service account", terms, set, agent, bob, false, "you cannot review a request that sa-agent (issuer k8s) made on your behalf"},
		{"no sub", terms, set, alice, Subject{Groups: []string{"security"}}, false, "no subject"},
		{"no approval needed", Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o-mini"}}).Terms(), set, alice, bob, false, "this request needs no approval"},
		{"policy removed since", terms, set[1:], alice, bob, false, "policy ml, which this request relies on, no longer exists"},
		{"approvers changed since", terms, Set{{Name: "ml", Subjects: Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o"},
			Approval: Approval{Required: true, Approvers: Subjects{Groups: []string{"sec-leads"}}}}}, alice, bob, false,
			"you are not an approver under policy ml as configured now (approvers: groups [sec-leads])"},
	}
	for _, tt := range tests {
		ok, reason := CanReview(tt.set, tt.terms, tt.requester, tt.reviewer)
		if ok != tt.ok || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: CanReview = %v, %q; want %v, %q", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
}

func TestSatisfied(t *testing.T) {
	set := reviewSet()
	terms := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o"}}).Terms()
	bobAgain := bob
	bobAgain.ID = "u-bob-2" // second account, same email: one person
	tests := []struct {
		name      string
		approvals []Subject
		ok        bool
		reason    string
	}{
		{"none", nil, false, "0 of 2 required approvals; waiting for 2 more from groups [security]"},
		{"one", []Subject{bob}, false, "1 of 2 required approvals; waiting for 1 more"},
		{"same person twice", []Subject{bob, bob}, false, "1 of 2"},
		{"same person, two accounts", []Subject{bob, bobAgain}, false, "1 of 2"},
		{"self-approval never counts", []Subject{bob, alice}, false, "1 of 2"},
		{"two distinct", []Subject{bob, carol}, true, "approved by bob@example.com (issuer corp), carol@example.com (issuer corp) (2 of 2 required)"},
		{"break glass alone", []Subject{ciso}, true, "break-glass approval by CISO@example.com"},
		{"break glass after one approval", []Subject{bob, ciso}, true, "break-glass approval"},
	}
	for _, tt := range tests {
		ok, reason := Satisfied(set, terms, alice, tt.approvals)
		if ok != tt.ok || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: Satisfied = %v, %q; want %v, %q", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}

	// A routine approval by someone who is also break-glass counts normally.
	both := Subject{ID: "u-eve", Email: "eve@example.com", Groups: []string{"security"}, Issuer: "corp"}
	one := Set{{Name: "p", Subjects: Subjects{Users: []string{"*"}}, Scopes: []string{"model:x"}, MaxTTL: time.Hour,
		Approval: Approval{Required: true, Approvers: Subjects{Groups: []string{"security"}}, BreakGlass: Subjects{Users: []string{"eve@example.com"}}}}}
	t1 := Evaluate(one, alice, Ask{Scopes: []string{"model:x"}}).Terms()
	if ok, reason := Satisfied(one, t1, alice, []Subject{both}); !ok || !strings.HasPrefix(reason, "approved by eve@example.com") {
		t.Errorf("routine approval by a break-glass member = %v, %q", ok, reason)
	}

	noApproval := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o-mini"}}).Terms()
	if ok, _ := Satisfied(set, noApproval, alice, nil); !ok {
		t.Error("terms without approval are not satisfied by nothing")
	}
}
