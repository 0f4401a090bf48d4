package broker_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

func prunedEvents(t *testing.T, e *env) []audit.Event {
	t.Helper()
	var out []audit.Event
	e.log.Range(context.Background(), 0, func(ev audit.Event) bool {
		if ev.Type == audit.TypeRequestsPruned {
			out = append(out, ev)
		}
		return true
	})
	return out
}

// Requests that ended longer ago than the retention are deleted, one
// requests.pruned event per run that deleted any; live requests stay
// whatever their age, and a revoked grant stays (and stays revoked across
// a restart) until its tokens would have expired.
func TestPruneRequests(t *testing.T) {
	e := newEnv(t)
	e.retention = 10 * time.Minute
	e.restart()
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")

	grant, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}, TTL: 30 * time.Minute})
	if err != nil || grant.State != broker.StateApproved {
		t.Fatalf("grant: %v %+v", err, grant)
	}
	if _, err := e.svc.Revoke(ctx, alice, grant.ID, false); err != nil {
		t.Fatal(err)
	}
	denied, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if _, err := e.svc.Review(ctx, bob, denied.ID, false, "no", nil); err != nil {
		t.Fatal(err)
	}
	live, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})

	if n, err := e.svc.PruneRequests(ctx); err != nil || n != 0 {
		t.Fatalf("prune of fresh requests: %d %v", n, err)
	}
	if evs := prunedEvents(t, e); len(evs) != 0 {
		t.Fatalf("a prune that deleted nothing was audited: %+v", evs)
	}

	e.clock.Add(20 * time.Minute) // denied is 20m over; the grant would live 10 more minutes
	n, err := e.svc.PruneRequests(ctx)
	if err != nil || n != 1 {
		t.Fatalf("prune: %d %v, want 1 (the denied request)", n, err)
	}
	if _, err := e.svc.Get(ctx, alice, denied.ID); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("denied request after prune: %v", err)
	}
	evs := prunedEvents(t, e)
	if len(evs) != 1 || evs[0].Details["count"] != "1" || evs[0].Details["retention"] != "10m0s" || evs[0].Actor == nil || evs[0].Actor.Subject != "pamctl" {
		t.Fatalf("pruned events: %+v", evs)
	}
	e.restart()
	if !e.svc.IsRevoked(grant.ID) {
		t.Fatal("a prune lost a revocation whose tokens are still valid")
	}
	// A pending request stays however old it gets until the sweep ends it.
	e.clock.Add(30 * time.Minute)
	if n, _ := e.svc.PruneRequests(ctx); n != 1 {
		t.Fatalf("prune after the grant's expiry: %d, want 1 (the grant)", n)
	}
	e.clock.Add(20 * time.Minute) // 70m: past the pending TTL (1h), not swept
	if n, _ := e.svc.PruneRequests(ctx); n != 0 {
		t.Fatalf("pruned an unswept pending request: %d", n)
	}
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := e.svc.Get(ctx, alice, live.ID); err != nil || got.State != broker.StateExpired {
		t.Fatalf("swept request: %v %+v", err, got)
	}
	e.clock.Add(11 * time.Minute)
	if n, _ := e.svc.PruneRequests(ctx); n != 1 {
		t.Fatalf("last prune: %d, want 1", n)
	}
	if rs, _ := e.svc.List(ctx, alice, false); len(rs) != 0 {
		t.Fatalf("left after pruning everything: %+v", rs)
	}
	if evs := prunedEvents(t, e); len(evs) != 3 {
		t.Fatalf("want one event per run that pruned: %d", len(evs))
	}
}

// Without a retention nothing is pruned.
func TestPruneRequestsNeedsRetention(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	e.svc.Review(ctx, bob, r.ID, false, "", nil)
	e.clock.Add(1000 * time.Hour)
	if n, err := e.svc.PruneRequests(ctx); n != 0 || err != nil {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if _, err := e.svc.Get(ctx, alice, r.ID); err != nil {
		t.Fatal(err)
	}
}

// A listing holds the live requests its reader made or may review, and
// the history its reader took part in (made, reviewed, ended); another
// approver's finished business is in the audit trail, not the listing.
func TestListLiveAndOwnHistory(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	dave := e.login("dave", "security")
	carol := e.login("carol", "ml")
	pending, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	denied, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-mini"}})
	e.svc.Review(ctx, bob, denied.ID, false, "", nil)
	approved, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	e.svc.Review(ctx, bob, approved.ID, true, "", nil)
	e.clock.Add(time.Second)
	carols, _ := e.svc.CreateRequest(ctx, carol, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})

	list := func(who broker.Identity, pendingOnly bool) []string {
		t.Helper()
		rs, err := e.svc.List(ctx, who, pendingOnly)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
	same := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(sorted(got...), sorted(want...)) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	same("alice", list(alice, false), []string{pending.ID, denied.ID, approved.ID})
	same("bob", list(bob, false), []string{pending.ID, denied.ID, approved.ID})
	same("dave", list(dave, false), []string{pending.ID, approved.ID})
	same("dave pending", list(dave, true), []string{pending.ID})
	same("carol", list(carol, false), []string{carols.ID})
	// Newest first.
	if got := list(carol, false); got[0] != carols.ID {
		t.Errorf("order: %v", got)
	}
	if got := list(alice, false); got[0] != approved.ID && got[0] != denied.ID && got[0] != pending.ID {
		t.Errorf("alice order: %v", got)
	}
}
