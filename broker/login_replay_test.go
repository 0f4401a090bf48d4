package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// TestPersonsIDTokenLogsInOnce: a captured ID token carries its own nonce,
// so presenting it with that nonce passes the nonce check. The broker
// redeems each person's ID token once: a replay (again, with a re-encoded
// signature, after a restart, or racing the real login) opens no session
// and is in the trail; a fresh token for the same person works.
func TestPersonsIDTokenLogsInOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	raw, err := e.iss.Mint(devissuer.Claims{Subject: "alice", Groups: []string{"ml"}, Nonce: "n-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, raw, "n-0123456789", audit.Client{}); err != nil {
		t.Fatal(err)
	}
	replayed := func(what, tok string) {
		t.Helper()
		s, err := e.svc.Login(ctx, tok, "n-0123456789", audit.Client{RemoteAddr: "10.6.6.6"})
		if code(err) != broker.CodeUnauthenticated || s != nil {
			t.Fatalf("%s: %+v %v", what, s, err)
		}
	}
	replayed("the same token again", raw)
	// The decoders skip CR and LF and ignore spare bits: a token spelled
	// another way decodes to the same signed bytes, and must open nothing.
	for what, tok := range devissuer.Respell(raw) {
		replayed("the token with its "+what, tok)
	}
	e.restart()
	replayed("the token after a restart", raw)

	fails := e.eventsOf(audit.TypeLoginFailed)
	var replays int
	for _, ev := range fails {
		if ev.Actor != nil && ev.Actor.Subject == "alice" && len(ev.Reasons) == 1 && strings.Contains(ev.Reasons[0], "already opened a session") {
			replays++
		}
	}
	if replays < 2 {
		t.Fatalf("%d login.failed events name the replay, want at least 2: %+v", replays, fails)
	}
	if n := len(e.eventsOf(audit.TypeLogin)); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	// A new login (a new token) works.
	e.session("alice", audit.Client{}, "ml")

	// Racing replays: exactly one opens a session.
	raced, err := e.iss.Mint(devissuer.Claims{Subject: "bob", Nonce: "n-race"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened := 0
	for range 8 {
		wg.Go(func() {
			if _, err := e.svc.Login(ctx, raced, "n-race", audit.Client{}); err == nil {
				mu.Lock()
				opened++
				mu.Unlock()
			} else if code(err) != broker.CodeUnauthenticated {
				t.Errorf("racing login: %v", err)
			}
		})
	}
	wg.Wait()
	if opened != 1 {
		t.Fatalf("%d of 8 racing logins with one token opened a session, want 1", opened)
	}
}

// TestWorkloadTokenLogsInAgain: a workload's ID token (a CI job's, a
// projected service-account token) is a bearer credential its platform
// hands every step; it may open more than one session until it expires.
func TestWorkloadTokenLogsInAgain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ci := otherIssuer(t, e)
	v, err := oidc.NewVerifier([]oidc.IssuerConfig{
		{Name: "corp", URL: e.iss.URL(), ClientID: devissuer.DefaultClientID},
		{Name: "ci", URL: ci.URL(), Audience: "pamctl-ci", Workload: true},
	}, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.idv = v
	e.restart()
	raw, err := ci.Mint(devissuer.Claims{Subject: "repo:acme/app", Audience: "pamctl-ci", TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s, err := e.svc.Login(ctx, raw, "", audit.Client{})
		if err != nil || s.Identity.Kind != oidc.KindService {
			t.Fatalf("workload login %d: %+v %v", i, s, err)
		}
	}
}
