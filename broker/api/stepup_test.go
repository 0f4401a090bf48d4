package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
)

// staleClient logs sub in with an ID token saying the person last
// authenticated at the IdP age ago.
func (ta *testAPI) staleClient(t *testing.T, sub string, age time.Duration, groups ...string) *api.Client {
	t.Helper()
	raw, err := ta.iss.Mint(devissuer.Claims{Subject: sub, Groups: groups, Extra: map[string]any{"auth_time": time.Now().Add(-age).Unix()}})
	if err != nil {
		t.Fatal(err)
	}
	c := &api.Client{BaseURL: ta.srv.URL}
	sess, err := c.Login(context.Background(), raw, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Token = sess.Token
	return c
}

func TestStepUpThroughTheAPI(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	ta.svc.SetPolicies(policy.Set{
		{Name: "ml", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:*"},
			Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}}},
		{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{broker.AuditScope}},
	})
	ctx := context.Background()
	alice, _ := ta.loginClient(t, "alice", "ml")
	r1, err := alice.CreateRequest(ctx, api.CreateRequest{Scopes: []string{"model:gpt-4o"}})
	if err != nil {
		t.Fatal(err)
	}
	stale := ta.staleClient(t, "bob", 2*time.Hour, "security")
	who, err := stale.WhoAmI(ctx)
	if err != nil || who.AuthTime == nil || time.Since(*who.AuthTime) < 119*time.Minute {
		t.Fatalf("whoami auth time: %v %+v", err, who.AuthTime)
	}
	_, err = stale.Review(ctx, r1.ID, true, api.ReviewRequest{})
	var ae *api.Error
	var su *broker.StepUpError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != broker.CodeStepUpRequired ||
		!errors.Is(err, broker.ErrStepUpRequired) || !errors.As(err, &su) || su.Action != broker.ActionApprove || su.MaxAge != 10*time.Minute ||
		time.Since(su.AuthTime) < 119*time.Minute {
		t.Fatalf("stale approve: %#v", err)
	}
	if !strings.Contains(ae.Message, "approving needs a login within the last 10m; your last was 2h") || !strings.Contains(ae.Message, "pamctl login") {
		t.Fatalf("message: %s", ae.Message)
	}
	// The raw answer: 401, the code, the detail and a WWW-Authenticate hint.
	req, _ := http.NewRequest(http.MethodPost, ta.srv.URL+"/v1/requests/"+r1.ID+"/deny", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+stale.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var eb api.ErrorBody
	if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(body, &eb) != nil || eb.Error.Code != "step_up_required" ||
		eb.Error.StepUp == nil || eb.Error.StepUp.Action != "denying" || eb.Error.StepUp.MaxAgeSeconds != 600 || eb.Error.StepUp.AuthTime == nil ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), "max_age=600") {
		t.Fatalf("raw deny: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	// Reading the audit trail too.
	if _, err := stale.AuditVerify(ctx); !errors.Is(err, broker.ErrStepUpRequired) {
		t.Fatalf("stale audit verify: %v", err)
	}
	// Other calls work with the same session: only sensitive actions step up.
	if _, err := stale.Requests(ctx, true); err != nil {
		t.Fatalf("listing with a stale session: %v", err)
	}
	// A fresh login approves.
	fresh, _ := ta.loginClient(t, "bob", "security")
	if got, err := fresh.Review(ctx, r1.ID, true, api.ReviewRequest{}); err != nil || got.State != broker.StateApproved {
		t.Fatalf("fresh approve: %v", err)
	}
	if _, err := fresh.AuditVerify(ctx); err != nil {
		t.Fatalf("fresh audit verify: %v", err)
	}
}

// A login whose ID token has no auth_time cannot step up: the answer says
// why (step_up.no_auth_time), and the client's error says what to do.
func TestStepUpWithoutAuthTimeThroughTheAPI(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	ta.svc.SetPolicies(policy.Set{{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{broker.AuditScope}}})
	ctx := context.Background()
	raw, err := ta.iss.Mint(devissuer.Claims{Subject: "bob", Groups: []string{"security"}, Extra: map[string]any{"auth_time": nil}})
	if err != nil {
		t.Fatal(err)
	}
	c := &api.Client{BaseURL: ta.srv.URL}
	sess, err := c.Login(ctx, raw, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Token = sess.Token
	if who, err := c.WhoAmI(ctx); err != nil || who.AuthTime != nil || who.NoAuthTime != broker.NoAuthTimeIdP {
		t.Fatalf("whoami: %v %+v", err, who.AuthTime)
	}
	_, err = c.AuditVerify(ctx)
	var su *broker.StepUpError
	if !errors.As(err, &su) || su.NoAuthTime != broker.NoAuthTimeIdP || !su.AuthTime.IsZero() ||
		!strings.Contains(err.Error(), "did not report when you authenticated") {
		t.Fatalf("audit verify without auth_time: %#v", err)
	}
}
