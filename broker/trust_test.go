package broker_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// TestUntrustedIssuerEndsSessionsAndGrants: an issuer the broker no
// longer trusts (removed from the config, or the dev issuer of a data dir
// once served with --dev, then served without it) vouches for nothing any
// more. Its identities' sessions are refused, their grants end at start
// (and their tokens are refused by the proxy), and so do grants one of
// them approved; other issuers' sessions and grants stand.
func TestUntrustedIssuerEndsSessionsAndGrants(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dev := otherIssuer(t, e)
	corp := e.idv
	trust(t, e, "dev", dev)
	login := func(iss *devissuer.Issuer, want, sub string, groups ...string) (broker.Identity, string) {
		t.Helper()
		return loginAt(t, e, iss, want, sub, groups...)
	}
	eve, eveSession := login(dev, "dev", "eve", "ml")
	mallory, _ := login(dev, "dev", "mallory", "security")
	alice, _ := login(e.iss, "corp", "alice", "ml")
	carol, carolSession := login(e.iss, "corp", "carol", "ml")

	selfServe := broker.Ask{Scopes: []string{"model:gpt-4o-nano"}}
	eveGrant, err := e.svc.CreateRequest(ctx, eve, selfServe)
	if err != nil || eveGrant.State != broker.StateApproved {
		t.Fatalf("eve's grant: %+v %v", eveGrant, err)
	}
	carolGrant, _ := e.svc.CreateRequest(ctx, carol, selfServe)
	// Alice (corp) asked; mallory (dev) approved.
	aliceGrant, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if r, err := e.svc.Review(ctx, mallory, aliceGrant.ID, true, "", nil); err != nil || r.State != broker.StateApproved {
		t.Fatalf("mallory's approval: %+v %v", r, err)
	}
	for _, g := range []struct {
		who broker.Identity
		id  string
	}{{eve, eveGrant.ID}, {alice, aliceGrant.ID}, {carol, carolGrant.ID}} {
		if _, _, err := e.svc.Token(ctx, g.who, g.id); err != nil {
			t.Fatalf("token of %s before: %v", g.id, err)
		}
	}

	// Served again with corp alone.
	e.idv = corp
	e.restart()
	if _, _, err := e.svc.Authenticate(ctx, eveSession); code(err) != broker.CodeUnauthenticated || !strings.Contains(err.Error(), `identity provider "dev" at `+dev.URL()+` is no longer trusted`) {
		t.Fatalf("eve's dev session after: %v", err)
	}
	if _, _, err := e.svc.Authenticate(ctx, carolSession); err != nil {
		t.Fatalf("carol's session after: %v", err)
	}
	for _, g := range []struct {
		who broker.Identity
		id  string
	}{{eve, eveGrant.ID}, {alice, aliceGrant.ID}} {
		if !e.svc.IsRevoked(g.id) {
			t.Errorf("grant %s: tokens still accepted", g.id)
		}
		r, err := e.svc.Get(ctx, g.who, g.id)
		if err != nil || r.State != broker.StateExpired {
			t.Errorf("grant %s still live: %+v %v", g.id, r, err)
		}
		if _, _, err := e.svc.Token(ctx, g.who, g.id); code(err) != broker.CodeConflict {
			t.Errorf("token of %s after: %v", g.id, err)
		}
	}
	if e.svc.IsRevoked(carolGrant.ID) {
		t.Fatal("carol's grant ended")
	}
	if _, _, err := e.svc.Token(ctx, carol, carolGrant.ID); err != nil {
		t.Fatalf("carol's token after: %v", err)
	}
	// The end of each is in the trail, with why.
	var ended int
	e.log.Range(ctx, 1, func(ev audit.Event) bool {
		if ev.Type == audit.TypeRequestExpired && len(ev.Reasons) == 1 && strings.Contains(ev.Reasons[0], `"dev" at `+dev.URL()+` is no longer trusted`) && ev.Details["cause"] == "issuer" {
			ended++
		}
		return true
	})
	if ended != 2 {
		t.Fatalf("%d request.expired events name the untrusted issuer, want 2", ended)
	}
}

