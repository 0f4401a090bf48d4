package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
)

// loginWith logs sub in with an ID token whose auth_time claim is extra's
// (absent from extra: the dev issuer's, the token's iat) and returns the
// identity as the API would see it on the next call.
func (e *env) loginWith(sub string, extra map[string]any, groups ...string) (broker.Identity, *broker.Session, error) {
	e.t.Helper()
	raw, err := e.iss.Mint(devissuer.Claims{Subject: sub, Email: sub + "@example.com", Groups: groups, Extra: extra})
	if err != nil {
		e.t.Fatal(err)
	}
	sess, err := e.svc.Login(context.Background(), raw, "", audit.Client{})
	if err != nil {
		return broker.Identity{}, nil, err
	}
	who, _, err := e.svc.Authenticate(context.Background(), sess.Token)
	if err != nil {
		e.t.Fatalf("authenticate %s: %v", sub, err)
	}
	return who, sess, nil
}

func stepUpErr(t *testing.T, err error, action string) *broker.StepUpError {
	t.Helper()
	var su *broker.StepUpError
	if !errors.As(err, &su) || !errors.Is(err, broker.ErrStepUpRequired) {
		t.Fatalf("want a step-up error, got %v", err)
	}
	if broker.ErrorCode(err) != broker.CodeStepUpRequired || su.Action != action || su.MaxAge != broker.DefaultReauthAfter {
		t.Fatalf("step-up error: code %s action %q max age %s", broker.ErrorCode(err), su.Action, su.MaxAge)
	}
	if msg := broker.ErrorMessage(err); !strings.Contains(msg, action+" needs a login within the last 10m") || !strings.Contains(msg, "pamctl login") {
		t.Fatalf("message does not say why and what to do: %q", msg)
	}
	return su
}

func TestStepUpFreshLoginApproves(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	if bob.AuthTime.IsZero() || !bob.AuthTime.Equal(e.clock.Now()) {
		t.Fatalf("auth time %v, want the login's %v", bob.AuthTime, e.clock.Now())
	}
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(broker.DefaultReauthAfter) // exactly at the limit is still fresh
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "ok", nil); err != nil {
		t.Fatalf("approve with a fresh login: %v", err)
	}
}

func TestStepUpStaleSessionRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	_, bobSess, err := e.loginWith("bob", nil, "security")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	r2, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-mini"}})
	granted, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, TTL: time.Hour})
	if _, err := e.svc.Review(ctx, e.login("dave", "security"), granted.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}

	// Use the session every few minutes for 40 minutes: use is not
	// authentication, so the auth time stays the login's.
	login := e.clock.Now()
	var bob broker.Identity
	for range 8 {
		e.clock.Add(5 * time.Minute)
		bob, _, err = e.svc.Authenticate(ctx, bobSess.Token)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bob.AuthTime.Equal(login) {
		t.Fatalf("using the session moved its auth time to %v (login %v)", bob.AuthTime, login)
	}
	su := stepUpErr(t, func() error { _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); return err }(), broker.ActionApprove)
	if !strings.Contains(su.Message(), "your last was 40m ago") {
		t.Fatalf("message: %s", su.Message())
	}
	stepUpErr(t, func() error { _, err := e.svc.Review(ctx, bob, r2.ID, false, "", nil); return err }(), broker.ActionDeny)
	stepUpErr(t, e.svc.CanReadAudit(ctx, bob), broker.ActionReadAudit)
	// Revoking another person's grant (bob approves ml requests, so he
	// sees alice's grant) needs it too; the admin socket does not.
	stepUpErr(t, func() error { _, err := e.svc.Revoke(ctx, bob, granted.ID, false); return err }(), broker.ActionRevokeOther)
	// Nothing changed.
	if got, _ := e.svc.Get(ctx, alice, r.ID); got.State != broker.StatePending || len(got.Reviews) != 0 {
		t.Fatalf("refused review changed the request: %+v", got)
	}
	if got, _ := e.svc.Get(ctx, alice, granted.ID); got.State != broker.StateApproved {
		t.Fatalf("refused revoke changed the grant: %s", got.State)
	}
	// Following the trail is not cut by the step-up (checked at its start).
	if err := e.svc.CanKeepReadingAudit(ctx, bob); err != nil {
		t.Fatalf("keep reading: %v", err)
	}
	// Someone who may not review is told so, not asked to log in again.
	carol := e.login("carol", "ml")
	carol.AuthTime = e.clock.Now().Add(-time.Hour)
	if _, err := e.svc.Review(ctx, carol, r.ID, true, "", nil); errors.Is(err, broker.ErrStepUpRequired) {
		t.Fatalf("a non-approver was asked to step up: %v", err)
	}
	// Revoking one's own grant needs no step-up.
	nano, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}}) // self-serve: approved
	stale := alice
	stale.AuthTime = e.clock.Now().Add(-5 * time.Hour)
	if _, err := e.svc.Revoke(ctx, stale, nano.ID, false); err != nil {
		t.Fatalf("revoking my own grant: %v", err)
	}
	// The admin socket's revoke (admin set) never asks.
	nano2, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if _, err := e.svc.Revoke(ctx, broker.AdminIdentity, nano2.ID, true); err != nil {
		t.Fatalf("admin revoke: %v", err)
	}
	// A fresh login fixes it.
	bob, _, err = e.loginWith("bob", nil, "security")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil {
		t.Fatalf("approve after logging in again: %v", err)
	}
	if err := e.svc.CanReadAudit(ctx, bob); err != nil {
		t.Fatalf("audit after logging in again: %v", err)
	}
}

