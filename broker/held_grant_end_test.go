package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/notify"
	"github.com/pamctl/pamctl/broker/policy"
)

// ended is what a HoldPrompt returned and how long after the grant ended.
type ended struct {
	r   *broker.Request
	err error
	at  time.Time
}

// holdInBackground holds hold on svc as the proxy does (the agent's client
// waits up to wait) and returns the held call once approvers see it, and
// a channel with what HoldPrompt then returns.
func holdInBackground(t *testing.T, svc *broker.Service, approver broker.Identity, hold broker.Hold, wait time.Duration) (*broker.Request, chan ended) {
	t.Helper()
	ctx := context.Background()
	before := map[string]bool{}
	rs, _ := svc.List(ctx, approver, true)
	for _, r := range rs {
		before[r.ID] = true
	}
	done := make(chan ended, 1)
	go func() {
		hctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		r, err := svc.HoldPrompt(hctx, hold)
		done <- ended{r, err, time.Now()}
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		rs, _ := svc.List(ctx, approver, true)
		for _, r := range rs {
			if r.Kind == broker.KindPrompt && r.Prompt.GrantID == hold.GrantID && !before[r.ID] {
				return r, done
			}
		}
	}
	t.Fatal("the held call never reached the queue")
	return nil, nil
}

// refusals counts the prompt.refused events of held call id, by decision.
func refusals(e *env, id string) map[string]int {
	n := map[string]int{}
	for _, ev := range e.eventsOf(audit.TypePromptRefused) {
		if ev.Review == id {
			n[ev.Decision]++
		}
	}
	return n
}

