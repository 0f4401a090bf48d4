package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/token"
)

// session logs sub in from client and returns the broker session.
func (e *env) session(sub string, client audit.Client, groups ...string) *broker.Session {
	e.t.Helper()
	raw, err := e.iss.Mint(devissuer.Claims{Subject: sub, Email: sub + "@example.com", Groups: groups})
	if err != nil {
		e.t.Fatal(err)
	}
	sess, err := e.svc.Login(context.Background(), raw, "", client)
	if err != nil {
		e.t.Fatalf("login %s: %v", sub, err)
	}
	return sess
}

// mustRefuse checks that tok is refused as a session the user must log in
// again for, with why in the message.
func (e *env) mustRefuse(tok, why string) {
	e.t.Helper()
	_, _, err := e.svc.Authenticate(context.Background(), tok)
	if code(err) != broker.CodeUnauthenticated {
		e.t.Fatalf("session accepted or wrong error: %v", err)
	}
	msg := broker.ErrorMessage(err)
	if !strings.Contains(msg, "log in again") || !strings.Contains(msg, why) {
		e.t.Fatalf("message %q; want %q and 'log in again'", msg, why)
	}
}

func (e *env) eventsOf(typ audit.Type) []audit.Event {
	var out []audit.Event
	e.log.Range(context.Background(), 0, func(ev audit.Event) bool {
		if ev.Type == typ {
			out = append(out, ev)
		}
		return true
	})
	return out
}

func TestLoginRecordsTheSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sess := e.session("alice", audit.Client{RemoteAddr: "10.0.0.7", UserAgent: "pamctl/test (linux/amd64)"}, "ml")
	if sess.ID == "" || sess.IdleTimeout != broker.DefaultIdleTimeout {
		t.Fatalf("session %+v", sess)
	}
	rec, err := e.db.GetSession(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if rec.Identity.Subject != "alice" || rec.ClientAddr != "10.0.0.7" || rec.UserAgent != "pamctl/test (linux/amd64)" ||
		rec.State != broker.SessionActive || !rec.CreatedAt.Equal(now) || !rec.LastUsedAt.Equal(now) || !rec.ExpiresAt.Equal(now.Add(broker.MaxSessionTTL)) {
		t.Fatalf("record %+v", rec)
	}
	_, info, err := e.svc.Authenticate(ctx, sess.Token)
	if err != nil || info.ID != sess.ID || !info.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Fatalf("authenticate: %v %+v", err, info)
	}
	if ev := e.eventsOf(audit.TypeLogin); len(ev) != 1 || ev[0].Details["session"] != sess.ID {
		t.Fatalf("login events %+v", ev)
	}
}

func TestLogoutEndsEveryCopyOfTheToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sess := e.session("alice", audit.Client{}, "ml")
	other := e.session("alice", audit.Client{}, "ml") // a second login stays open
	who, info, err := e.svc.Authenticate(ctx, sess.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Logout(ctx, who, info.ID, audit.Client{RemoteAddr: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	e.mustRefuse(sess.Token, "logged out")
	if _, _, err := e.svc.Authenticate(ctx, other.Token); err != nil {
		t.Fatalf("the other session ended too: %v", err)
	}
	// A second logout of the same session is a conflict, not a success.
	if err := e.svc.Logout(ctx, who, info.ID, audit.Client{}); code(err) != broker.CodeConflict {
		t.Fatalf("second logout: %v", err)
	}
	// Someone else cannot log alice out.
	bob := e.login("bob", "ml")
	if err := e.svc.Logout(ctx, bob, other.ID, audit.Client{}); code(err) != broker.CodeNotFound {
		t.Fatalf("bob logged alice out: %v", err)
	}
	// The end survives a restart (nothing cached).
	e.restart()
	e.mustRefuse(sess.Token, "logged out")
	if ev := e.eventsOf(audit.TypeLogout); len(ev) != 1 || ev[0].Details["session"] != sess.ID {
		t.Fatalf("logout events %+v", ev)
	}
}

func TestIdleTimeoutAndMaxLifetime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sess := e.session("alice", audit.Client{}, "ml")
	// Used every 59 minutes, the session stays open...
	for range 3 {
		e.clock.Add(59 * time.Minute)
		if _, _, err := e.svc.Authenticate(ctx, sess.Token); err != nil {
			t.Fatalf("used within the idle timeout: %v", err)
		}
	}
	// ...and ends after an hour without use.
	e.clock.Add(time.Hour)
	e.mustRefuse(sess.Token, "without use")
	// Listings show it as idle, not active.
	rs, err := e.svc.Sessions(ctx, e.login("alice", "ml"), false, broker.SessionQuery{Ended: true})
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, r := range rs {
		if r.ID == sess.ID {
			states = append(states, r.State)
		}
	}
	if len(states) != 1 || states[0] != broker.SessionIdle {
		t.Fatalf("listed states %v", states)
	}

	// However busy, a session ends at its absolute lifetime.
	busy := e.session("carol", audit.Client{}, "ml")
	for used := time.Duration(0); used < broker.MaxSessionTTL-30*time.Minute; used += 30 * time.Minute {
		e.clock.Add(30 * time.Minute)
		if _, _, err := e.svc.Authenticate(ctx, busy.Token); err != nil {
			t.Fatalf("busy session refused after %s: %v", used, err)
		}
	}
	e.clock.Add(30 * time.Minute)
	e.mustRefuse(busy.Token, "expired")
}

func TestIdleTimeoutIsConfigurableAndCanBeOff(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, c := range []struct {
		idle    time.Duration
		refused bool
	}{{10 * time.Minute, true}, {-1, false}} {
		svc, err := broker.New(ctx, broker.Config{Store: e.db, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: e.log, Policies: testPolicies, Now: e.clock.Now, IdleTimeout: c.idle, SessionTTL: 2 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := e.iss.Mint(devissuer.Claims{Subject: "alice", Groups: []string{"ml"}})
		sess, err := svc.Login(ctx, raw, "", audit.Client{})
		if err != nil {
			t.Fatal(err)
		}
		if !sess.ExpiresAt.Equal(e.clock.Now().Add(2 * time.Hour)) {
			t.Fatalf("max lifetime not applied: %s", sess.ExpiresAt)
		}
		e.clock.Add(11 * time.Minute)
		_, _, err = svc.Authenticate(ctx, sess.Token)
		if (err != nil) != c.refused {
			t.Fatalf("idle %s after 11m: %v", c.idle, err)
		}
	}
}

// "Last used" is written at most once per TouchEvery per session, and
// after a restart the idle clock runs from what was written: early by less
// than TouchEvery, never late.
func TestLastUseWritesAreCoalesced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sess := e.session("alice", audit.Client{}, "ml")
	login := e.clock.Now()
	stored := func() time.Time {
		t.Helper()
		r, err := e.db.GetSession(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		return r.LastUsedAt
	}
	for range 50 {
		e.clock.Add(time.Second)
		if _, _, err := e.svc.Authenticate(ctx, sess.Token); err != nil {
			t.Fatal(err)
		}
	}
	if got := stored(); !got.Equal(login) {
		t.Fatalf("last use written within a minute: %s (login %s)", got, login)
	}
	e.clock.Add(10 * time.Second) // 60 s after login
	if _, _, err := e.svc.Authenticate(ctx, sess.Token); err != nil {
		t.Fatal(err)
	}
	written := e.clock.Now()
	if got := stored(); !got.Equal(written) {
		t.Fatalf("last use not written after a minute: %s, want %s", got, written)
	}
	// Listings show the exact last use, from memory.
	e.clock.Add(30 * time.Second)
	if _, _, err := e.svc.Authenticate(ctx, sess.Token); err != nil {
		t.Fatal(err)
	}
	exact := e.clock.Now()
	who := e.login("alice", "ml")
	rs, _ := e.svc.Sessions(ctx, who, false, broker.SessionQuery{})
	for _, r := range rs {
		if r.ID == sess.ID && !r.LastUsedAt.Equal(exact) {
			t.Fatalf("listed last use %s, want %s", r.LastUsedAt, exact)
		}
	}
	// After a restart the idle clock starts from the written use (30 s
	// earlier than the exact one).
	e.restart()
	e.clock.Add(time.Hour - 20*time.Second) // 1h10s after the written use
	e.mustRefuse(sess.Token, "without use")
}

func TestAdminRevokesAUsersSessionsAndGrants(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s1 := e.session("alice", audit.Client{}, "ml")
	s2 := e.session("alice", audit.Client{}, "ml")
	bobSess := e.session("bob", audit.Client{}, "ml")
	alice, _, _ := e.svc.Authenticate(ctx, s1.Token)
	bob, _, _ := e.svc.Authenticate(ctx, bobSess.Token)
	g, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || g.State != broker.StateApproved {
		t.Fatalf("grant: %v %+v", err, g)
	}
	bobGrant, err := e.svc.CreateRequest(ctx, bob, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil {
		t.Fatal(err)
	}

	// bob is no admin: he may neither list nor end alice's sessions, and
	// her session ids are not even confirmed to exist.
	if _, err := e.svc.Sessions(ctx, bob, false, broker.SessionQuery{User: "alice"}); code(err) != broker.CodeForbidden {
		t.Fatalf("bob listed alice's sessions: %v", err)
	}
	if _, err := e.svc.Sessions(ctx, bob, false, broker.SessionQuery{All: true}); code(err) != broker.CodeForbidden {
		t.Fatalf("bob listed everyone's sessions: %v", err)
	}
	if _, err := e.svc.RevokeSessions(ctx, bob, false, broker.RevokeSessions{User: "alice", Grants: true}); code(err) != broker.CodeForbidden {
		t.Fatalf("bob revoked alice: %v", err)
	}
	if _, err := e.svc.RevokeSessions(ctx, bob, false, broker.RevokeSessions{ID: s1.ID}); code(err) != broker.CodeNotFound {
		t.Fatalf("bob revoked alice's session: %v", err)
	}
	if _, _, err := e.svc.Authenticate(ctx, s1.Token); err != nil {
		t.Fatalf("alice's session ended by bob's attempts: %v", err)
	}

	res, err := e.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{User: "alice", Grants: true, Reason: "laptop stolen"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sessions) != 2 || len(res.Grants) != 1 || res.Grants[0] != g.ID {
		t.Fatalf("result %+v", res)
	}
	e.mustRefuse(s1.Token, "revoked by local-admin")
	e.mustRefuse(s2.Token, "revoked")
	if !e.svc.IsRevoked(g.ID) {
		t.Fatal("alice's grant is not refused at the proxy")
	}
	if _, _, err := e.svc.Authenticate(ctx, bobSess.Token); err != nil || e.svc.IsRevoked(bobGrant.ID) {
		t.Fatalf("bob was caught up: %v", err)
	}
	revs := e.eventsOf(audit.TypeSessionRevoked)
	if len(revs) != 2 {
		t.Fatalf("session.revoked events: %d", len(revs))
	}
	for _, ev := range revs {
		if ev.Actor == nil || ev.Actor.Subject != "local-admin" || ev.Target != "alice" || ev.Details["grants"] != "true" ||
			(ev.Details["session"] != s1.ID && ev.Details["session"] != s2.ID) || len(ev.Reasons) != 1 || ev.Reasons[0] != "laptop stolen" {
			t.Fatalf("event %+v", ev)
		}
	}
	if gr := e.eventsOf(audit.TypeGrantRevoked); len(gr) != 1 || gr[0].Grant != g.ID {
		t.Fatalf("grant.revoked events %+v", gr)
	}
	// Nothing left to end.
	if _, err := e.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{User: "alice"}); code(err) != broker.CodeNotFound {
		t.Fatalf("second revoke: %v", err)
	}
	// The ends survive a restart.
	e.restart()
	e.mustRefuse(s1.Token, "revoked")
	if !e.svc.IsRevoked(g.ID) {
		t.Fatal("grant revocation lost on restart")
	}
}

func TestSessionsAdminScopeAndOwnSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a1 := e.session("alice", audit.Client{}, "ml")
	a2 := e.session("alice", audit.Client{}, "ml")
	sam := e.login("sam", "security")
	alice, _, _ := e.svc.Authenticate(ctx, a1.Token)

	// alice lists her own sessions, and ends one of them herself.
	mine, err := e.svc.Sessions(ctx, alice, false, broker.SessionQuery{})
	if err != nil || len(mine) != 2 {
		t.Fatalf("alice's sessions: %v %d", err, len(mine))
	}
	if _, err := e.svc.RevokeSessions(ctx, alice, false, broker.RevokeSessions{ID: a2.ID}); err != nil {
		t.Fatal(err)
	}
	e.mustRefuse(a2.Token, "revoked by alice")
	if mine, _ = e.svc.Sessions(ctx, alice, false, broker.SessionQuery{}); len(mine) != 1 || mine[0].ID != a1.ID {
		t.Fatalf("after revoke: %+v", mine)
	}
	if all, _ := e.svc.Sessions(ctx, alice, false, broker.SessionQuery{Ended: true}); len(all) != 2 {
		t.Fatalf("with ended: %d", len(all))
	}

	// sam (security) is an admin once policy grants sessions:admin.
	if _, err := e.svc.Sessions(ctx, sam, false, broker.SessionQuery{All: true}); code(err) != broker.CodeForbidden {
		t.Fatalf("sam without the scope: %v", err)
	}
	ps := append(policy.Set{}, testPolicies...)
	ps = append(ps, policy.Policy{Name: "session-admins", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{broker.SessionsAdminScope}})
	if errs := ps.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	e.svc.SetPolicies(ps)
	all, err := e.svc.Sessions(ctx, sam, false, broker.SessionQuery{All: true})
	if err != nil || len(all) != 2 { // alice's one and sam's own
		t.Fatalf("sam's listing: %v %d", err, len(all))
	}
	if _, err := e.svc.RevokeSessions(ctx, sam, false, broker.RevokeSessions{ID: a1.ID, Reason: "offboarding"}); err != nil {
		t.Fatal(err)
	}
	e.mustRefuse(a1.Token, "revoked by sam")
}

func TestSweepForgetsEndedSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	gone := e.session("alice", audit.Client{}, "ml")
	kept := e.session("bob", audit.Client{}, "ml")
	if _, err := e.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{ID: gone.ID}); err != nil {
		t.Fatal(err)
	}
	for range 4 { // bob keeps using his session
		e.clock.Add(50 * time.Minute)
		if _, _, err := e.svc.Authenticate(ctx, kept.Token); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.SweepSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.GetSession(ctx, gone.ID); err != nil {
		t.Fatalf("an ended session was deleted before it was kept a day: %v", err)
	}
	e.clock.Add(broker.SessionKeep)
	if err := e.svc.SweepSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.GetSession(ctx, gone.ID); err != broker.ErrSessionNotFound {
		t.Fatalf("ended session still stored: %v", err)
	}
	e.mustRefuse(gone.Token, "")
}

// BenchmarkAuthenticate measures a session check on the API's hot path: a
// signature check, a cache lookup and, once a minute per session, a write
// (the clock stands still here, so never). token-only is the signature
// check alone, which is all the check was before sessions were recorded.
func BenchmarkAuthenticate(b *testing.B) {
	e := newEnv(b)
	sess := e.session("alice", audit.Client{}, "ml")
	ctx := context.Background()
	b.Run("session", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := e.svc.Authenticate(ctx, sess.Token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("token-only", func(b *testing.B) {
		v := &token.Verifier{Keys: e.keys, Issuer: "http://broker.test", Audience: token.AudienceBroker, Use: token.UseSession, Now: e.clock.Now}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(sess.Token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
