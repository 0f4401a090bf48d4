package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// A refused approve or deny leaves a review.refused event (self-review, a
// non-approver's attempt on a real request, a stale login), with the
// reviewer's session and channel; a flood of refusals cannot flood the
// trail: one per reviewer, request and cause a minute, 32 a minute in all,
// and the next event written counts what was left out.
func TestReviewRefusalsAreAuditedAndBounded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	mallory := e.login("mallory", "ml")
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("request: %v %+v", err, r)
	}
	refused := func() []audit.Event { return e.eventsOf(audit.TypeReviewRefused) }

	// alice approves her own request: refused, and now in the trail.
	if _, err := e.svc.Review(ctx, alice, r.ID, true, "mine", nil); code(err) != broker.CodeForbidden {
		t.Fatalf("self-approval: %v", err)
	}
	ev := refused()
	if len(ev) != 1 {
		t.Fatalf("%d review.refused events after a self-approval", len(ev))
	}
	got := ev[0]
	if got.Actor == nil || got.Actor.Subject != "alice" || got.Request != r.ID || got.Target != "alice" || got.Decision != "refused" ||
		got.Details["cause"] != "self_review" || got.Details["action"] != "approve" ||
		got.Details["session"] == "" || got.Details["session"] != alice.Session || got.Details["via"] != "cli" || len(got.Reasons) != 1 {
		t.Fatalf("self-approval event: %+v", got)
	}
	// Again at once, and a deny of her own: one event per cause a minute.
	e.svc.Review(ctx, alice, r.ID, true, "", nil)
	e.svc.Review(ctx, alice, r.ID, false, "", nil)
	if n := len(refused()); n != 1 {
		t.Fatalf("repeats within the minute wrote %d events", n)
	}

	// mallory (no approver) on a request she cannot see: "no such
	// request" to her, a refusal in the trail; an id that does not exist
	// is nothing.
	if _, err := e.svc.Review(ctx, mallory, r.ID, false, "", nil); code(err) != broker.CodeNotFound {
		t.Fatalf("a non-approver's deny: %v", err)
	}
	if _, err := e.svc.Review(ctx, mallory, "req_nosuchrequest", true, "", nil); code(err) != broker.CodeNotFound {
		t.Fatalf("unknown id: %v", err)
	}
	ev = refused()
	if len(ev) != 2 || ev[1].Actor.Subject != "mallory" || ev[1].Details["cause"] != "not_approver" || ev[1].Details["action"] != "deny" || ev[1].Request != r.ID {
		t.Fatalf("non-approver events: %+v", ev)
	}
	// alice's two repeats are hers: mallory's event does not carry them.
	if s := ev[1].Details["suppressed"]; s != "" {
		t.Fatalf("mallory's event counts %s refusals that were alice's", s)
	}

	// bob, an approver with a stale login: a step-up refusal.
	bob := e.login("bob", "security")
	e.clock.Add(broker.DefaultReauthAfter + time.Minute)
	bob.AuthTime = e.clock.Now().Add(-broker.DefaultReauthAfter - time.Minute)
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); code(err) != broker.CodeStepUpRequired {
		t.Fatalf("stale approve: %v", err)
	}
	ev = refused()
	if len(ev) != 3 || ev[2].Details["cause"] != "step_up" || !strings.Contains(strings.Join(ev[2].Reasons, " "), "needs a login within the last 10m") {
		t.Fatalf("step-up event: %+v", ev)
	}

	// A flood: alice makes many requests and approves each herself. Per
	// minute at most MaxRefusalEventsPerReviewerPerMinute of hers are
	// written; her first of the next minute says how many were not.
	e.clock.Add(time.Minute)
	alice = e.login("alice", "ml")
	before := len(refused())
	const flood = 50
	for i := range flood {
		ri, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, Reason: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		e.svc.Review(ctx, alice, ri.ID, true, "", nil)
		e.svc.Review(ctx, alice, ri.ID, true, "", nil) // a repeat: left out
	}
	per := broker.MaxRefusalEventsPerReviewerPerMinute
	if n := len(refused()) - before; n != per {
		t.Fatalf("a flood of %d refusals wrote %d events in a minute, want %d", 2*flood, n, per)
	}
	e.clock.Add(time.Minute)
	alice = e.login("alice", "ml")
	e.svc.Review(ctx, alice, r.ID, true, "", nil)
	// Each event written counts those of its reviewer left out since
	// their one before (alice's first of the flood: her two repeats at
	// the start): in all, every refusal is either written or counted.
	ev = refused()
	left := 0
	for _, x := range ev[before:] {
		if s := x.Details["suppressed"]; s != "" {
			var n int
			fmt.Sscan(s, &n)
			left += n
		}
	}
	if ev[before].Details["suppressed"] != "2" {
		t.Errorf("alice's first event of the flood: %v, want her 2 repeats counted", ev[before].Details)
	}
	if len(ev)-before != per+1 || left != 2+2*flood-per {
		t.Fatalf("%d refusals: %d written, %d counted as left out; want %d and %d", 2*flood+1, len(ev)-before, left, per+1, 2+2*flood-per)
	}
}

