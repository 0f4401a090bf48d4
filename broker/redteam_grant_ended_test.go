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

// dropTableHold is the hold of one call, made under grant, that the
// destructive-sql rule holds.
func dropTableHold(caller broker.Identity, grant string) broker.Hold {
	return broker.Hold{Caller: caller, GrantID: grant, Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o-nano", Method: "POST", Endpoint: "/v1/chat/completions", Excerpt: "please DROP TABLE users",
		SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32)}
}

// liveGrant is an approved grant of who's for model:gpt-4o-nano (ttl 0:
// the policy's default).
func liveGrant(t *testing.T, e *env, who broker.Identity, ttl time.Duration) *broker.Request {
	t.Helper()
	g, err := e.svc.CreateRequest(context.Background(), who, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}, TTL: ttl})
	if err != nil || g.State != broker.StateApproved {
		t.Fatalf("grant: %v %+v", err, g)
	}
	return g
}

// liveGrantID is the id of a live grant of who's: the first one found, or
// a new one. A held call is approved and released only on a grant the
// broker knows and that stands.
func liveGrantID(t *testing.T, e *env, who broker.Identity) string {
	t.Helper()
	rs, err := e.db.RequestsInState(context.Background(), broker.StateApproved, &who)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Kind == broker.KindAccess {
			return r.ID
		}
	}
	return liveGrant(t, e, who, 0).ID
}

// heldOn starts a hold of a call made under grant, as the proxy does while
// the agent's HTTP client waits, and returns it once approvers can see it
// and a channel with what HoldPrompt returns.
func heldOn(t *testing.T, svc *broker.Service, caller, approver broker.Identity, grant string) (*broker.Request, chan *broker.Request) {
	t.Helper()
	ctx := context.Background()
	hold := dropTableHold(caller, grant)
	done := make(chan *broker.Request, 1)
	go func() {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, err := svc.HoldPrompt(hctx, hold)
		if err != nil {
			r = nil
		}
		done <- r
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		rs, _ := svc.List(ctx, approver, true)
		for _, r := range rs {
			if r.Kind == broker.KindPrompt && r.Prompt.GrantID == grant {
				return r, done
			}
		}
	}
	t.Fatal("the held call never reached the queue")
	return nil, nil
}

// Red team: a call is held while the agent waits (proxy.hold_timeout, 2
// minutes by default), and the proxy checked its token, revocation
// included, before it held it. The grant it runs under can end meanwhile:
// revoked (an incident: "stop that agent"), past its TTL, or ended by a
// policy reload. An approver who then releases the call sent it upstream
// on a grant that no longer exists: revoking a grant did not stop the call
// it had waiting. A held call whose grant has ended cannot be approved, and
// is not released: it ends with its grant (TestHeldCallEndsWhenItsGrantEnds),
// and approving it afterwards is a conflict that names the grant.
func TestRTHeldCallOfAnEndedGrantIsNotReleased(t *testing.T) {
	for name, end := range map[string]func(e *env, alice broker.Identity, g *broker.Request){
		"revoked by its owner": func(e *env, alice broker.Identity, g *broker.Request) {
			if _, err := e.svc.Revoke(context.Background(), alice, g.ID, false); err != nil {
				e.t.Fatal(err)
			}
		},
		"revoked by the admin": func(e *env, _ broker.Identity, g *broker.Request) {
			if _, err := e.svc.Revoke(context.Background(), broker.AdminIdentity, g.ID, true); err != nil {
				e.t.Fatal(err)
			}
		},
		"past its ttl": func(e *env, _ broker.Identity, g *broker.Request) {
			e.clock.Add(g.ExpiresAt.Sub(e.clock.Now()) + time.Second)
		},
		"ended by a reload": func(e *env, _ broker.Identity, _ *broker.Request) {
			e.svc.SetPolicies(policy.Set{testPolicies[0], testPolicies[1], testPolicies[3]})
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			alice := e.login("alice", "ml")
			g := liveGrant(t, e, alice, time.Minute)
			held, done := heldOn(t, e.svc, alice, alice, g.ID)
			_ = held
			bob := e.login("bob", "security")
			end(e, alice, g)
			bob.AuthTime = e.clock.Now() // logged in just now (the clock may have moved)
			_, err := e.svc.Review(ctx, bob, held.ID, true, "looks fine", nil)
			if code(err) != broker.CodeConflict || !strings.Contains(err.Error(), g.ID) {
				t.Errorf("approving a held call of an ended grant: %v; want a conflict that names the grant", err)
			}
			if r := <-done; r == nil || r.State == broker.StateApproved {
				t.Fatalf("the held call of an ended grant was released: %+v", r)
			}
		})
	}
}

