package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/policy"
)

func without(set policy.Set, name string) policy.Set {
	var out policy.Set
	for _, p := range set {
		if p.Name != name {
			out = append(out, p)
		}
	}
	return out
}

// heldCall leaves a call held by rule (and also) pending: the caller gave up.
func heldCall(t *testing.T, e *env, caller broker.Identity, sha string, rule string, also ...string) *broker.Request {
	t.Helper()
	h := broker.Hold{Caller: caller, GrantID: liveGrantID(t, e, caller), Rule: rule, Approvers: testRules[rule], AlsoRules: also,
		Model: "gpt-4o", Excerpt: "DROP TABLE users", SHA256: strings.Repeat(sha, 32)}
	for _, a := range also {
		h.AlsoApprovedBy = append(h.AlsoApprovedBy, testRules[a])
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r, err := e.svc.HoldPrompt(short, h)
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("hold: %v %+v", err, r)
	}
	return r
}

// Who may release a held call is decided by the rules in force at review
// time: a reload that drops an approver group, or the rule, takes effect on
// calls already held.
func TestHeldCallReleaseFollowsRulesInForce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	dana := e.login("dana", "security", "dba")

	// Approver group removed from the rule: bob no longer sees or releases it.
	r := heldCall(t, e, alice, "ab", "destructive-sql")
	e.svc.SetRuleApprovers(broker.RuleApproverMap{"destructive-sql": {Groups: []string{"dba"}}})
	if rs, _ := e.svc.List(ctx, bob, true); len(rs) != 0 {
		t.Fatalf("a removed approver still sees the held call: %+v", rs)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); code(err) != broker.CodeNotFound && code(err) != broker.CodeForbidden {
		t.Fatalf("a removed approver released a held call: %v", err)
	}

	// The rule removed: nobody can release what it held, and says why.
	e.svc.SetRuleApprovers(broker.RuleApproverMap{"prod-data": {Groups: []string{"dba"}}})
	if _, err := e.svc.Review(ctx, dana, r.ID, true, "", nil); err == nil {
		t.Fatal("a call held by a removed rule was released")
	}
	if rs, _ := e.svc.List(ctx, dana, true); len(rs) != 0 {
		t.Fatalf("a call held by a removed rule is still offered for review: %+v", rs)
	}

	// Several rules held it: one of them losing the reviewer's group is enough.
	e.svc.SetRuleApprovers(testRules)
	r2 := heldCall(t, e, alice, "cd", "destructive-sql", "prod-data")
	e.svc.SetRuleApprovers(broker.RuleApproverMap{"destructive-sql": testRules["destructive-sql"], "prod-data": {Groups: []string{"oncall"}}})
	_, err := e.svc.Review(ctx, dana, r2.ID, true, "", nil)
	if err == nil {
		t.Fatal("released although the other rule's approvers changed")
	}
	e.svc.SetRuleApprovers(testRules)
	if got, err := e.svc.Review(ctx, dana, r2.ID, true, "", nil); err != nil || got.State != broker.StateApproved {
		t.Fatalf("restored rules: %v %+v", err, got)
	}

	// Without any rule source the broker fails closed.
	e.svc.SetRuleApprovers(nil)
	r3 := heldCall(t, e, alice, "ef", "destructive-sql")
	if _, err := e.svc.Review(ctx, bob, r3.ID, true, "", nil); err == nil {
		t.Fatal("released with no rules known")
	}
}

// An approval given before a reload removed its approver lets no retry
// through afterwards.
func TestHeldCallRetryNeedsApprovalThatStillStands(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	r := heldCall(t, e, alice, "ab", "destructive-sql")
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	e.svc.SetRuleApprovers(broker.RuleApproverMap{"destructive-sql": {Groups: []string{"dba"}}})
	again := heldCall(t, e, alice, "ab", "destructive-sql")
	if again.ID == r.ID {
		t.Fatal("the retry used an approval whose approver was removed")
	}
}

