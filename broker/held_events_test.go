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

// heldIdentity is what names a held call in an event: the call (review),
// the grant it runs under, its model and, when the caller is the actor,
// who called with which token.
type heldIdentity struct {
	Review, Grant, Model     string
	Subject, Issuer, TokenID string
}

// identityOf is ev's heldIdentity; byCaller says whether the event's actor
// is the caller (prompt.* events), not a reviewer or pamctl itself.
func identityOf(ev audit.Event, byCaller bool) heldIdentity {
	id := heldIdentity{Review: ev.Review, Grant: ev.Grant, Model: ev.Model}
	if byCaller && ev.Actor != nil {
		id.Subject, id.Issuer, id.TokenID = ev.Actor.Subject, ev.Actor.Issuer, ev.Actor.TokenID
	}
	return id
}

// eventsOfHeld are the events about held call id, in order.
func eventsOfHeld(e *env, id string) []audit.Event {
	var out []audit.Event
	e.log.Range(context.Background(), 0, func(ev audit.Event) bool {
		if ev.Review == id || ev.Request == id {
			out = append(out, ev)
		}
		return true
	})
	return out
}

// Review (from the reviews of the field): a held call that ended with its
// grant on the revoke, sweep or reload path had a prompt.refused without
// the caller's token id (the stored held call did not keep it), while the
// one written when the waiting caller saw the grant end had it; the
// review events (request.approved, request.denied, request.expired) of a
// held call named neither its grant nor the call as a review. Every event
// of a held call, whichever path writes it, now names the call as
// prompt.held does: the review, the grant, the model, and (when the
// caller is the actor) the caller and the token.
func TestEveryEventOfAHeldCallNamesItAsTheHoldDoes(t *testing.T) {
	// The retry window: longer than the grant, but for the paths that
	// outlive it (retryWindow).
	const window, retryWindow = time.Hour, 10 * time.Second
	type paths struct {
		e             *env
		svc           *broker.Service
		alice, bob    broker.Identity
		g             *broker.Request
		hold          broker.Hold
		held          *broker.Request
		waiting       chan ended // nil: the caller stopped waiting
		approveOrDeny func(bool)
		releasedToken string // the token of the call prompt.released names, when not the hold's
	}
	for name, run := range map[string]func(p *paths) []audit.Type{
		"unwaited, its grant revoked": func(p *paths) []audit.Type {
			if _, err := p.svc.Revoke(context.Background(), p.alice, p.g.ID, false); err != nil {
				t.Fatal(err)
			}
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused, audit.TypePromptRefused}
		},
		"unwaited, its grant revoked by the admin": func(p *paths) []audit.Type {
			if _, err := p.svc.Revoke(context.Background(), broker.AdminIdentity, p.g.ID, true); err != nil {
				t.Fatal(err)
			}
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused, audit.TypePromptRefused}
		},
		"unwaited, its grant past its ttl": func(p *paths) []audit.Type {
			p.e.clock.Add(p.g.ExpiresAt.Sub(p.e.clock.Now()) + time.Second)
			if err := p.svc.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused, audit.TypePromptRefused}
		},
		"unwaited, its grant ended by a reload": func(p *paths) []audit.Type {
			p.svc.SetPolicies(policy.Set{testPolicies[0], testPolicies[1], testPolicies[3]})
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused, audit.TypePromptRefused}
		},
		"unwaited, past its retry window": func(p *paths) []audit.Type {
			p.e.clock.Add(retryWindow + time.Second)
			if err := p.svc.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused, audit.TypeRequestExpired}
		},
		"approved late, released on the retry": func(p *paths) []audit.Type {
			p.approveOrDeny(true)
			hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if r, err := p.svc.HoldPrompt(hctx, p.hold); err != nil || r.State != broker.StateApproved || r.ID != p.held.ID {
				t.Fatalf("retry: %v %+v", err, r)
			}
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused, audit.TypeRequestApproved, audit.TypePromptReleased}
		},
		"approved late, unspent past the retry window": func(p *paths) []audit.Type {
			p.approveOrDeny(true)
			p.e.clock.Add(retryWindow + time.Second)
			if err := p.svc.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused, audit.TypeRequestApproved, audit.TypeRequestExpired}
		},
		"waited, approved": func(p *paths) []audit.Type {
			p.approveOrDeny(true)
			return []audit.Type{audit.TypePromptHeld, audit.TypeRequestApproved, audit.TypePromptReleased}
		},
		"waited, denied": func(p *paths) []audit.Type {
			p.approveOrDeny(false)
			return []audit.Type{audit.TypePromptHeld, audit.TypeRequestDenied}
		},
		"waited, its grant revoked": func(p *paths) []audit.Type {
			if _, err := p.svc.Revoke(context.Background(), p.alice, p.g.ID, false); err != nil {
				t.Fatal(err)
			}
			return []audit.Type{audit.TypePromptHeld, audit.TypePromptRefused}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			window := window
			if strings.Contains(name, "retry") {
				window = retryWindow
			}
			svc, err := broker.New(ctx, broker.Config{Store: e.db, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: e.log,
				Policies: testPolicies, Rules: testRules, Now: e.clock.Now, PromptRetryWindow: window})
			if err != nil {
				t.Fatal(err)
			}
			p := &paths{e: e, svc: svc, alice: e.login("alice", "ml"), bob: e.login("bob", "security")}
			p.g = liveGrant(t, e, p.alice, time.Minute)
			p.hold = dropTableHold(p.alice, p.g.ID)
			p.hold.TokenID = "jti_h4_held_call"
			p.approveOrDeny = func(approve bool) {
				p.bob.AuthTime = e.clock.Now()
				if _, err := svc.Review(ctx, p.bob, p.held.ID, approve, "", nil); err != nil {
					t.Fatal(err)
				}
			}
			if strings.HasPrefix(name, "waited") {
				p.held, p.waiting = holdInBackground(t, svc, p.bob, p.hold, 30*time.Second)
			} else {
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				r, err := svc.HoldPrompt(short, p.hold)
				cancel()
				if err != nil || r.State != broker.StatePending {
					t.Fatalf("hold: %v %+v", err, r)
				}
				p.held = r
			}
			types := run(p)
			if p.waiting != nil {
				select {
				case got := <-p.waiting:
					if got.err != nil {
						t.Fatal(got.err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the held call still waits")
				}
			}
			evs := eventsOfHeld(e, p.held.ID)
			var got []audit.Type
			for _, ev := range evs {
				got = append(got, ev.Type)
			}
			if len(got) != len(types) {
				t.Fatalf("events of the held call: %v; want %v", got, types)
			}
			for i := range got {
				if got[i] != types[i] {
					t.Fatalf("events of the held call: %v; want %v", got, types)
				}
			}
			want := identityOf(evs[0], true) // prompt.held, from the proxy's hold
			if want.TokenID != p.hold.TokenID || want.Review != p.held.ID || want.Grant != p.g.ID || want.Model != p.hold.Model || want.Subject != "alice" {
				t.Fatalf("prompt.held names the call as %+v", want)
			}
			for _, ev := range evs[1:] {
				byCaller := ev.Type == audit.TypePromptRefused || ev.Type == audit.TypePromptReleased
				w := want
				if !byCaller {
					w.Subject, w.Issuer, w.TokenID = "", "", ""
				}
				if got := identityOf(ev, byCaller); got != w {
					t.Errorf("%s (%s) names the held call as %+v; want %+v as prompt.held does", ev.Type, ev.Decision, got, w)
				}
			}
		})
	}
}
