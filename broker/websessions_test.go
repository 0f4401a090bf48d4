package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

func TestWebSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	authTime := e.clock.Now().Add(-time.Minute)
	secret := strings.Repeat("s", 52)
	if _, err := e.svc.OpenWebSession(ctx, alice, authTime, audit.Client{}, "short", time.Hour); err == nil {
		t.Fatal("a short secret was accepted")
	}
	rec, err := e.svc.OpenWebSession(ctx, alice, authTime, audit.Client{RemoteAddr: "10.0.0.1"}, secret, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Kind != broker.SessionKindWeb || rec.ID != broker.WebSessionID(secret) || strings.Contains(rec.ID, secret) || !rec.ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("record %+v", rec)
	}
	who, got, err := e.svc.WebSession(ctx, secret)
	if err != nil || !who.Same(alice) || !who.AuthTime.Equal(authTime.UTC()) || got.ID != rec.ID {
		t.Fatalf("WebSession: %v %+v %+v", err, who, got)
	}
	if _, _, err := e.svc.WebSession(ctx, secret+"x"); err == nil {
		t.Fatal("another secret opened the session")
	}
	// A web session's id is no session token: Authenticate never takes it.
	if _, _, err := e.svc.Authenticate(ctx, rec.ID); err == nil {
		t.Fatal("Authenticate took a web session id")
	}
	// It is listed with the person's sessions and ends like them; the
	// end holds across a restart.
	list, err := e.svc.Sessions(ctx, alice, false, broker.SessionQuery{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range list {
		found = found || (s.ID == rec.ID && s.Kind == broker.SessionKindWeb)
	}
	if !found {
		t.Fatalf("web session not listed: %+v", list)
	}
	if _, err := e.svc.RevokeSessions(ctx, alice, false, broker.RevokeSessions{ID: rec.ID}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.WebSession(ctx, secret); broker.ErrorCode(err) != broker.CodeUnauthenticated {
		t.Fatalf("a revoked web session: %v", err)
	}
	e.restart()
	if _, _, err := e.svc.WebSession(ctx, secret); err == nil {
		t.Fatal("a revoked web session came back after a restart")
	}
	// Lifetime: capped by sessions.max_lifetime, and it expires.
	rec2, _ := e.svc.OpenWebSession(ctx, alice, authTime, audit.Client{}, secret+"2", 100*time.Hour)
	if rec2.ExpiresAt.After(e.clock.Now().Add(broker.MaxSessionTTL)) {
		t.Fatalf("web session past the maximum lifetime: %v", rec2.ExpiresAt)
	}
	e.clock.Add(broker.MaxSessionTTL + time.Second)
	if _, _, err := e.svc.WebSession(ctx, secret+"2"); err == nil {
		t.Fatal("an expired web session still works")
	}
}
