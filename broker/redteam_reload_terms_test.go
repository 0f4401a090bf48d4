package broker_test

import (
	"context"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/policy"
)

// Red team: an admin tightens a policy by reload, say count 1 -> 2 because
// one approver's account may be compromised, or removes a break-glass
// subject. Approvers are re-checked at review time, but the count and the
// break-glass of a pending request were the ones it was created with: the
// one suspect approver still completed every request made before the
// reload, alone. A reload may make a pending request's terms stricter,
// never looser: the count needed is the larger of the request's and its
// policies' now, and break-glass counts only while the policies in force
// still name the subject under break_glass.
func TestRTReloadTighteningAppliesToPendingRequests(t *testing.T) {
	loose := policy.Policy{Name: "ml-models", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o"},
		Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1,
			BreakGlass: policy.Subjects{Users: []string{"ciso@example.com"}}}}
	for name, tc := range map[string]struct {
		tight    func(p *policy.Policy)
		approver string   // approves first, alone
		groups   []string // the first approver's
		then     []string // then these complete it
	}{
		"count raised": {func(p *policy.Policy) { p.Approval.Count = 2 }, "bob", []string{"security"}, []string{"carol"}},
		"break-glass removed, the subject made an approver of two": {func(p *policy.Policy) {
			p.Approval.BreakGlass = policy.Subjects{}
			p.Approval.Approvers.Users = []string{"ciso@example.com"}
			p.Approval.Count = 2
		}, "ciso", nil, []string{"carol", "dave"}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.svc.SetPolicies(policy.Set{loose})
			alice := e.login("alice", "ml")
			r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
			if err != nil || r.State != broker.StatePending || r.Approval.Count != 1 {
				t.Fatalf("request: %v %+v", err, r)
			}
			tight := loose
			tc.tight(&tight)
			e.svc.SetPolicies(policy.Set{tight})
			first := e.login(tc.approver, tc.groups...)
			got, err := e.svc.Review(ctx, first, r.ID, true, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != broker.StatePending || got.Approval.Count != 2 {
				t.Fatalf("one approval completed a request whose policy now needs two: %s, %d/%d", got.State, got.Approvals(), got.Approval.Count)
			}
			for _, who := range tc.then {
				if got, err = e.svc.Review(ctx, e.login(who, "security"), r.ID, true, "", nil); err != nil {
					t.Fatal(err)
				}
			}
			if got.State != broker.StateApproved {
				t.Fatalf("approved by %v under the tightened policy: %s", tc.then, got.State)
			}
		})
	}
}

// The other way, a reload loosening a policy does not loosen a pending
// request: it keeps the terms it was created with (pins the rule above
// from the other side).
func TestReloadLooseningKeepsPendingTerms(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:o1"}}) // two-person
	if err != nil || r.Approval.Count != 2 {
		t.Fatalf("request: %v %+v", err, r)
	}
	looser := append(policy.Set(nil), testPolicies...)
	looser[1].Approval.Count = 1
	e.svc.SetPolicies(looser)
	if got, err := e.svc.Review(ctx, e.login("bob", "security"), r.ID, true, "", nil); err != nil || got.State != broker.StatePending {
		t.Fatalf("one approval under a loosened policy: %v %+v", err, got)
	}
}
