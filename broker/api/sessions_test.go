package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
)

// loginClient logs sub in over HTTP (so the broker records the client) and
// returns a client carrying the session.
func (ta *testAPI) loginClient(t *testing.T, sub string, groups ...string) (*api.Client, *broker.Session) {
	t.Helper()
	raw, err := ta.iss.Mint(devissuer.Claims{Subject: sub, Groups: groups})
	if err != nil {
		t.Fatal(err)
	}
	c := &api.Client{BaseURL: ta.srv.URL, UserAgent: "pamctl/test (plan9/arm)"}
	sess, err := c.Login(context.Background(), raw, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Token = sess.Token
	return c, sess
}

func apiCode(err error) broker.Code {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

func TestSessionRoutes(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	ctx := context.Background()
	alice, sess := ta.loginClient(t, "alice", "ml")
	copied := &api.Client{BaseURL: ta.srv.URL, Token: sess.Token} // a copy of session.json

	me, err := alice.WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.Session != sess.ID || me.IdleExpiresAt == nil || !me.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Fatalf("whoami %+v", me)
	}
	rs, err := alice.Sessions(ctx, "", false, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ID != sess.ID || rs[0].ClientAddr != "127.0.0.1" || rs[0].UserAgent != "pamctl/test (plan9/arm)" || rs[0].State != broker.SessionActive {
		t.Fatalf("sessions %+v", rs)
	}
	// alice is no sessions admin.
	if _, err := alice.Sessions(ctx, "", true, false, false); apiCode(err) != broker.CodeForbidden {
		t.Fatalf("alice listed everyone: %v", err)
	}
	if _, err := alice.RevokeSessions(ctx, api.RevokeSessionsRequest{User: "bob"}, false); apiCode(err) != broker.CodeForbidden {
		t.Fatalf("alice revoked bob: %v", err)
	}
	// A malformed or oversized revoke is refused before anything ends.
	if _, err := alice.RevokeSessions(ctx, api.RevokeSessionsRequest{ID: sess.ID, User: "alice"}, false); apiCode(err) != broker.CodeInvalid {
		t.Fatalf("id and user: %v", err)
	}
	if _, err := alice.RevokeSessions(ctx, api.RevokeSessionsRequest{ID: sess.ID, Reason: strings.Repeat("r", 2000)}, false); apiCode(err) != broker.CodeInvalid {
		t.Fatalf("long reason: %v", err)
	}
	// Logout ends the session: the copy is refused too, as "log in again".
	if err := alice.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*api.Client{alice, copied} {
		_, err := c.WhoAmI(ctx)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != broker.CodeUnauthenticated || !strings.Contains(ae.Message, "log in again") {
			t.Fatalf("after logout: %v", err)
		}
	}
}

func TestAdminSocketSessionRoutes(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	ctx := context.Background()
	alice, _ := ta.loginClient(t, "alice", "ml")
	_, _ = ta.loginClient(t, "alice", "ml")
	bob, _ := ta.loginClient(t, "bob", "ml")
	grant, err := alice.CreateRequest(ctx, api.CreateRequest{Scopes: []string{"model:gpt-4o"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.svc.Review(ctx, broker.Identity{Subject: "sam", Issuer: "dev", Groups: []string{"security"}, AuthTime: time.Now()}, grant.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	adm := httptest.NewServer(ta.api.Admin())
	defer adm.Close()
	ac := &api.Client{BaseURL: adm.URL}

	all, err := ac.Sessions(ctx, "", false, false, true)
	if err != nil || len(all) != 3 {
		t.Fatalf("admin listing: %v %d", err, len(all))
	}
	only, err := ac.Sessions(ctx, "alice", false, false, true)
	if err != nil || len(only) != 2 {
		t.Fatalf("admin listing of alice: %v %d", err, len(only))
	}
	res, err := ac.RevokeSessions(ctx, api.RevokeSessionsRequest{User: "alice", Grants: true, Reason: "offboarding"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sessions) != 2 || len(res.Grants) != 1 || res.Grants[0] != grant.ID || !ta.svc.IsRevoked(grant.ID) {
		t.Fatalf("revoke result %+v", res)
	}
	if _, err := alice.WhoAmI(ctx); apiCode(err) != broker.CodeUnauthenticated {
		t.Fatalf("alice still in: %v", err)
	}
	if _, err := bob.WhoAmI(ctx); err != nil {
		t.Fatalf("bob caught up: %v", err)
	}
	// The admin routes are not on the public listener.
	resp, err := http.Post(ta.srv.URL+"/admin/sessions/revoke", "application/json", strings.NewReader(`{"user":"bob"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("admin route on the public listener: %s", resp.Status)
	}
	if _, err := bob.WhoAmI(ctx); err != nil {
		t.Fatalf("bob ended through the public listener: %v", err)
	}
}

// A revoked session ends an audit follow that is already streaming.
func TestRevokedSessionEndsAuditFollow(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the follow recheck (5 s)")
	}
	ta := newTestAPI(t, time.Second, 5*time.Second)
	ctx := context.Background()
	ta.svc.SetPolicies(policy.Set{{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{"audit:read"}}})
	sam, sess := ta.loginClient(t, "sam", "security")
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		done <- sam.AuditFollow(fctx, audit.Filter{}, 1, func(audit.Event) error {
			select {
			case <-started:
			default:
				close(started)
			}
			return nil
		})
	}()
	select {
	case <-started: // the login event came through: the stream is live
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not start")
	}
	revoked := time.Now()
	if _, err := ta.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{ID: sess.ID}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if apiCode(err) != broker.CodeUnauthenticated {
			t.Fatalf("follow ended with %v, want unauthenticated", err)
		}
		if took := time.Since(revoked); took > 8*time.Second {
			t.Fatalf("follow outlived the revocation by %s", took)
		}
	case <-fctx.Done():
		t.Fatal("the follow of a revoked session kept streaming")
	}
}

// A follow re-checks its session before each event it delivers: nothing
// written after the revocation (its own session.revoked included) reaches
// the revoked session, and the stream ends at the next event, not at the
// next periodic recheck.
func TestRevokedSessionGetsNoEventAfterRevocation(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	ctx := context.Background()
	ta.svc.SetPolicies(policy.Set{{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{"audit:read"}}})
	sam, sess := ta.loginClient(t, "sam", "security")
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	got := make(chan audit.Event, 100)
	go func() {
		done <- sam.AuditFollow(fctx, audit.Filter{}, 1, func(e audit.Event) error {
			got <- e
			return nil
		})
	}()
	select {
	case <-got: // the login event came through: the stream is live
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not start")
	}
	head, err := ta.api.Audit.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	if _, err := ta.svc.RevokeSessions(ctx, broker.AdminIdentity, true, broker.RevokeSessions{ID: sess.ID, Reason: "secret-ish reason"}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // more events, each a delivery the follow must refuse
		ta.session(t, "mallory")
	}
	select {
	case err := <-done:
		if apiCode(err) != broker.CodeUnauthenticated {
			t.Fatalf("follow ended with %v, want unauthenticated", err)
		}
		if took := time.Since(revoked); took > 3*time.Second {
			t.Fatalf("follow outlived the revocation by %s (it waited for the periodic recheck)", took)
		}
	case <-fctx.Done():
		t.Fatal("the follow of a revoked session kept streaming")
	}
	close(got)
	for e := range got {
		if e.Seq > head.Last.Seq {
			t.Errorf("delivered after the revocation: %d %s", e.Seq, e.Type)
		}
	}
}
