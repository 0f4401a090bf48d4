// Package storetest specifies the broker's storage interfaces by suites
// that every backend (store's bbolt, store/etcdstore) runs against itself:
// a backend is done when Requests, Sessions, Keys, Vault, Enrollments and
// SinkCursors pass. It is for tests only.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/policy"
)

// Requests runs the broker.Store suite. newStore returns an empty store
// that lives until the test ends.
func Requests(t *testing.T, newStore func(t *testing.T) broker.Store) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, broker.Store)
	}{
		{"RoundTripAndCAS", roundTripAndCAS},
		{"InState", inState},
		{"PrincipalsAreExact", principalsAreExact},
		{"RequestsOf", requestsOf},
		{"Due", due},
		{"GrantsExpiringAfter", grantsExpiringAfter},
		{"Prune", prune},
		{"ConcurrentUpdates", concurrentUpdates},
		{"HeldCall", heldCall},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

var (
	t0    = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	alice = broker.Identity{Subject: "alice", Issuer: "corp", Groups: []string{"ml"}}
	bob   = broker.Identity{Subject: "bob", Issuer: "corp", Groups: []string{"security"}}
	carol = broker.Identity{Subject: "carol", Issuer: "corp", Groups: []string{"security"}}
)

func at(d time.Duration) *time.Time { t := t0.Add(d); return &t }

// pending is a request created at t0 whose pending time ends at t0+d.
func pending(id string, who broker.Identity, d time.Duration) *broker.Request {
	return &broker.Request{ID: id, Kind: broker.KindAccess, Requester: who, Scopes: []string{"model:gpt-4o"}, State: broker.StatePending,
		CreatedAt: t0, PendingUntil: t0.Add(d), TTL: time.Hour}
}

// approved is a grant approved at t0 that expires at t0+d.
func approved(id string, who broker.Identity, d time.Duration) *broker.Request {
	r := pending(id, who, time.Hour)
	r.State, r.ApprovedAt, r.ExpiresAt = broker.StateApproved, at(0), at(d)
	return r
}

// ended is a request in state st that ended at t0+d.
func ended(id string, who broker.Identity, st broker.State, d time.Duration) *broker.Request {
	r := pending(id, who, time.Hour)
	r.State, r.EndedAt = st, at(d)
	return r
}

func create(t *testing.T, s broker.Store, rs ...*broker.Request) {
	t.Helper()
	for _, r := range rs {
		if err := s.CreateRequest(context.Background(), r); err != nil {
			t.Fatalf("create %s: %v", r.ID, err)
		}
	}
}

func update(t *testing.T, s broker.Store, id string, fn func(*broker.Request)) {
	t.Helper()
	if _, err := s.UpdateRequest(context.Background(), id, func(r *broker.Request) error { fn(r); return nil }); err != nil {
		t.Fatalf("update %s: %v", id, err)
	}
}

// ids returns a function of a lookup's results: the sorted ids, failing
// the test on an error.
func ids(t *testing.T) func([]*broker.Request, error) []string {
	return func(rs []*broker.Request, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, 0, len(rs))
		for _, r := range rs {
			out = append(out, r.ID)
		}
		slices.Sort(out)
		return out
	}
}

func want(t *testing.T, what string, got []string, exp ...string) {
	t.Helper()
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		t.Errorf("%s: got %v, want %v", what, got, exp)
	}
}

