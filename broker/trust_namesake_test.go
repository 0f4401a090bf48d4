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

// TestNamesakeAtNewURLOwnsNothingOld: when an issuer name is repointed to
// another IdP, its eve is not the old IdP's eve. She does not see the old
// eve's sessions as hers, cannot end them, and cannot read the old eve's
// requests.
func TestNamesakeAtNewURLOwnsNothingOld(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old, prod := otherIssuer(t, e), otherIssuer(t, e)
	trust(t, e, "dev", old)
	eve, _ := loginAt(t, e, old, "dev", "eve", "ml")
	grant, err := e.svc.CreateRequest(ctx, eve, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}, Reason: "old eve's private reason"})
	if err != nil {
		t.Fatal(err)
	}
	oldSessions, err := e.svc.Sessions(ctx, eve, false, broker.SessionQuery{})
	if err != nil || len(oldSessions) != 1 {
		t.Fatalf("the old eve's sessions: %+v %v", oldSessions, err)
	}
	trust(t, e, "dev", prod)
	eve2, _ := loginAt(t, e, prod, "dev", "eve", "ml")
	mine, err := e.svc.Sessions(ctx, eve2, false, broker.SessionQuery{Ended: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range mine {
		if s.Identity.IssuerURL != prod.URL() {
			t.Errorf("the new eve lists a session of %s as hers: %s (%s)", s.Identity.IssuerURL, s.ID, s.State)
		}
	}
	if _, err := e.svc.RevokeSessions(ctx, eve2, false, broker.RevokeSessions{ID: oldSessions[0].ID}); err == nil {
		t.Error("the new eve ended the old eve's session")
	}
	if r, err := e.svc.Get(ctx, eve2, grant.ID); err == nil {
		t.Errorf("the new eve reads the old eve's request: reason %q", r.Reason)
	}
	if rs, err := e.svc.List(ctx, eve2, false); err != nil || len(rs) != 0 {
		t.Errorf("the new eve's list: %d requests, %v", len(rs), err)
	}
}

// TestHeldCallRecordsTheIssuerURL: the proxy knows a caller from the access
// token, which names the issuer but not its URL; the held call records
// the URL of the grant's requester, so the hold is hers and no namesake's.
func TestHeldCallRecordsTheIssuerURL(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	g, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || g.State != broker.StateApproved || g.Requester.IssuerURL == "" {
		t.Fatalf("alice's grant: %+v %v", g, err)
	}
	fromToken := broker.Identity{Subject: alice.Subject, Issuer: alice.Issuer, Groups: alice.Groups, Kind: alice.Kind}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	r, err := e.svc.HoldPrompt(short, broker.Hold{Caller: fromToken, GrantID: g.ID, Rule: "r", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o-nano", Endpoint: "/v1/chat/completions", Excerpt: "x", SHA256: strings.Repeat("cd", 32)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requester.IssuerURL != g.Requester.IssuerURL {
		t.Fatalf("the held call's requester: %+v, want the grant's issuer URL %s", r.Requester, g.Requester.IssuerURL)
	}
}

// TestAdminSocketIdentityStaysTrusted: the admin socket's identity has no
// issuer URL and no configured issuer; it always counts. A grant whose
// approval it recorded survives a restart's trust check.
func TestAdminSocketIdentityStaysTrusted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	g, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || g.State != broker.StateApproved {
		t.Fatalf("alice's grant: %+v %v", g, err)
	}
	if _, err := e.db.UpdateRequest(ctx, g.ID, func(r *broker.Request) error {
		r.Reviews = append(r.Reviews, broker.Review{Reviewer: broker.AdminIdentity, Approve: true, At: time.Now()})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if r, err := e.db.GetRequest(ctx, g.ID); err != nil || r.State != broker.StateApproved || e.svc.IsRevoked(g.ID) {
		t.Fatalf("a grant the admin socket approved: %+v %v", r, err)
	}
}

// TestHeldCallApprovalEndsWithItsApproversIssuer: an approval of a held
// call lets the caller retry it once within the retry window, but not once
// the approver's issuer no longer vouches for them.
func TestHeldCallApprovalEndsWithItsApproversIssuer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ops := otherIssuer(t, e)
	trust(t, e, "ops", ops)
	alice := e.login("alice", "ml")
	bob, _ := loginAt(t, e, ops, "ops", "bob", "security")
	hold := broker.Hold{Caller: alice, GrantID: liveGrantID(t, e, alice), Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o", Endpoint: "/v1/chat/completions", Excerpt: "DROP TABLE users", SHA256: strings.Repeat("ef", 32)}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	r, err := e.svc.HoldPrompt(short, hold)
	cancel()
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("timed-out hold: %v %+v", err, r)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	// The name ops now points at another IdP: bob's approval no longer counts.
	trust(t, e, "ops", otherIssuer(t, e))
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if retry, _ := e.svc.HoldPrompt(short, hold); retry == nil || retry.ID == r.ID || retry.State == broker.StateApproved {
		t.Fatalf("a retry released by an approval of an issuer no longer trusted: %+v", retry)
	}
}

// TestRevokeUserGrantsAcrossIssuerURLs: `pamctl sessions revoke --user eve
// --grants` ends every grant of eve. A stale session of an eve from the
// issuer name's old URL must not narrow it to that identity and leave the
// live grant of today's eve (logged out, her token still out) standing.
func TestRevokeUserGrantsAcrossIssuerURLs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old, prod := otherIssuer(t, e), otherIssuer(t, e)
	trust(t, e, "dev", old)
	loginAt(t, e, old, "dev", "eve", "ml") // the old eve's session stays in the store
	trust(t, e, "dev", prod)
	eve2, tok2 := loginAt(t, e, prod, "dev", "eve", "ml")
	g, err := e.svc.CreateRequest(ctx, eve2, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil || g.State != broker.StateApproved {
		t.Fatalf("new eve's grant: %+v %v", g, err)
	}
	if _, _, err := e.svc.Token(ctx, eve2, g.ID); err != nil {
		t.Fatal(err)
	}
	_, info, _ := e.svc.Authenticate(ctx, tok2)
	if err := e.svc.Logout(ctx, eve2, info.ID, audit.Client{}); err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{User: "eve", Grants: true})
	if err != nil {
		t.Fatal(err)
	}
	if !e.svc.IsRevoked(g.ID) || len(res.Grants) != 1 {
		t.Fatalf("`revoke --user eve --grants` left eve's live grant %s standing (ended %+v)", g.ID, res)
	}
}