// A login whose ID token says the person authenticated long ago (the IdP
// reused its own session without asking) is not a fresh authentication,
// however new the broker session is.
func TestStepUpUsesIDTokenAuthTime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	old := e.clock.Now().Add(-3 * time.Hour)
	bob, _, err := e.loginWith("bob", map[string]any{"auth_time": old.Unix()}, "security")
	if err != nil {
		t.Fatal(err)
	}
	if !bob.AuthTime.Equal(old) {
		t.Fatalf("auth time %v, want the token's %v", bob.AuthTime, old)
	}
	su := stepUpErr(t, func() error { _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); return err }(), broker.ActionApprove)
	if !su.AuthTime.Equal(old) {
		t.Fatalf("error's auth time %v", su.AuthTime)
	}
	// Sessions record it.
	rs, err := e.svc.Sessions(ctx, bob, false, broker.SessionQuery{})
	if err != nil || len(rs) != 1 || !rs[0].AuthTime.Equal(old) {
		t.Fatalf("session records auth time: %v %+v", err, rs)
	}
}

// auth_time is trusted only as far as it can be: absent means no recent
// authentication (TestStepUpWithoutAuthTime), in the future means the
// login time (it cannot stretch freshness), and anything not a number
// refuses the token.
func TestStepUpForgedOrAbsentAuthTime(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	future, _, err := e.loginWith("bob", map[string]any{"auth_time": now.Add(24 * time.Hour).Unix()}, "security")
	if err != nil || !future.AuthTime.Equal(now) {
		t.Fatalf("future auth_time: %v, auth time %v want the login %v", err, future.AuthTime, now)
	}
	e.clock.Add(time.Hour)
	r, _ := e.svc.CreateRequest(context.Background(), e.login("alice", "ml"), broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if _, err := e.svc.Review(context.Background(), future, r.ID, true, "", nil); !errors.Is(err, broker.ErrStepUpRequired) {
		t.Fatalf("a future auth_time kept the session fresh: %v", err)
	}
	for _, bad := range []any{"1700000000", true, -5, 0, 1e300, map[string]any{"t": 1}, []any{1}} {
		if _, _, err := e.loginWith("bob", map[string]any{"auth_time": bad}, "security"); err == nil || broker.ErrorCode(err) != broker.CodeUnauthenticated {
			t.Fatalf("auth_time %v accepted: %v", bad, err)
		}
	}
}

func TestStepUpRevokeSessionsWithOthersGrants(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.svc.SetPolicies(append(testPolicies[:len(testPolicies):len(testPolicies)],
		policy.Policy{Name: "session-admins", Subjects: policy.Subjects{Groups: []string{"secops"}}, Scopes: []string{broker.SessionsAdminScope}}))
	e.login("alice", "ml")
	admin := e.login("sam", "secops")
	e.clock.Add(time.Hour)
	admin.AuthTime = e.clock.Now().Add(-time.Hour)
	if _, err := e.svc.RevokeSessions(ctx, admin, false, broker.RevokeSessions{User: "alice", Grants: true}); !errors.Is(err, broker.ErrStepUpRequired) {
		t.Fatalf("ending another person's grants without a recent login: %v", err)
	}
	// Ending sessions alone needs it too (TestStepUpEndingOthersSessions).
	if _, err := e.svc.RevokeSessions(ctx, admin, false, broker.RevokeSessions{User: "alice"}); !errors.Is(err, broker.ErrStepUpRequired) {
		t.Fatalf("ending another person's sessions without a recent login: %v", err)
	}
}

func TestStepUpReauthAfterConfigurable(t *testing.T) {
	e := newEnv(t)
	bob := e.login("bob", "security")
	e.svc.SetReauthAfter(time.Hour)
	e.clock.Add(30 * time.Minute)
	if err := e.svc.StepUp(bob, broker.ActionApprove); err != nil {
		t.Fatalf("within an hour: %v", err)
	}
	e.clock.Add(31 * time.Minute)
	var su *broker.StepUpError
	if err := e.svc.StepUp(bob, broker.ActionApprove); !errors.As(err, &su) || su.MaxAge != time.Hour || !strings.Contains(su.Message(), "within the last 1h; your last was 1h1m ago") {
		t.Fatalf("after an hour: %v", err)
	}
	e.svc.SetReauthAfter(0)
	if e.svc.ReauthAfter() != broker.DefaultReauthAfter {
		t.Fatalf("zero is the default, got %s", e.svc.ReauthAfter())
	}
	// No auth time at all (an identity nobody authenticated) is refused.
	if err := e.svc.StepUp(broker.Identity{Subject: "x", Issuer: "corp"}, broker.ActionApprove); !errors.Is(err, broker.ErrStepUpRequired) || !strings.Contains(err.Error(), "cannot show a recent login") {
		t.Fatalf("zero auth time: %v", err)
	}
}

// A session that started an agent (pamctl exec) cannot step up, even right
// after the login; the person's other sessions and a new login can.
func TestStepUpSessionRunningAnAgent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	_, marked, _ := e.loginWith("bob", nil, "security")
	_, other, _ := e.loginWith("bob", nil, "security")
	bob, _, _ := e.svc.Authenticate(ctx, marked.Token)
	// Only the owner marks a session.
	if err := e.svc.MarkAgentStarted(ctx, alice, marked.ID); broker.ErrorCode(err) != broker.CodeUnauthenticated {
		t.Fatalf("alice marked bob's session: %v", err)
	}
	if err := e.svc.MarkAgentStarted(ctx, bob, marked.ID); err != nil {
		t.Fatal(err)
	}
	bob, _, err := e.svc.Authenticate(ctx, marked.Token)
	if err != nil || !bob.AuthTime.IsZero() {
		t.Fatalf("marked session: %v, auth time %v", err, bob.AuthTime)
	}
	su := stepUpErr(t, func() error { _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); return err }(), broker.ActionApprove)
	if !strings.Contains(su.Message(), "started an agent with `pamctl exec`") {
		t.Fatalf("message: %s", su.Message())
	}
	// The mark survives a restart (it is in the record).
	e.restart()
	if bob, _, _ = e.svc.Authenticate(ctx, marked.Token); !bob.AuthTime.IsZero() {
		t.Fatal("the mark was lost across a restart")
	}
	bob2, _, _ := e.svc.Authenticate(ctx, other.Token)
	if _, err := e.svc.Review(ctx, bob2, r.ID, true, "", nil); err != nil {
		t.Fatalf("another session of the same person: %v", err)
	}
}