// inQueue reports whether held call id is in who's pending list.
func inQueue(t *testing.T, svc *broker.Service, who broker.Identity, id string) bool {
	t.Helper()
	rs, err := svc.List(context.Background(), who, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// Red team (black box): revoking a grant ("stop that agent") left the
// calls it had waiting for an approver waiting: the agent's client hung
// until proxy.hold_timeout and was then told nobody released it in time,
// approvers still saw the call in their queue, and the trail said
// "timeout". A held call now ends as soon as its grant does, however the
// grant ends: the caller is told the grant ended (EndReason), the trail
// has one prompt.refused with decision grant_ended and the reason, the
// call leaves the approvers' queue, and they are notified as for any held
// call that ends without a release.
func TestHeldCallEndsWhenItsGrantEnds(t *testing.T) {
	for name, end := range map[string]func(e *env, svc *broker.Service, alice broker.Identity, g *broker.Request){
		"revoked by its owner": func(e *env, svc *broker.Service, alice broker.Identity, g *broker.Request) {
			if _, err := svc.Revoke(context.Background(), alice, g.ID, false); err != nil {
				e.t.Fatal(err)
			}
		},
		"revoked by the admin": func(e *env, svc *broker.Service, _ broker.Identity, g *broker.Request) {
			if _, err := svc.Revoke(context.Background(), broker.AdminIdentity, g.ID, true); err != nil {
				e.t.Fatal(err)
			}
		},
		"past its ttl": func(e *env, svc *broker.Service, _ broker.Identity, g *broker.Request) {
			e.clock.Add(g.ExpiresAt.Sub(e.clock.Now()) + time.Second)
			if err := svc.Sweep(context.Background()); err != nil { // serve sweeps every 2 s
				e.t.Fatal(err)
			}
		},
		"ended by a reload": func(_ *env, svc *broker.Service, _ broker.Identity, _ *broker.Request) {
			svc.SetPolicies(policy.Set{testPolicies[0], testPolicies[1], testPolicies[3]})
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			hooks := &hookRec{}
			svc, err := broker.New(ctx, broker.Config{Store: e.db, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: e.log,
				Policies: testPolicies, Rules: testRules, Now: e.clock.Now, Notifier: broker.WebhookNotifier{Hooks: []broker.Webhook{hooks}}})
			if err != nil {
				t.Fatal(err)
			}
			alice := e.login("alice", "ml")
			bob := e.login("bob", "security")
			g := liveGrant(t, e, alice, time.Minute)
			held, done := holdInBackground(t, svc, bob, dropTableHold(alice, g.ID), 30*time.Second)
			endedAt := time.Now()
			end(e, svc, alice, g)
			var got ended
			select {
			case got = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the held call still waits after its grant ended (it would wait out the hold timeout)")
			}
			if got.err != nil || got.r == nil || got.r.ID != held.ID || got.r.State != broker.StateExpired || !strings.Contains(got.r.EndReason, g.ID) {
				t.Fatalf("held call after its grant ended: %v %+v; want expired, naming the grant", got.err, got.r)
			}
			t.Logf("ended %s after the grant", got.at.Sub(endedAt).Round(time.Millisecond))
			if n := refusals(e, held.ID); n["grant_ended"] != 1 || len(n) != 1 {
				t.Fatalf("prompt.refused events of the held call: %v; want one grant_ended", n)
			}
			for _, ev := range e.eventsOf(audit.TypePromptRefused) {
				if ev.Review == held.ID && (ev.Grant != g.ID || len(ev.Reasons) != 2 || ev.Reasons[0] != "destructive-sql" || !strings.Contains(ev.Reasons[1], g.ID)) {
					t.Fatalf("prompt.refused %+v: want the grant, the rule and why", ev)
				}
			}
			if inQueue(t, svc, bob, held.ID) {
				t.Fatal("the dead call is still in the approver's queue")
			}
			bob.AuthTime = e.clock.Now()
			if _, err := svc.Review(ctx, bob, held.ID, true, "", nil); code(err) != broker.CodeConflict || !strings.Contains(err.Error(), g.ID) {
				t.Fatalf("approving the dead call: %v; want a conflict naming the grant", err)
			}
			hooks.mu.Lock()
			defer hooks.mu.Unlock()
			var told bool
			for _, ev := range hooks.es {
				if ev.RequestID == held.ID && ev.Type == notify.TypeRequestExpired {
					told = told || strings.Contains(ev.Reason, g.ID)
				}
			}
			if !told {
				t.Fatalf("approvers were not told the held call ended with its grant: %+v", hooks.es)
			}
		})
	}
}

// Every call held on a grant ends with it; a call held on another grant
// of the same caller keeps waiting.
func TestHeldCallsOfOneGrantEndTogether(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	g, other := liveGrant(t, e, alice, time.Minute), liveGrant(t, e, alice, time.Minute)
	var ids []string
	var dones []chan ended
	for i, prompt := range []string{"DROP TABLE a", "DROP TABLE b", "DROP TABLE c"} {
		h := dropTableHold(alice, g.ID)
		h.Excerpt, h.SHA256 = prompt, strings.Repeat(string(rune('a'+i)), 64)
		r, done := holdInBackground(t, e.svc, bob, h, 30*time.Second)
		ids, dones = append(ids, r.ID), append(dones, done)
	}
	kept, keptDone := holdInBackground(t, e.svc, bob, dropTableHold(alice, other.ID), 30*time.Second)
	if _, err := e.svc.Revoke(ctx, alice, g.ID, false); err != nil {
		t.Fatal(err)
	}
	for i, done := range dones {
		select {
		case got := <-done:
			if got.r == nil || got.r.State != broker.StateExpired || got.r.ID != ids[i] {
				t.Fatalf("held call %d: %v %+v", i, got.err, got.r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("held call %d of the revoked grant still waits", i)
		}
		if n := refusals(e, ids[i]); n["grant_ended"] != 1 || len(n) != 1 {
			t.Fatalf("prompt.refused of held call %d: %v", i, n)
		}
	}
	select {
	case got := <-keptDone:
		t.Fatalf("a call held on another grant ended with the revoked one: %v %+v", got.err, got.r)
	case <-time.After(200 * time.Millisecond):
	}
	if !inQueue(t, e.svc, bob, kept.ID) || len(refusals(e, kept.ID)) != 0 {
		t.Fatal("the call held on the live grant left the queue")
	}
	// It is still approvable, and released.
	if _, err := e.svc.Review(ctx, bob, kept.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	if got := <-keptDone; got.r == nil || got.r.State != broker.StateApproved || !got.r.Prompt.Used {
		t.Fatalf("the call on the live grant: %v %+v", got.err, got.r)
	}
}

// A call still pending after its caller stopped waiting (the hold timed
// out; a late approval would allow one retry) leaves the queue too when
// its grant ends: nobody is asked to approve a call nobody can send.
func TestUnwaitedHeldCallLeavesTheQueueWithItsGrant(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	g := liveGrant(t, e, alice, time.Minute)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	r, err := e.svc.HoldPrompt(short, dropTableHold(alice, g.ID))
	cancel()
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("hold: %v %+v", err, r)
	}
	if _, err := e.svc.Revoke(ctx, broker.AdminIdentity, g.ID, true); err != nil {
		t.Fatal(err)
	}
	if inQueue(t, e.svc, bob, r.ID) {
		t.Fatal("the held call of a revoked grant is still in the queue")
	}
	if n := refusals(e, r.ID); n["timeout"] != 1 || n["grant_ended"] != 1 || len(n) != 2 {
		t.Fatalf("prompt.refused of the held call: %v; want its timeout, then its end with the grant", n)
	}
}

// Revoking the grant while an approver approves its held call: exactly one
// outcome, recorded once, whichever comes first (rounds 0 and 1 put the
// revoke, then the approval, first; the others run them at once).
func TestRevokeRacingTheApproval(t *testing.T) {
	for i := range 8 {
		e := newEnv(t)
		ctx := context.Background()
		alice := e.login("alice", "ml")
		bob := e.login("bob", "security")
		g := liveGrant(t, e, alice, time.Minute)
		held, done := holdInBackground(t, e.svc, bob, dropTableHold(alice, g.ID), 30*time.Second)
		approve := func() { e.svc.Review(ctx, bob, held.ID, true, "", nil) }
		revoke := func() {
			if _, err := e.svc.Revoke(ctx, alice, g.ID, false); err != nil {
				t.Error(err)
			}
		}
		switch i {
		case 0:
			revoke()
			approve()
		case 1:
			approve()
			revoke()
		default:
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); approve() }()
			go func() { defer wg.Done(); revoke() }()
			wg.Wait()
		}
		var got ended
		select {
		case got = <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the held call still waits", i)
		}
		released := 0
		for _, ev := range e.eventsOf(audit.TypePromptReleased) {
			if ev.Review == held.ID {
				released++
			}
		}
		n := refusals(e, held.ID)
		switch {
		case got.r == nil:
			t.Fatalf("round %d: %v", i, got.err)
		case got.r.State == broker.StateApproved:
			if !got.r.Prompt.Used || released != 1 || len(n) != 0 {
				t.Fatalf("round %d: released %+v with %d releases and refusals %v", i, got.r, released, n)
			}
		default:
			if got.r.State != broker.StateExpired || released != 0 || n["grant_ended"] != 1 || len(n) != 1 {
				t.Fatalf("round %d: %s (%s) with %d releases and refusals %v; want expired, one grant_ended", i, got.r.State, got.r.EndReason, released, n)
			}
		}
		e.close()
	}
}

// A hostile agent sends the refused call again, the same bytes, on the
// ended grant: it is not held again, nobody is asked, and nothing is let
// through.
func TestResendAfterTheGrantEndedIsNotHeld(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	g := liveGrant(t, e, alice, time.Minute)
	hold := dropTableHold(alice, g.ID)
	held, done := holdInBackground(t, e.svc, bob, hold, 30*time.Second)
	if _, err := e.svc.Revoke(ctx, alice, g.ID, false); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got.r == nil || got.r.State != broker.StateExpired {
		t.Fatalf("held call: %v %+v", got.err, got.r)
	}
	heldEvents := len(e.eventsOf(audit.TypePromptHeld))
	for range 3 {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		r, err := e.svc.HoldPrompt(hctx, hold)
		cancel()
		if err != nil || r == nil || r.State != broker.StateExpired || !strings.Contains(r.EndReason, g.ID) || time.Since(start) > 2*time.Second {
			t.Fatalf("the same call again: %v %+v after %s; want refused at once", err, r, time.Since(start))
		}
	}
	if n := len(e.eventsOf(audit.TypePromptHeld)); n != heldEvents {
		t.Fatalf("the resent call was held again (%d prompt.held events, was %d)", n, heldEvents)
	}
	if len(e.eventsOf(audit.TypePromptReleased)) != 0 {
		t.Fatal("something was released")
	}
	if rs, _ := e.svc.List(ctx, bob, true); len(rs) != 0 {
		t.Fatalf("the approver's queue: %+v", rs)
	}
	if n := refusals(e, held.ID); n["grant_ended"] != 1 {
		t.Fatalf("refusals of the first call: %v", n)
	}
}
