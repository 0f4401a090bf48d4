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

// Only what a person does keeps a web session alive: CheckWebSession (the
// browser's own requests: the live queue's stream and refreshes) answers
// like WebSession but records no use, in memory or in the store, so an
// open tab idles out after sessions.idle_timeout (1 h here) as a closed
// one does.
func TestWebSessionCheckIsNoUse(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	secret := strings.Repeat("c", 52)
	if _, err := e.svc.OpenWebSession(ctx, alice, e.clock.Now(), audit.Client{}, secret, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	opened := e.clock.Now()
	e.clock.Add(40 * time.Minute)
	who, rec, err := e.svc.CheckWebSession(ctx, secret)
	if err != nil || !who.Same(alice) || rec == nil {
		t.Fatalf("CheckWebSession within the idle timeout: %v", err)
	}
	if rec.LastUsedAt.After(opened) {
		t.Fatalf("CheckWebSession recorded a use: last used %v", rec.LastUsedAt)
	}
	e.clock.Add(40 * time.Minute)
	// 80 minutes after the login, with only checks between: idle.
	if _, _, err := e.svc.CheckWebSession(ctx, secret); broker.ErrorCode(err) != broker.CodeUnauthenticated || !strings.Contains(err.Error(), "without use") {
		t.Fatalf("a session only checked for 80 min: %v", err)
	}
	if _, _, err := e.svc.WebSession(ctx, secret); err == nil {
		t.Fatal("a session idled out by checks only came back on a use")
	}

	// A use keeps it alive; checks after it do not move it further.
	secret2 := strings.Repeat("d", 52)
	if _, err := e.svc.OpenWebSession(ctx, alice, e.clock.Now(), audit.Client{}, secret2, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(40 * time.Minute)
	if _, _, err := e.svc.WebSession(ctx, secret2); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(40 * time.Minute)
	if _, _, err := e.svc.CheckWebSession(ctx, secret2); err != nil {
		t.Fatalf("checked 40 min after a use: %v", err)
	}
	e.restart() // the store holds the use, not the check
	e.clock.Add(21 * time.Minute)
	if _, _, err := e.svc.CheckWebSession(ctx, secret2); err == nil {
		t.Fatal("61 min after the last use (a check between) the session is still open")
	}
}