func grantEvents(t *testing.T, e *env, id string) []audit.Event {
	var out []audit.Event
	e.log.Range(context.Background(), 0, func(ev audit.Event) bool {
		if ev.Type == audit.TypeRequestExpired && ev.Grant == id {
			out = append(out, ev)
		}
		return true
	})
	return out
}

// A live grant whose policy is removed, or no longer grants its scopes or
// its requester, ends at once: no more tokens, the proxy's revocation
// check refuses those already out (also after a restart), audited as an
// expiry with the reason. Grants the new policies still allow stay.
func TestGrantsEndWhenPolicyNoLongerGrantsThem(t *testing.T) {
	for _, tt := range []struct {
		name   string
		set    policy.Set
		reason string
	}{
		{"policy removed", without(testPolicies, "self-serve"), "policy self-serve was removed"},
		{"scope dropped", append(without(testPolicies, "self-serve"), policy.Policy{Name: "self-serve", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o-mini"}}), "scope model:gpt-4o-nano is no longer granted"},
		{"requester dropped", append(without(testPolicies, "self-serve"), policy.Policy{Name: "self-serve", Subjects: policy.Subjects{Groups: []string{"research"}}, Scopes: []string{"model:gpt-4o-nano"}}), "no longer applies"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			alice := e.login("alice", "ml")
			bob := e.login("bob", "security")
			g, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
			if err != nil || g.State != broker.StateApproved {
				t.Fatalf("self-serve grant: %v %+v", err, g)
			}
			// A grant the change does not touch.
			kept, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
			if _, err := e.svc.Review(ctx, bob, kept.ID, true, "", nil); err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.svc.Token(ctx, alice, g.ID); err != nil {
				t.Fatal(err)
			}

			e.svc.SetPolicies(tt.set)

			if !e.svc.IsRevoked(g.ID) {
				t.Fatal("the proxy would still accept the ended grant's tokens")
			}
			if _, _, err := e.svc.Token(ctx, alice, g.ID); code(err) != broker.CodeConflict {
				t.Fatalf("token for an ended grant: %v", err)
			}
			if got, _ := e.svc.Get(ctx, alice, g.ID); got.State != broker.StateExpired || got.EndedAt == nil || !strings.Contains(got.EndReason, tt.reason) {
				t.Fatalf("ended grant (its requester reads why): %+v", got)
			}
			evs := grantEvents(t, e, g.ID)
			if len(evs) != 1 || evs[0].Details["cause"] != "policy" || len(evs[0].Reasons) != 1 || !strings.Contains(evs[0].Reasons[0], tt.reason) {
				t.Fatalf("expiry event: %+v", evs)
			}
			if e.svc.IsRevoked(kept.ID) || len(grantEvents(t, e, kept.ID)) != 0 {
				t.Fatal("a grant the new policies still allow was ended")
			}
			if _, _, err := e.svc.Token(ctx, alice, kept.ID); err != nil {
				t.Fatalf("kept grant: %v", err)
			}
			// Nothing more on the next sweep or reload.
			e.svc.Sweep(ctx)
			e.svc.SetPolicies(tt.set)
			if n := len(grantEvents(t, e, g.ID)); n != 1 {
				t.Fatalf("%d expiry events", n)
			}
			// Putting the policy back does not revive the grant, also after a restart.
			e.restart()
			if !e.svc.IsRevoked(g.ID) {
				t.Fatal("the ended grant's tokens are accepted again after a restart")
			}
			if _, _, err := e.svc.Token(ctx, alice, g.ID); err == nil {
				t.Fatal("an ended grant minted a token after the policy came back")
			}
		})
	}
}

// A config changed while the server was down is applied to live grants at start.
func TestGrantsCheckedAgainstPolicyAtStart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	g, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := broker.New(ctx, broker.Config{Store: e.db, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: e.log,
		Policies: without(testPolicies, "self-serve"), Rules: testRules, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !svc.IsRevoked(g.ID) {
		t.Fatal("a grant the config no longer allows is live after a restart")
	}
}