// otherIssuer starts a dev issuer besides e's corp one.
func otherIssuer(t *testing.T, e *env) *devissuer.Issuer {
	t.Helper()
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	iss, err := devissuer.New(srv.URL, devissuer.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss
	return iss
}

// trust restarts e's broker trusting corp and, under name, iss.
func trust(t *testing.T, e *env, name string, iss *devissuer.Issuer) {
	t.Helper()
	v, err := oidc.NewVerifier([]oidc.IssuerConfig{
		{Name: "corp", URL: e.iss.URL(), ClientID: devissuer.DefaultClientID, ActClaim: "actor"},
		{Name: name, URL: iss.URL(), ClientID: devissuer.DefaultClientID},
	}, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.idv = v
	e.restart()
}

// loginAt opens a session through iss, checks it names issuer want, and
// returns it with its token.
func loginAt(t *testing.T, e *env, iss *devissuer.Issuer, want, sub string, groups ...string) (broker.Identity, string) {
	t.Helper()
	ctx := context.Background()
	raw, err := iss.Mint(devissuer.Claims{Subject: sub, Groups: groups})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.svc.Login(ctx, raw, "", audit.Client{})
	if err != nil {
		t.Fatalf("login %s: %v", sub, err)
	}
	who, _, err := e.svc.Authenticate(ctx, s.Token)
	if err != nil || who.Issuer != want || who.IssuerURL != iss.URL() {
		t.Fatalf("session %s: %+v %v", sub, who, err)
	}
	return who, s.Token
}

// TestIssuerNameAtAnotherURLVouchesForNothingOld: trust is by the name and
// the URL together. A data dir once served with --dev, then with a config
// whose issuer is also named dev (another IdP, at another URL), must not
// revive the dev sessions and grants; the new issuer's own logins work,
// and listings show the old sessions as untrusted.
func TestIssuerNameAtAnotherURLVouchesForNothingOld(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old, prod := otherIssuer(t, e), otherIssuer(t, e)
	trust(t, e, "dev", old)
	eve, eveSession := loginAt(t, e, old, "dev", "eve", "ml")
	grant, err := e.svc.CreateRequest(ctx, eve, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || grant.State != broker.StateApproved {
		t.Fatalf("eve's grant: %+v %v", grant, err)
	}

	trust(t, e, "dev", prod)
	if _, _, err := e.svc.Authenticate(ctx, eveSession); code(err) != broker.CodeUnauthenticated || !strings.Contains(err.Error(), old.URL()) {
		t.Fatalf("the old dev session under the new dev issuer: %v", err)
	}
	if !e.svc.IsRevoked(grant.ID) {
		t.Fatal("the old dev grant's tokens are still accepted")
	}
	if r, err := e.db.GetRequest(ctx, grant.ID); err != nil || r.State != broker.StateExpired {
		t.Fatalf("the old dev grant: %+v %v", r, err)
	}
	// The same subject at the new IdP is someone else; it logs in afresh.
	eve2, eve2Session := loginAt(t, e, prod, "dev", "eve", "ml")
	if _, _, err := e.svc.Token(ctx, eve2, grant.ID); code(err) != broker.CodeNotFound {
		t.Fatalf("a token of the old grant for the new eve (not hers: none such): %v", err)
	}
	all, err := e.svc.Sessions(ctx, broker.AdminIdentity, true, broker.SessionQuery{All: true, Ended: true})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, s := range all {
		states[s.Identity.IssuerURL] = s.State
	}
	if states[old.URL()] != broker.SessionUntrusted || states[prod.URL()] != broker.SessionActive {
		t.Fatalf("listed states by issuer URL: %v", states)
	}
	// Without --ended the untrusted session is listed too: it has not
	// ended, and would work again under its issuer.
	live, _ := e.svc.Sessions(ctx, broker.AdminIdentity, true, broker.SessionQuery{All: true})
	listed := map[string]string{}
	for _, s := range live {
		listed[s.Identity.IssuerURL] = s.State
	}
	if len(live) != 2 || listed[old.URL()] != broker.SessionUntrusted || listed[prod.URL()] != broker.SessionActive {
		t.Fatalf("sessions not ended, by issuer URL: %v", listed)
	}
	if _, _, err := e.svc.Authenticate(ctx, eve2Session); err != nil {
		t.Fatal(err)
	}
	// An untrusted session that has also gone idle is idle: it would not
	// work again under its issuer, and is listed only with the ended ones.
	e.clock.Add(2 * time.Hour)
	if _, _, err := e.svc.Authenticate(ctx, eve2Session); err == nil {
		t.Fatal("an idle session still works")
	}
	ended, _ := e.svc.Sessions(ctx, broker.AdminIdentity, true, broker.SessionQuery{All: true, Ended: true})
	for _, s := range ended {
		if s.Identity.IssuerURL == old.URL() && s.State != broker.SessionIdle {
			t.Fatalf("the old idle session is listed as %s", s.State)
		}
	}
	if live, _ := e.svc.Sessions(ctx, broker.AdminIdentity, true, broker.SessionQuery{All: true}); len(live) != 0 {
		t.Fatalf("idle sessions listed as not ended: %+v", live)
	}
}

// TestRecordsWithoutIssuerURLAreUntrusted: sessions and grants recorded
// before pamctl kept the issuer's URL cannot say which IdP of that name
// vouched; they no longer count (log in, ask again), and say why.
func TestRecordsWithoutIssuerURLAreUntrusted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	who, tok := loginAt(t, e, e.iss, "corp", "carol", "ml")
	grant, err := e.svc.CreateRequest(ctx, who, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || grant.State != broker.StateApproved {
		t.Fatalf("carol's grant: %+v %v", grant, err)
	}
	_, sess, err := e.svc.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.UpdateSession(ctx, sess.ID, func(r *broker.SessionRecord) error { r.Identity.IssuerURL = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.UpdateRequest(ctx, grant.ID, func(r *broker.Request) error { r.Requester.IssuerURL = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if _, _, err := e.svc.Authenticate(ctx, tok); code(err) != broker.CodeUnauthenticated || !strings.Contains(err.Error(), "recorded without its URL") {
		t.Fatalf("a session without the issuer's URL: %v", err)
	}
	if r, err := e.db.GetRequest(ctx, grant.ID); err != nil || r.State != broker.StateExpired || !e.svc.IsRevoked(grant.ID) {
		t.Fatalf("a grant without the issuer's URL: %+v %v", r, err)
	}
	// The admin socket's identity has no URL, and always counts.
	if _, err := e.svc.Sessions(ctx, broker.AdminIdentity, true, broker.SessionQuery{All: true}); err != nil {
		t.Fatal(err)
	}
	// An IdP once named unix-socket (before the name was reserved) does
	// not pass for the admin socket.
	dave, _ := loginAt(t, e, e.iss, "corp", "dave", "ml")
	g2, err := e.svc.CreateRequest(ctx, dave, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || g2.State != broker.StateApproved {
		t.Fatalf("dave's grant: %+v %v", g2, err)
	}
	if _, err := e.db.UpdateRequest(ctx, g2.ID, func(r *broker.Request) error {
		r.Requester.Issuer, r.Requester.IssuerURL = broker.AdminIdentity.Issuer, ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if r, err := e.db.GetRequest(ctx, g2.ID); err != nil || r.State != broker.StateExpired || !e.svc.IsRevoked(g2.ID) {
		t.Fatalf("a grant of an old IdP named %q: %+v %v", broker.AdminIdentity.Issuer, r, err)
	}
}