// hookSink runs fn after each event it appends.
type hookSink struct {
	audit.Sink
	fn func(e *audit.Event)
}

func (h hookSink) Append(ctx context.Context, e *audit.Event) error {
	err := h.Sink.Append(ctx, e)
	h.fn(e)
	return err
}

// Red team, the race: the grant ends after the approval is recorded and
// before the waiting call is released (or its retry is let through). The
// release itself checks the grant.
func TestRTGrantEndingAfterTheApprovalReleasesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	g := liveGrant(t, e, alice, 0)
	// A second broker on the same store (another replica) whose trail
	// revokes the grant as soon as a held call's approval is recorded.
	var svc *broker.Service
	armed := true
	sink := hookSink{Sink: e.log, fn: func(ev *audit.Event) {
		if ev.Type == audit.TypeRequestApproved && ev.Request != g.ID && armed {
			armed = false
			if _, err := svc.Revoke(context.WithoutCancel(ctx), broker.AdminIdentity, g.ID, true); err != nil {
				t.Error(err)
			}
		}
	}}
	svc, err := broker.New(ctx, broker.Config{Store: e.db, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: sink, Policies: testPolicies, Rules: testRules, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	held, done := heldOn(t, svc, alice, bob, g.ID)
	if _, err := svc.Review(ctx, bob, held.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	if armed {
		t.Fatal("the hook did not run")
	}
	if r := <-done; r == nil || r.State == broker.StateApproved || (r.Prompt != nil && r.Prompt.Used) {
		t.Fatalf("a call was released on a grant revoked before the release: %+v", r)
	}
}

// Red team, the late approval: the caller gave up waiting, an approver
// approved (the grant was live), then the grant ended. The one retry that
// approval allows is not let through on the ended grant.
func TestRTRetryOfAnEndedGrantIsNotLetThrough(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	g := liveGrant(t, e, alice, 0)
	hold := dropTableHold(alice, g.ID)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	r, err := e.svc.HoldPrompt(short, hold)
	cancel()
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("hold: %v %+v", err, r)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Revoke(ctx, alice, g.ID, false); err != nil {
		t.Fatal(err)
	}
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if again, _ := e.svc.HoldPrompt(short, hold); again == nil || again.ID == r.ID || again.State == broker.StateApproved {
		t.Fatalf("the retry of a call approved before its grant was revoked went through: %+v", again)
	}
}

// A call on a grant that has already ended is not held at all (review: a
// retry after a late approval on an ended grant was held again, pinging
// approvers who could not approve it while the agent waited the whole hold
// timeout): refused at once, with the reason, and nothing reaches the queue.
func TestHoldOnAnEndedGrantIsRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	g := liveGrant(t, e, alice, time.Minute)
	if _, err := e.svc.Revoke(ctx, alice, g.ID, false); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	r, err := e.svc.HoldPrompt(hctx, dropTableHold(alice, g.ID))
	if err != nil || r == nil || r.State != broker.StateExpired || !strings.Contains(r.EndReason, g.ID) || time.Since(start) > 2*time.Second {
		t.Fatalf("hold on a revoked grant: %v %+v after %s", err, r, time.Since(start))
	}
	rs, _ := e.svc.List(ctx, alice, true)
	for _, q := range rs {
		if q.Kind == broker.KindPrompt {
			t.Fatalf("a call on an ended grant reached the queue: %+v", q)
		}
	}
}