func roundTripAndCAS(t *testing.T, s broker.Store) {
	ctx := context.Background()
	in := approved("req_1", alice, 30*time.Minute)
	create(t, s, in)
	got, err := s.GetRequest(ctx, "req_1")
	if err != nil || got.Requester.Subject != "alice" || !got.ExpiresAt.Equal(*in.ExpiresAt) || got.Scopes[0] != "model:gpt-4o" {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if _, err := s.GetRequest(ctx, "nope"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := s.UpdateRequest(ctx, "nope", func(*broker.Request) error { return nil }); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	refuse := errors.New("refused")
	if _, err := s.UpdateRequest(ctx, "req_1", func(r *broker.Request) error { r.State = broker.StateRevoked; return refuse }); !errors.Is(err, refuse) {
		t.Fatal(err)
	}
	if got, _ := s.GetRequest(ctx, "req_1"); got.State != broker.StateApproved {
		t.Fatalf("refused update leaked: %s", got.State)
	}
	// ... and left the indexes alone.
	want(t, "approved after a refused update", ids(t)(s.RequestsInState(ctx, broker.StateApproved, nil)), "req_1")
	want(t, "revoked after a refused update", ids(t)(s.RequestsInState(ctx, broker.StateRevoked, nil)))
	r, err := s.UpdateRequest(ctx, "req_1", func(r *broker.Request) error { r.State = broker.StateRevoked; return nil })
	if err != nil || r.State != broker.StateRevoked {
		t.Fatalf("update: %v %+v", err, r)
	}
	// Creating again under the same id replaces the record and its index
	// entries (a retried batch).
	create(t, s, pending("req_1", alice, time.Hour))
	want(t, "revoked after re-create", ids(t)(s.RequestsInState(ctx, broker.StateRevoked, nil)))
	want(t, "pending after re-create", ids(t)(s.RequestsInState(ctx, broker.StatePending, nil)), "req_1")
}

// heldCallRecord is a call a prompt rule held (broker.HoldPrompt), with
// every field of its hold set.
func heldCallRecord(id string) *broker.Request {
	r := pending(id, alice, 10*time.Minute)
	r.Kind, r.Scopes = broker.KindPrompt, nil
	r.Prompt = &broker.PromptHold{Rule: "destructive-sql", Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions",
		Excerpt: "[found in messages[0] (user)]\nDROP TABLE users", Matches: []broker.HeldMatch{{Where: []string{"messages[0] (user)"}, Text: "DROP TABLE users"}},
		SHA256: "ab", CallSHA256: "cd", GrantID: "req_grant", TokenID: "jti_held", Tool: "run_sql", Arguments: `{"q":"DROP TABLE users"}`,
		AlsoApprovedBy: []policy.Subjects{{Groups: []string{"dba"}}}, AlsoRules: []string{"prod-data"}}
	return r
}

// A held call keeps its whole hold, the token it was made with included
// (the prompt.* events the broker writes when its grant ends name it),
// through every read and update.
func heldCall(t *testing.T, s broker.Store) {
	ctx := context.Background()
	in := heldCallRecord("held_1")
	create(t, s, in)
	same := func(what string, r *broker.Request) {
		t.Helper()
		if r.Kind != broker.KindPrompt || !reflect.DeepEqual(r.Prompt, in.Prompt) {
			t.Fatalf("%s: held call %+v, want %+v", what, r.Prompt, in.Prompt)
		}
	}
	got, err := s.GetRequest(ctx, "held_1")
	if err != nil {
		t.Fatal(err)
	}
	same("GetRequest", got)
	rs, err := s.RequestsInState(ctx, broker.StatePending, &alice)
	if err != nil || len(rs) != 1 {
		t.Fatalf("RequestsInState: %v %+v", err, rs)
	}
	same("RequestsInState", rs[0])
	var seen *broker.Request
	got, err = s.UpdateRequest(ctx, "held_1", func(r *broker.Request) error {
		seen = r
		r.State, r.EndedAt, r.EndReason = broker.StateExpired, at(time.Minute), "grant req_grant was revoked or ended early"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	same("UpdateRequest's function", seen)
	same("UpdateRequest", got)
	if got, err = s.GetRequest(ctx, "held_1"); err != nil || got.State != broker.StateExpired {
		t.Fatalf("after the update: %v %+v", err, got)
	}
	same("GetRequest after the update", got)
}

func inState(t *testing.T, s broker.Store) {
	ctx := context.Background()
	create(t, s,
		pending("p_alice", alice, time.Hour), pending("p_bob", bob, time.Hour),
		approved("a_alice", alice, time.Hour), approved("a_bob", bob, time.Hour),
		ended("d_alice", alice, broker.StateDenied, 0))
	want(t, "pending", ids(t)(s.RequestsInState(ctx, broker.StatePending, nil)), "p_alice", "p_bob")
	want(t, "approved", ids(t)(s.RequestsInState(ctx, broker.StateApproved, nil)), "a_alice", "a_bob")
	want(t, "alice's approved", ids(t)(s.RequestsInState(ctx, broker.StateApproved, &alice)), "a_alice")
	want(t, "bob's pending", ids(t)(s.RequestsInState(ctx, broker.StatePending, &bob)), "p_bob")
	want(t, "carol's pending", ids(t)(s.RequestsInState(ctx, broker.StatePending, &carol)))
	want(t, "denied", ids(t)(s.RequestsInState(ctx, broker.StateDenied, nil)), "d_alice")

	// The state index follows every change of state.
	update(t, s, "p_alice", func(r *broker.Request) {
		r.State, r.ApprovedAt, r.ExpiresAt = broker.StateApproved, at(0), at(time.Hour)
	})
	update(t, s, "a_bob", func(r *broker.Request) { r.State, r.EndedAt, r.EndedBy = broker.StateRevoked, at(time.Minute), &bob })
	want(t, "pending after updates", ids(t)(s.RequestsInState(ctx, broker.StatePending, nil)), "p_bob")
	want(t, "approved after updates", ids(t)(s.RequestsInState(ctx, broker.StateApproved, nil)), "a_alice", "p_alice")
	want(t, "alice's approved after updates", ids(t)(s.RequestsInState(ctx, broker.StateApproved, &alice)), "a_alice", "p_alice")
	want(t, "bob's approved after updates", ids(t)(s.RequestsInState(ctx, broker.StateApproved, &bob)))
	want(t, "revoked after updates", ids(t)(s.RequestsInState(ctx, broker.StateRevoked, nil)), "a_bob")
	rs, err := s.RequestsInState(ctx, broker.StateRevoked, &bob)
	if err != nil || len(rs) != 1 || rs[0].EndedBy == nil || rs[0].EndedBy.Subject != "bob" {
		t.Fatalf("lookups return whole records: %v %+v", err, rs)
	}
}

// A principal is its issuer and subject, exactly: no prefix, separator or
// other issuer's subject of the same name matches.
func principalsAreExact(t *testing.T, s broker.Store) {
	ctx := context.Background()
	odd := []broker.Identity{
		{Subject: "alice", Issuer: "corp"},
		{Subject: "alice", Issuer: "github"},
		{Subject: "alic", Issuer: "corp"},
		{Subject: "alice2", Issuer: "corp"},
		{Subject: "e", Issuer: "corpalic"},
		{Subject: "a\x00b", Issuer: "corp"},
		{Subject: "a", Issuer: "corp\x00b"},
		{Subject: "", Issuer: "corp"},
	}
	for i, who := range odd {
		create(t, s, approved(fmt.Sprintf("req_%d", i), who, time.Hour))
	}
	for i, who := range odd {
		want(t, fmt.Sprintf("approved of %q@%q", who.Subject, who.Issuer), ids(t)(s.RequestsInState(ctx, broker.StateApproved, &who)), fmt.Sprintf("req_%d", i))
		want(t, fmt.Sprintf("requests of %q@%q", who.Subject, who.Issuer), ids(t)(s.RequestsOf(ctx, who)), fmt.Sprintf("req_%d", i))
	}
}

func requestsOf(t *testing.T, s broker.Store) {
	ctx := context.Background()
	create(t, s, pending("mine", alice, time.Hour), pending("reviewed", carol, time.Hour), pending("ended", carol, time.Hour), pending("other", carol, time.Hour))
	update(t, s, "reviewed", func(r *broker.Request) {
		r.Reviews = append(r.Reviews, broker.Review{Reviewer: alice, Approve: true, At: t0}, broker.Review{Reviewer: bob, Approve: true, At: t0})
	})
	update(t, s, "ended", func(r *broker.Request) { r.State, r.EndedAt, r.EndedBy = broker.StateRevoked, at(0), &alice })
	want(t, "alice's", ids(t)(s.RequestsOf(ctx, alice)), "mine", "reviewed", "ended")
	want(t, "bob's", ids(t)(s.RequestsOf(ctx, bob)), "reviewed")
	want(t, "carol's", ids(t)(s.RequestsOf(ctx, carol)), "reviewed", "ended", "other")
}

func due(t *testing.T, s broker.Store) {
	ctx := context.Background()
	create(t, s,
		pending("p_early", alice, time.Minute), pending("p_exact", alice, 2*time.Minute), pending("p_late", alice, time.Hour),
		approved("a_early", alice, time.Minute), approved("a_late", alice, time.Hour),
		ended("d_old", alice, broker.StateDenied, -time.Hour), ended("x_old", alice, broker.StateExpired, -time.Hour))
	want(t, "due at t0", ids(t)(s.DueRequests(ctx, t0)))
	want(t, "due at t0+2m", ids(t)(s.DueRequests(ctx, t0.Add(2*time.Minute))), "p_early", "p_exact", "a_early")
	want(t, "due at t0+2m-1ns", ids(t)(s.DueRequests(ctx, t0.Add(2*time.Minute-1))), "p_early", "a_early")
	// Approving moves a request's deadline from PendingUntil to ExpiresAt;
	// ending it takes it out of the sweep.
	update(t, s, "p_early", func(r *broker.Request) {
		r.State, r.ApprovedAt, r.ExpiresAt = broker.StateApproved, at(0), at(3*time.Hour)
	})
	update(t, s, "a_early", func(r *broker.Request) { r.State, r.EndedAt = broker.StateExpired, at(time.Minute) })
	want(t, "due at t0+2m after updates", ids(t)(s.DueRequests(ctx, t0.Add(2*time.Minute))), "p_exact")
	want(t, "due at t0+2h", ids(t)(s.DueRequests(ctx, t0.Add(2*time.Hour))), "p_exact", "p_late", "a_late")
	want(t, "due at t0+3h", ids(t)(s.DueRequests(ctx, t0.Add(3*time.Hour))), "p_early", "p_exact", "p_late", "a_late")
}

func grantsExpiringAfter(t *testing.T, s broker.Store) {
	ctx := context.Background()
	create(t, s, approved("live", alice, time.Hour), approved("soon", alice, time.Minute), approved("revoked", alice, time.Hour),
		pending("never", alice, 2*time.Hour), ended("denied", alice, broker.StateDenied, 0))
	update(t, s, "revoked", func(r *broker.Request) { r.State, r.EndedAt = broker.StateRevoked, at(0) })
	want(t, "after t0", ids(t)(s.GrantsExpiringAfter(ctx, t0)), "live", "soon", "revoked")
	want(t, "after t0+1m", ids(t)(s.GrantsExpiringAfter(ctx, t0.Add(time.Minute))), "live", "revoked")
	want(t, "after t0+1h", ids(t)(s.GrantsExpiringAfter(ctx, t0.Add(time.Hour))))
}

func prune(t *testing.T, s broker.Store) {
	ctx := context.Background()
	old := -48 * time.Hour
	create(t, s,
		ended("denied", alice, broker.StateDenied, old), ended("expired", alice, broker.StateExpired, old),
		ended("recent", alice, broker.StateDenied, -time.Minute),
		pending("pending_old", alice, old), // overdue, not yet swept: never pruned
		approved("approved_old", alice, old),
		approved("revoked_live", alice, time.Hour), approved("revoked_done", alice, old+time.Hour))
	update(t, s, "revoked_live", func(r *broker.Request) { r.State, r.EndedAt, r.EndedBy = broker.StateRevoked, at(old), &bob })
	update(t, s, "revoked_done", func(r *broker.Request) { r.State, r.EndedAt, r.EndedBy = broker.StateRevoked, at(old), &bob })
	update(t, s, "denied", func(r *broker.Request) {
		r.Reviews = append(r.Reviews, broker.Review{Reviewer: carol, At: *r.EndedAt})
		r.EndedBy = &carol
	})

	n, err := s.PruneRequests(ctx, t0.Add(-time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("pruned %d (%v), want 3: denied, expired, revoked_done", n, err)
	}
	for _, id := range []string{"denied", "expired", "revoked_done"} {
		if _, err := s.GetRequest(ctx, id); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("%s not pruned: %v", id, err)
		}
	}
	for _, id := range []string{"recent", "pending_old", "approved_old", "revoked_live"} {
		if _, err := s.GetRequest(ctx, id); err != nil {
			t.Errorf("%s pruned: %v", id, err)
		}
	}
	// The indexes forget pruned requests.
	want(t, "denied after prune", ids(t)(s.RequestsInState(ctx, broker.StateDenied, nil)), "recent")
	want(t, "revoked after prune", ids(t)(s.RequestsInState(ctx, broker.StateRevoked, &alice)), "revoked_live")
	want(t, "alice's after prune", ids(t)(s.RequestsOf(ctx, alice)), "recent", "pending_old", "approved_old", "revoked_live")
	want(t, "carol's after prune", ids(t)(s.RequestsOf(ctx, carol)))
	want(t, "bob's after prune", ids(t)(s.RequestsOf(ctx, bob)), "revoked_live")
	want(t, "grants after prune", ids(t)(s.GrantsExpiringAfter(ctx, t0.Add(-72*time.Hour))), "approved_old", "revoked_live")
	if n, err := s.PruneRequests(ctx, t0.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("second prune: %d %v", n, err)
	}
	// revoked_live settles when its tokens would have expired.
	if n, err := s.PruneRequests(ctx, t0.Add(time.Hour+time.Nanosecond)); err != nil || n != 2 {
		t.Fatalf("prune after the grant's expiry: %d %v, want 2 (recent, revoked_live)", n, err)
	}
}

// Concurrent updates of one request all land (none is lost to a write
// over a stale read), and so do their index entries.
func concurrentUpdates(t *testing.T, s broker.Store) {
	ctx := context.Background()
	create(t, s, pending("busy", alice, time.Hour))
	const n = 8
	concurrently(t, n, func(i int) error {
		who := broker.Identity{Subject: fmt.Sprintf("reviewer%d", i), Issuer: "corp"}
		_, err := s.UpdateRequest(ctx, "busy", func(r *broker.Request) error {
			r.Reviews = append(r.Reviews, broker.Review{Reviewer: who, Approve: true, At: t0})
			return nil
		})
		return err
	})
	r, err := s.GetRequest(ctx, "busy")
	if err != nil || len(r.Reviews) != n {
		t.Fatalf("%d reviews after %d concurrent updates (%v)", len(r.Reviews), n, err)
	}
	for i := range n {
		who := broker.Identity{Subject: fmt.Sprintf("reviewer%d", i), Issuer: "corp"}
		want(t, "requests of "+who.Subject, ids(t)(s.RequestsOf(ctx, who)), "busy")
	}
}

// concurrently runs update(0..n-1) at once and fails t with every error:
// the suites' updates of one record from n writers, each of which must
// land (compare-and-swap, no lost update).
func concurrently(t *testing.T, n int, update func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = update(i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