// A login whose ID token has no auth_time cannot pass step-up, even at
// once (the IdP may have reused its own session: silent SSO), and says
// why and what to do; the session works for everything else, in the CLI
// and on the web page, across a restart. An issuer with
// step_up_without_auth_time trusts the login's time instead.
func TestStepUpWithoutAuthTime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if err != nil {
		t.Fatal(err)
	}
	noAuthTime := map[string]any{"auth_time": nil}
	bob, sess, err := e.loginWith("bob", noAuthTime, "security")
	if err != nil {
		t.Fatal(err)
	}
	refused := func(who broker.Identity, what string) {
		t.Helper()
		if !who.AuthTime.IsZero() || who.NoAuthTime != broker.NoAuthTimeIdP {
			t.Fatalf("%s: auth time %v (%q), want none because the IdP sent none", what, who.AuthTime, who.NoAuthTime)
		}
		_, err := e.svc.Review(ctx, who, r.ID, true, "", nil)
		su := stepUpErr(t, err, broker.ActionApprove)
		if su.NoAuthTime != broker.NoAuthTimeIdP || !strings.Contains(su.Message(), "did not report when you authenticated") ||
			!strings.Contains(su.Message(), "step_up_without_auth_time") {
			t.Fatalf("%s: %q", what, su.Message())
		}
		if err := e.svc.CanReadAudit(ctx, who); !errors.Is(err, broker.ErrStepUpRequired) {
			t.Fatalf("%s reads the trail: %v", what, err)
		}
	}
	refused(bob, "CLI session")
	if _, err := e.svc.List(ctx, bob, false); err != nil {
		t.Fatalf("the session no longer lists requests: %v", err)
	}
	e.restart()
	bob, _, err = e.svc.Authenticate(ctx, sess.Token)
	if err != nil {
		t.Fatal(err)
	}
	refused(bob, "CLI session after a restart")
	rec, err := e.svc.OpenWebSession(ctx, broker.Identity{Subject: "bob", Email: "bob@example.com", Groups: []string{"security"}, Issuer: "corp", IssuerURL: e.iss.URL(), Kind: "user"},
		time.Time{}, audit.Client{}, strings.Repeat("s", 43), time.Hour)
	if err != nil || !rec.AuthTime.Equal(time.Unix(0, 0)) || !rec.AuthTimeUnknown {
		t.Fatalf("web session without auth_time: %v %+v", err, rec)
	}
	web, _, err := e.svc.WebSession(ctx, strings.Repeat("s", 43))
	if err != nil {
		t.Fatal(err)
	}
	refused(web, "web session")

	// The issuer's opt-out: the login's time stands in.
	e.idv, err = oidc.NewVerifier([]oidc.IssuerConfig{{Name: "corp", URL: e.iss.URL(), ClientID: devissuer.DefaultClientID, StepUpWithoutAuthTime: true}}, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	bob, _, err = e.loginWith("bob", noAuthTime, "security")
	if err != nil || !bob.AuthTime.Equal(e.clock.Now()) {
		t.Fatalf("step_up_without_auth_time: %v, auth time %v, want the login's %v", err, bob.AuthTime, e.clock.Now())
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil {
		t.Fatalf("step_up_without_auth_time: %v", err)
	}
}

// Rolling upgrade: a replica from before auth_time_unknown reads the
// session records this build writes. A login without auth_time must not
// look fresh to it (its authTime fell back to created_at for a zero
// auth_time), and when it rewrites such a record (dropping the field it
// does not know), this build must still refuse the session's step-up.
func TestStepUpWithoutAuthTimeOlderReplicas(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, sess, err := e.loginWith("bob", map[string]any{"auth_time": nil}, "security")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.db.GetSession(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	// The older build's record and step-up check (fc6e9ee: authTime and
	// Service.StepUp).
	var old struct {
		CreatedAt time.Time `json:"created_at"`
		AuthTime  time.Time `json:"auth_time,omitempty"`
	}
	if err := json.Unmarshal(raw, &old); err != nil {
		t.Fatal(err)
	}
	oldAuthTime := old.AuthTime
	if oldAuthTime.IsZero() {
		oldAuthTime = old.CreatedAt
	}
	now := e.clock.Now()
	if !oldAuthTime.IsZero() && now.Sub(oldAuthTime) <= broker.DefaultReauthAfter {
		t.Fatalf("an older replica reads this session's last authentication as %s (now %s): fresh enough to approve\n%s", oldAuthTime, now, raw)
	}

	// The older replica rewrites the record without auth_time_unknown.
	if _, err := e.db.UpdateSession(ctx, sess.ID, func(r *broker.SessionRecord) error {
		r.AuthTimeUnknown = false
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	bob, _, err := e.svc.Authenticate(ctx, sess.Token)
	if err != nil {
		t.Fatal(err)
	}
	if !bob.AuthTime.IsZero() || bob.NoAuthTime != broker.NoAuthTimeIdP {
		t.Fatalf("after an older replica's rewrite: auth time %v (%q)", bob.AuthTime, bob.NoAuthTime)
	}
	if err := e.svc.CanReadAudit(ctx, bob); !errors.Is(err, broker.ErrStepUpRequired) {
		t.Fatalf("after an older replica's rewrite the session reads the trail: %v", err)
	}
}

// Ending another person's session needs a recent login, as approving does:
// a stale session, or one that started an agent (pamctl exec), cannot log
// the approvers out, by id or by --user, whoever holds sessions:admin. One's
// own sessions stay endable without it; the admin socket is exempt.
func TestStepUpEndingOthersSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.svc.SetPolicies(append(testPolicies[:len(testPolicies):len(testPolicies)],
		policy.Policy{Name: "session-admins", Subjects: policy.Subjects{Groups: []string{"secops"}}, Scopes: []string{broker.SessionsAdminScope}}))
	a1 := e.session("alice", audit.Client{}, "ml")
	a2 := e.session("alice", audit.Client{}, "ml")
	// An agent-started session refuses at once, even right after its login.
	samAgent, agentSess, _ := e.loginWith("sam", nil, "secops")
	if err := e.svc.MarkAgentStarted(ctx, samAgent, agentSess.ID); err != nil {
		t.Fatal(err)
	}
	samAgent, _, _ = e.svc.Authenticate(ctx, agentSess.Token)
	for _, in := range []broker.RevokeSessions{{User: "alice"}, {ID: a1.ID}, {User: "nobody"}} {
		su := stepUpErr(t, func() error { _, err := e.svc.RevokeSessions(ctx, samAgent, false, in); return err }(), broker.ActionEndOtherSession)
		if su.NoAuthTime != broker.NoAuthTimeAgent {
			t.Fatalf("%+v: no_auth_time %q", in, su.NoAuthTime)
		}
	}
	// A stale session too.
	_, staleSess, _ := e.loginWith("sam", nil, "secops")
	_, ownOther, _ := e.loginWith("sam", nil, "secops")
	e.clock.Add(30 * time.Minute)
	samStale, _, err := e.svc.Authenticate(ctx, staleSess.Token)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _ = e.svc.Authenticate(ctx, ownOther.Token) // used: not idle
	if _, _, err := e.svc.Authenticate(ctx, agentSess.Token); err != nil {
		t.Fatal(err)
	}
	for _, in := range []broker.RevokeSessions{{User: "alice"}, {ID: a2.ID}, {User: "alice", Reason: "x"}} {
		stepUpErr(t, func() error { _, err := e.svc.RevokeSessions(ctx, samStale, false, in); return err }(), broker.ActionEndOtherSession)
	}
	// With --grants the action is revoking others' grants, as before.
	stepUpErr(t, func() error {
		_, err := e.svc.RevokeSessions(ctx, samStale, false, broker.RevokeSessions{User: "alice", Grants: true})
		return err
	}(), broker.ActionRevokeOther)
	// Nothing was ended by the refusals.
	for _, s := range []*broker.Session{a1, a2} {
		if _, _, err := e.svc.Authenticate(ctx, s.Token); err != nil {
			t.Fatalf("a refused revoke ended %s: %v", s.ID, err)
		}
	}
	if n := len(e.eventsOf(audit.TypeSessionRevoked)); n != 0 {
		t.Fatalf("%d session.revoked events after refusals", n)
	}
	// Still no probing: another's session id without sessions:admin is "no such session".
	bob := e.login("bob", "security")
	e.clock.Add(30 * time.Minute)
	bob.AuthTime = e.clock.Now().Add(-30 * time.Minute)
	if _, err := e.svc.RevokeSessions(ctx, bob, false, broker.RevokeSessions{ID: a1.ID}); code(err) != broker.CodeNotFound {
		t.Fatalf("bob without sessions:admin: %v", err)
	}
	// Own sessions need no step-up, stale or agent-started: by id and --user SELF.
	if _, err := e.svc.RevokeSessions(ctx, samStale, false, broker.RevokeSessions{ID: ownOther.ID}); err != nil {
		t.Fatalf("a stale session ending its owner's other session: %v", err)
	}
	if samAgent, _, err = e.svc.Authenticate(ctx, agentSess.Token); err != nil {
		t.Fatal(err)
	}
	if res, err := e.svc.RevokeSessions(ctx, samAgent, false, broker.RevokeSessions{User: "sam"}); err != nil || len(res.Sessions) != 2 {
		t.Fatalf("an agent-started session ending its owner's sessions: %v %+v", err, res)
	}
	// A fresh login may; so may the admin socket.
	sam, _, _ := e.loginWith("sam", nil, "secops")
	if res, err := e.svc.RevokeSessions(ctx, sam, false, broker.RevokeSessions{ID: a1.ID}); err != nil || len(res.Sessions) != 1 {
		t.Fatalf("with a fresh login: %v %+v", err, res)
	}
	if res, err := e.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{User: "alice"}); err != nil || len(res.Sessions) != 1 {
		t.Fatalf("the admin socket: %v %+v", err, res)
	}
}
