package broker_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

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
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	dev, err := devissuer.New(srv.URL, devissuer.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = dev
	corp := e.idv
	both, err := oidc.NewVerifier([]oidc.IssuerConfig{
		{Name: "corp", URL: e.iss.URL(), ClientID: devissuer.DefaultClientID, ActClaim: "actor"},
		{Name: "dev", URL: srv.URL, ClientID: devissuer.DefaultClientID},
	}, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.idv = both
	e.restart()

	// login opens a session through iss and returns it with its token.
	login := func(iss *devissuer.Issuer, want, sub string, groups ...string) (broker.Identity, string) {
		t.Helper()
		raw, err := iss.Mint(devissuer.Claims{Subject: sub, Groups: groups})
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.svc.Login(ctx, raw, "", audit.Client{})
		if err != nil {
			t.Fatalf("login %s: %v", sub, err)
		}
		who, _, err := e.svc.Authenticate(ctx, s.Token)
		if err != nil || who.Issuer != want {
			t.Fatalf("session %s: %+v %v", sub, who, err)
		}
		return who, s.Token
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
	if _, _, err := e.svc.Authenticate(ctx, eveSession); code(err) != broker.CodeUnauthenticated || !strings.Contains(err.Error(), `identity provider "dev"`) {
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
		if ev.Type == audit.TypeRequestExpired && len(ev.Reasons) == 1 && strings.Contains(ev.Reasons[0], `"dev" is no longer trusted`) && ev.Details["cause"] == "issuer" {
			ended++
		}
		return true
	})
	if ended != 2 {
		t.Fatalf("%d request.expired events name the untrusted issuer, want 2", ended)
	}
}