// One reviewer's flood of refusals suppresses only their own: another
// person's refusal in the same minute is written, and carries no count of
// the flood; the flooder's own next event carries it.
func TestReviewRefusalBoundIsPerReviewer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	mallory := e.login("mallory", "ml")
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, Reason: "target"})
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("request: %v %+v", err, r)
	}
	refused := func() []audit.Event { return e.eventsOf(audit.TypeReviewRefused) }
	const flood = 36
	for i := range flood {
		ri, err := e.svc.CreateRequest(ctx, mallory, broker.Ask{Scopes: []string{"model:gpt-4o"}, Reason: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		e.svc.Review(ctx, mallory, ri.ID, true, "", nil)
	}
	per := broker.MaxRefusalEventsPerReviewerPerMinute
	if n := len(refused()); n != per {
		t.Fatalf("mallory's flood of %d wrote %d events, want %d", flood, n, per)
	}
	// alice, in the same minute, approves her own request: written, and
	// with no count of mallory's flood.
	if _, err := e.svc.Review(ctx, alice, r.ID, true, "", nil); code(err) != broker.CodeForbidden {
		t.Fatalf("alice's self-approval: %v", err)
	}
	ev := refused()
	if len(ev) != per+1 {
		t.Fatalf("alice's refusal after mallory's flood: %d events, want %d", len(ev), per+1)
	}
	if got := ev[per]; got.Actor.Subject != "alice" || got.Details["suppressed"] != "" {
		t.Fatalf("alice's refusal: actor %s, details %v; want alice with no suppressed count", got.Actor.Subject, got.Details)
	}
	// The next minute, mallory's next refusal carries her own count.
	e.clock.Add(time.Minute)
	mallory = e.login("mallory", "ml")
	alice = e.login("alice", "ml")
	e.svc.Review(ctx, alice, r.ID, false, "", nil)
	ri, _ := e.svc.CreateRequest(ctx, mallory, broker.Ask{Scopes: []string{"model:gpt-4o"}, Reason: "again"})
	e.svc.Review(ctx, mallory, ri.ID, true, "", nil)
	ev = refused()
	if len(ev) != per+3 {
		t.Fatalf("%d events, want %d", len(ev), per+3)
	}
	if got := ev[per+1]; got.Actor.Subject != "alice" || got.Details["suppressed"] != "" {
		t.Errorf("alice's next refusal: %s %v, want no suppressed count", got.Actor.Subject, got.Details)
	}
	if got := ev[per+2]; got.Actor.Subject != "mallory" || got.Details["suppressed"] != fmt.Sprint(flood-per) {
		t.Errorf("mallory's next refusal: %s %v, want suppressed %d", got.Actor.Subject, got.Details, flood-per)
	}
}

// Approvals, denials, tokens and revocations name the session and channel
// they came from; token.issued names the token's jti, so a proxy.call's
// actor.token_id traces to the session that minted it.
func TestEventsNameTheSessionAndTheToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	if alice.Session == "" || alice.Via != broker.ViaCLI {
		t.Fatalf("authenticated identity: session %q via %q", alice.Session, alice.Via)
	}
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "ok", nil); err != nil {
		t.Fatal(err)
	}
	r2, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-mini"}})
	if _, err := e.svc.Review(ctx, bob, r2.ID, false, "no", nil); err != nil {
		t.Fatal(err)
	}
	raw, _, err := e.svc.Token(ctx, alice, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil || claims.ID == "" {
		t.Fatalf("token: %v %+v", err, claims)
	}
	if _, err := e.svc.Revoke(ctx, bob, r.ID, false); err != nil {
		t.Fatal(err)
	}
	other := e.session("alice", audit.Client{}, "ml")
	if _, err := e.svc.RevokeSessions(ctx, alice, false, broker.RevokeSessions{ID: other.ID}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		typ      audit.Type
		who      broker.Identity
		key      string
		tokenID  string
		detailOf string
	}{
		{audit.TypeRequestApproved, bob, "session", "", ""},
		{audit.TypeRequestDenied, bob, "session", "", ""},
		{audit.TypeTokenIssued, alice, "session", claims.ID, ""},
		{audit.TypeGrantRevoked, bob, "session", "", ""},
		{audit.TypeSessionRevoked, alice, "actor_session", "", other.ID},
	} {
		ev := e.eventsOf(c.typ)
		if len(ev) != 1 {
			t.Fatalf("%s: %d events", c.typ, len(ev))
		}
		d := ev[0].Details
		if d[c.key] != c.who.Session || d["via"] != "cli" {
			t.Errorf("%s: details %v, want %s=%s via=cli", c.typ, d, c.key, c.who.Session)
		}
		if c.tokenID != "" && d["token_id"] != c.tokenID {
			t.Errorf("%s: token_id %q, want the jti %q", c.typ, d["token_id"], c.tokenID)
		}
		if c.detailOf != "" && d["session"] != c.detailOf {
			t.Errorf("%s: session %q, want the ended one %q", c.typ, d["session"], c.detailOf)
		}
	}
	// The admin socket says so; an in-process caller names nothing.
	if _, err := e.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{User: "bob"}); err != nil {
		t.Fatal(err)
	}
	ev := e.eventsOf(audit.TypeSessionRevoked)
	if d := ev[len(ev)-1].Details; d["actor_session"] != "" || d["via"] != "" {
		t.Errorf("an in-process admin revoke: %v", d)
	}
}

// The web page's calls name the web session and via web.
func TestWebSessionIdentityNamesItsSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	secret := strings.Repeat("w", 52)
	rec, err := e.svc.OpenWebSession(ctx, bob, e.clock.Now(), audit.Client{}, secret, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	web, _, err := e.svc.WebSession(ctx, secret)
	if err != nil || web.Session != rec.ID || web.Via != broker.ViaWeb || web.Session == bob.Session {
		t.Fatalf("web identity: %v session %q via %q", err, web.Session, web.Via)
	}
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if _, err := e.svc.Review(ctx, web, r.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	ev := e.eventsOf(audit.TypeRequestApproved)
	if d := ev[len(ev)-1].Details; d["session"] != rec.ID || d["via"] != "web" {
		t.Fatalf("web approval details: %v", d)
	}
}
