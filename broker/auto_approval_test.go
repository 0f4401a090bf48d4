package broker_test

import (
	"context"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// An auto-approved request's request.approved says so (details.auto) and
// names the requester's session and channel, as a reviewer's does: the
// actor is the requester, and without the flag it would read like a
// self-approval. A person's approval carries no auto flag, whatever the
// reason text says.
func TestAutoApprovalIsMarked(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || r.State != broker.StateApproved {
		t.Fatalf("self-serve request: %v %+v", err, r)
	}
	ev := e.eventsOf(audit.TypeRequestApproved)
	if len(ev) != 1 {
		t.Fatalf("%d request.approved events", len(ev))
	}
	got := ev[0]
	if got.Actor == nil || got.Actor.Subject != "alice" || got.Request != r.ID || got.Decision != "approved" ||
		got.Details["auto"] != "true" || got.Details["session"] == "" || got.Details["session"] != alice.Session || got.Details["via"] != "cli" {
		t.Fatalf("auto-approval event: %+v", got)
	}

	// bob approves alice's pending request, with a reason that looks like
	// the policy's: no auto flag.
	p, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if err != nil || p.State != broker.StatePending {
		t.Fatalf("request: %v %+v", err, p)
	}
	if _, err := e.svc.Review(ctx, bob, p.ID, true, "policy self-serve needs no approval", nil); err != nil {
		t.Fatal(err)
	}
	ev = e.eventsOf(audit.TypeRequestApproved)
	if len(ev) != 2 {
		t.Fatalf("%d request.approved events", len(ev))
	}
	if d := ev[1].Details; d["auto"] != "" || d["session"] != bob.Session || ev[1].Actor.Subject != "bob" {
		t.Fatalf("a person's approval: %+v", ev[1])
	}
}
