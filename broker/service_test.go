package broker_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t      testing.TB
	svc    *broker.Service
	db     *store.DB
	log    *store.AuditLog
	keys   *token.Keyring
	iss    *devissuer.Issuer
	clock  *clock
	dir    string
	master vault.MasterKey
	idv    *oidc.Verifier
	// retention is the broker's RequestRetention (0: keep everything).
	retention time.Duration
	storeOpts store.Options
}

var testPolicies = policy.Set{
	{
		Name: "ml-models", Subjects: policy.Subjects{Groups: []string{"ml"}},
		Scopes: []string{"model:gpt-4o", "model:gpt-4o-mini"}, MaxTTL: time.Hour,
		Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
		Limits:   policy.Limits{RPM: 60, Tokens: 200000},
	},
	{
		Name: "two-person", Subjects: policy.Subjects{Groups: []string{"ml"}},
		Scopes: []string{"model:o1"}, MaxTTL: time.Hour,
		Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 2},
	},
	{
		Name: "self-serve", Subjects: policy.Subjects{Groups: []string{"ml"}},
		Scopes: []string{"model:gpt-4o-nano"}, MaxTTL: 30 * time.Minute,
	},
	{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{"audit:read"}},
}

// testRules are the require_approval prompt rules in force.
var testRules = broker.RuleApproverMap{
	"destructive-sql": {Groups: []string{"security"}},
	"prod-data":       {Groups: []string{"dba"}},
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, dir: t.TempDir()}
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	iss, err := devissuer.New(srv.URL, devissuer.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss
	e.iss = iss
	e.idv, err = oidc.NewVerifier([]oidc.IssuerConfig{{Name: "corp", URL: srv.URL, ClientID: devissuer.DefaultClientID, ActClaim: "actor"}}, srv.Client(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.master, _ = vault.GenerateMasterKey()
	e.open()
	return e
}

func (e *env) open() {
	t := e.t
	ctx := context.Background()
	var err error
	if e.db, err = store.Open(e.dir, e.storeOpts); err != nil {
		t.Fatal(err)
	}
	if rk, err := store.NewRecordKey(make([]byte, 32)); err == nil {
		e.db.SetRecordKey(rk)
	}
	v, err := vault.Open(ctx, e.db, e.master, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if e.keys, err = token.LoadKeyring(ctx, e.db, v.Sealer(), 8*time.Hour, e.clock.Now); err != nil {
		t.Fatal(err)
	}
	if e.log, err = e.db.AuditLog(store.AuditOptions{Signer: e.keys, Clock: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	e.svc, err = broker.New(ctx, broker.Config{Store: e.db, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: e.log, Policies: testPolicies, Rules: testRules, Now: e.clock.Now, RequestRetention: e.retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
}

func (e *env) close() {
	if e.log != nil {
		e.log.Close()
		e.log = nil
	}
	if e.db != nil {
		e.db.Close()
		e.db = nil
	}
}

func (e *env) restart() { e.close(); e.open() }

// login runs the broker login with an ID token minted for sub.
func (e *env) login(sub string, groups ...string) broker.Identity {
	e.t.Helper()
	raw, err := e.iss.Mint(devissuer.Claims{Subject: sub, Email: sub + "@example.com", Groups: groups})
	if err != nil {
		e.t.Fatal(err)
	}
	sess, err := e.svc.Login(context.Background(), raw, "", audit.Client{})
	if err != nil {
		e.t.Fatalf("login %s: %v", sub, err)
	}
	who, _, err := e.svc.Authenticate(context.Background(), sess.Token)
	if err != nil {
		e.t.Fatalf("authenticate %s: %v", sub, err)
	}
	return who
}

func code(err error) broker.Code { return broker.ErrorCode(err) }

func TestApprovalFlowAndTokenClaims(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	carol := e.login("carol", "ml")

	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, TTL: 30 * time.Minute, Reason: "eval"})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != broker.StatePending {
		t.Fatalf("state %s", r.State)
	}
	// No token while pending.
	if _, _, err := e.svc.Token(ctx, alice, r.ID); code(err) != broker.CodePending {
		t.Fatalf("token while pending: %v", err)
	}
	// The requester can never approve, and a non-approver neither.
	if _, err := e.svc.Review(ctx, alice, r.ID, true, "", nil); code(err) != broker.CodeForbidden || !strings.Contains(err.Error(), "own request") {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := e.svc.Review(ctx, carol, r.ID, true, "", nil); code(err) != broker.CodeNotFound && code(err) != broker.CodeForbidden {
		t.Fatalf("non-approver: %v", err)
	}
	// Widening on approval is refused and changes nothing.
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", []string{"model:gpt-4o", "model:gpt-4o-mini"}); code(err) != broker.CodeForbidden {
		t.Fatalf("widen: %v", err)
	}
	if got, _ := e.svc.Get(ctx, alice, r.ID); got.State != broker.StatePending || len(got.Reviews) != 0 {
		t.Fatalf("refused review changed state: %+v", got)
	}
	pendingList, _ := e.svc.List(ctx, bob, true)
	if len(pendingList) != 1 || pendingList[0].ID != r.ID {
		t.Fatalf("approver's pending list: %+v", pendingList)
	}

	e.clock.Add(5 * time.Minute) // the grant's life starts at approval
	approvedAt := e.clock.Now()
	r, err = e.svc.Review(ctx, bob, r.ID, true, "ok", nil)
	if err != nil || r.State != broker.StateApproved {
		t.Fatalf("approve: %v %+v", err, r)
	}
	if !r.ExpiresAt.Equal(approvedAt.Add(30 * time.Minute)) {
		t.Fatalf("expires %v, want approval+ttl %v", r.ExpiresAt, approvedAt.Add(30*time.Minute))
	}
	raw, _, err := e.svc.Token(ctx, alice, "")
	if err != nil {
		t.Fatal(err)
	}
	v := &token.Verifier{Keys: e.keys, Issuer: "http://broker.test", Audience: token.AudienceProxy, Use: token.UseAccess, Now: e.clock.Now}
	c, err := v.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" || c.Req != r.ID || c.Scope != "model:gpt-4o" || c.ID == "" || c.Limits == nil || c.Limits.RPM != 60 ||
		!c.ExpiresAt.Time.Equal(*r.ExpiresAt) || len(c.Groups) != 1 || c.Groups[0] != "ml" {
		t.Fatalf("claims %+v", c)
	}
	// bob cannot use alice's grant.
	if _, _, err := e.svc.Token(ctx, bob, r.ID); err == nil {
		t.Fatal("bob got alice's token")
	}
	// A broker session is no access token, and an access token is no session.
	if _, _, err := e.svc.Authenticate(context.Background(), raw); code(err) != broker.CodeUnauthenticated {
		t.Fatalf("access token accepted as session: %v", err)
	}
	aliceRaw, _ := e.iss.Mint(devissuer.Claims{Subject: "alice", Groups: []string{"ml"}})
	sess, _ := e.svc.Login(ctx, aliceRaw, "", audit.Client{})
	if _, err := v.Verify(sess.Token); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("session accepted as access token: %v", err)
	}
	// A second review of a decided request is a conflict.
	if _, err := e.svc.Review(ctx, bob, r.ID, false, "", nil); code(err) != broker.CodeConflict {
		t.Fatalf("review after approval: %v", err)
	}
	// The trail has the whole story, the refused reviews included.
	var types []string
	e.log.Range(ctx, 0, func(ev audit.Event) bool { types = append(types, string(ev.Type)); return true })
	want := "login login login request.created review.refused review.refused request.approved token.issued"
	if got := strings.Join(types, " "); !strings.HasPrefix(got, want) {
		t.Fatalf("audit types %q, want prefix %q", got, want)
	}
}

func TestTwoDistinctApprovers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	dave := e.login("dave", "security")
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:o1"}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil || r.State != broker.StatePending || r.Approvals() != 1 {
		t.Fatalf("first approval: %v %+v", err, r)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); code(err) != broker.CodeConflict {
		t.Fatalf("same approver twice: %v", err)
	}
	if r, _ = e.svc.Get(ctx, alice, r.ID); r.State != broker.StatePending || r.Approvals() != 1 {
		t.Fatalf("after duplicate: %+v", r)
	}
	if r, err = e.svc.Review(ctx, dave, r.ID, true, "", nil); err != nil || r.State != broker.StateApproved {
		t.Fatalf("second approver: %v %+v", err, r)
	}
}

func TestDenyNarrowAndOutOfPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")

	_, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-5"}})
	if code(err) != broker.CodeForbidden || !strings.Contains(err.Error(), "model:gpt-4o") {
		t.Fatalf("out of policy: %v", err)
	}
	if rs, _ := e.svc.List(ctx, alice, false); len(rs) != 0 {
		t.Fatalf("refused request was stored: %+v", rs)
	}

	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o", "model:gpt-4o-mini"}})
	r, err = e.svc.Review(ctx, bob, r.ID, true, "mini is enough", []string{"model:gpt-4o-mini"})
	if err != nil || r.State != broker.StateApproved || strings.Join(r.Scopes, " ") != "model:gpt-4o-mini" {
		t.Fatalf("narrow: %v %+v", err, r)
	}

	r2, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if r2, err = e.svc.Review(ctx, bob, r2.ID, false, "no", nil); err != nil || r2.State != broker.StateDenied {
		t.Fatalf("deny: %v", err)
	}
	if _, err := e.svc.Review(ctx, bob, r2.ID, true, "", nil); code(err) != broker.CodeConflict {
		t.Fatalf("approve denied: %v", err)
	}
	if _, _, err := e.svc.Token(ctx, alice, r2.ID); code(err) != broker.CodeConflict {
		t.Fatalf("token of denied: %v", err)
	}
}

func TestClampExpiryAndSweep(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")

	auto, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}, TTL: 2 * time.Hour})
	if err != nil || auto.State != broker.StateApproved || !auto.Clamped || auto.TTL != 30*time.Minute {
		t.Fatalf("auto-approved clamp: %v %+v", err, auto)
	}
	pending, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})

	e.clock.Add(61 * time.Minute) // past pending TTL (1h) and the grant (30m)
	if _, err := e.svc.Review(ctx, bob, pending.ID, true, "", nil); code(err) != broker.CodeConflict {
		t.Fatalf("approve expired: %v", err)
	}
	if _, _, err := e.svc.Token(ctx, alice, auto.ID); code(err) != broker.CodeConflict {
		t.Fatalf("token of expired grant: %v", err)
	}
	if err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{auto.ID, pending.ID} {
		r, _ := e.svc.Get(ctx, alice, id)
		if r.State != broker.StateExpired || r.EndedAt == nil {
			t.Fatalf("%s after sweep: %+v", id, r)
		}
	}
	n := 0
	e.log.Range(ctx, 0, func(ev audit.Event) bool {
		if ev.Type == audit.TypeRequestExpired {
			n++
		}
		return true
	})
	if n != 2 {
		t.Fatalf("request.expired events: %d", n)
	}
}

func TestRevokeSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if e.svc.IsRevoked(r.ID) {
		t.Fatal("revoked before revoke")
	}
	if _, err := e.svc.Revoke(ctx, alice, r.ID, false); err != nil {
		t.Fatal(err)
	}
	if !e.svc.IsRevoked(r.ID) {
		t.Fatal("not revoked")
	}
	if _, _, err := e.svc.Token(ctx, alice, r.ID); code(err) != broker.CodeConflict {
		t.Fatalf("token after revoke: %v", err)
	}
	e.restart()
	if !e.svc.IsRevoked(r.ID) {
		t.Fatal("revocation lost on restart")
	}
	if _, err := e.svc.Revoke(ctx, alice, r.ID, false); code(err) != broker.CodeConflict {
		t.Fatalf("revoke twice: %v", err)
	}
}

func TestLoginRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := devissuer.Claims{Subject: "mallory", Groups: []string{"security"}}
	f := e.iss.Forge()
	other, _ := f.OtherKey(c)
	none, _ := f.AlgNone(c)
	hs, _ := f.HS256WithPublicKey(c)
	foreign, _ := f.ForeignIssuer("https://evil.example.com", c)
	wrongAud, _ := e.iss.Mint(devissuer.Claims{Subject: "mallory", Audience: "someone-else"})
	expired, _ := e.iss.Mint(devissuer.Claims{Subject: "mallory", Expiry: e.clock.Now().Add(-time.Minute), IssuedAt: e.clock.Now().Add(-time.Hour)})
	for name, raw := range map[string]string{"other key": other, "alg none": none, "HS256 with public key": hs, "unknown issuer": foreign, "wrong audience": wrongAud, "expired": expired, "garbage": "x.y.z"} {
		_, err := e.svc.Login(ctx, raw, "", audit.Client{})
		if code(err) != broker.CodeUnauthenticated {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && strings.Contains(err.Error(), raw) {
			t.Errorf("%s: error echoes the token", name)
		}
	}
	n := 0
	e.log.Range(ctx, 0, func(ev audit.Event) bool {
		if ev.Type == audit.TypeLoginFailed {
			n++
		} else {
			t.Errorf("unexpected event %s", ev.Type)
		}
		return true
	})
	if n != 7 {
		t.Fatalf("login.failed events: %d", n)
	}
}

func TestWaitWakesOnDecision(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	r, _ := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	done := make(chan *broker.Request)
	go func() {
		got, _ := e.svc.Wait(ctx, alice, r.ID)
		done <- got
	}()
	time.Sleep(10 * time.Millisecond) // let Wait subscribe; correctness does not depend on it
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got.State != broker.StateApproved {
			t.Fatalf("woke with %s", got.State)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake")
	}
}

func TestAuditReadNeedsScope(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.svc.CanReadAudit(ctx, e.login("bob", "security")); err != nil {
		t.Fatalf("auditor: %v", err)
	}
	if err := e.svc.CanReadAudit(ctx, e.login("alice", "ml")); code(err) != broker.CodeForbidden {
		t.Fatalf("non-auditor: %v", err)
	}
}

func TestPromptHoldReleaseTimeoutAndRetry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	// A released call needs its grant to be live (redteam_grant_ended_test.go).
	g, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}})
	if err != nil {
		t.Fatal(err)
	}
	hold := broker.Hold{Caller: alice, GrantID: g.ID, Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o", Endpoint: "/v1/chat/completions", Excerpt: "please DROP TABLE users", SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32)}

	// Released while the caller waits.
	done := make(chan *broker.Request, 1)
	go func() {
		r, err := e.svc.HoldPrompt(ctx, hold)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	var held *broker.Request
	for deadline := time.Now().Add(5 * time.Second); held == nil && time.Now().Before(deadline); {
		rs, _ := e.svc.List(ctx, bob, true)
		if len(rs) == 1 {
			held = rs[0]
		}
	}
	if held == nil || held.Kind != broker.KindPrompt || held.Prompt.Rule != "destructive-sql" || held.Prompt.Excerpt != hold.Excerpt {
		t.Fatalf("held review not listed for the approver: %+v", held)
	}
	if _, err := e.svc.Review(ctx, alice, held.ID, true, "", nil); code(err) != broker.CodeForbidden {
		t.Fatalf("caller released own hold: %v", err)
	}
	if _, err := e.svc.Review(ctx, bob, held.ID, true, "fine", nil); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.State != broker.StateApproved || !r.Prompt.Used {
		t.Fatalf("released hold: %+v", r)
	}
	if _, _, err := e.svc.Token(ctx, alice, held.ID); err == nil {
		t.Fatal("a prompt review minted an access token")
	}

	// The caller gives up; a later approval allows one identical retry.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	r, err := e.svc.HoldPrompt(short, hold)
	cancel()
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("timed-out hold: %v %+v", err, r)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	other := hold
	other.SHA256 = strings.Repeat("cd", 32)
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	if r2, _ := e.svc.HoldPrompt(short, other); r2.State != broker.StatePending {
		t.Fatalf("a different prompt used the approval: %+v", r2)
	}
	cancel()
	// The same prompt to another model, on another endpoint, as a tool
	// call, in another call (its words in other roles, with other
	// parameters), or held by a rule the approvers did not approve: not
	// the call they were shown.
	for what, edit := range map[string]func(*broker.Hold){
		"another call":     func(h *broker.Hold) { h.CallSHA256 = strings.Repeat("34", 32) },
		"another model":    func(h *broker.Hold) { h.Model = "gpt-4o-mini" },
		"another endpoint": func(h *broker.Hold) { h.Endpoint = "/v1/responses" },
		"a tool call":      func(h *broker.Hold) { h.Tool = "shell" },
		"another rule":     func(h *broker.Hold) { h.AlsoRules = []string{"exfiltration"} },
	} {
		variant := hold
		edit(&variant)
		short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
		r2, _ := e.svc.HoldPrompt(short, variant)
		cancel()
		if r2.ID == r.ID || r2.State != broker.StatePending {
			t.Fatalf("%s used the approval: %+v", what, r2)
		}
	}
	retry, err := e.svc.HoldPrompt(ctx, hold)
	if err != nil || retry.ID != r.ID || retry.State != broker.StateApproved {
		t.Fatalf("retry within window: %v %+v", err, retry)
	}
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if again, _ := e.svc.HoldPrompt(short, hold); again.ID == r.ID || again.State != broker.StatePending {
		t.Fatalf("approval used twice: %+v", again)
	}

	// Denied while waiting.
	e.clock.Add(time.Second) // tell this hold from the earlier pending one by its creation time
	go func() {
		r, _ := e.svc.HoldPrompt(ctx, other)
		done <- r
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		rs, _ := e.svc.List(ctx, bob, true)
		var target *broker.Request
		for _, x := range rs {
			if x.Prompt != nil && x.Prompt.SHA256 == other.SHA256 && x.CreatedAt.Equal(e.clock.Now()) && len(x.Reviews) == 0 {
				target = x
			}
		}
		if target != nil {
			if _, err := e.svc.Review(ctx, bob, target.ID, false, "no", nil); err == nil {
				break
			}
		}
	}
	select {
	case r := <-done:
		if r.State != broker.StateDenied || r.Prompt.SHA256 != other.SHA256 {
			t.Fatalf("denied hold: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("denied hold did not return")
	}
}

// An email the issuer did not verify is not part of the identity: policies
// and the no-self-review rule match on email.
func TestUnverifiedEmailIgnored(t *testing.T) {
	e := newEnv(t)
	raw, err := e.iss.Mint(devissuer.Claims{Subject: "eve", Email: "alice@example.com", Groups: []string{"ml"}, Extra: map[string]any{"email_verified": false}})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := e.svc.Login(context.Background(), raw, "", audit.Client{})
	if err != nil {
		t.Fatal(err)
	}
	if sess.Identity.Email != "" {
		t.Fatalf("unverified email kept: %+v", sess.Identity)
	}
}

// A workload acting for a person carries an act claim, and that person can
// never approve the workload's request.
func TestActingPersonCannotApprove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	raw, err := e.iss.Mint(devissuer.Claims{Subject: "repo:acme/app:ref:refs/heads/main", Groups: []string{"ml"}, Extra: map[string]any{"actor": "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := e.svc.Login(ctx, raw, "", audit.Client{})
	if err != nil {
		t.Fatal(err)
	}
	ci, _, err := e.svc.Authenticate(context.Background(), sess.Token)
	if err != nil || ci.Act != "bob" {
		t.Fatalf("workload identity: %v %+v", err, ci)
	}
	bob := e.login("bob", "security")
	dave := e.login("dave", "security")
	r, err := e.svc.CreateRequest(ctx, ci, broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); code(err) != broker.CodeForbidden && code(err) != broker.CodeNotFound {
		t.Fatalf("the acting person approved the workload's request: %v", err)
	}
	if _, err := e.svc.Review(ctx, dave, r.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.svc.Token(ctx, ci, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	v := &token.Verifier{Keys: e.keys, Issuer: "http://broker.test", Audience: token.AudienceProxy, Use: token.UseAccess, Now: e.clock.Now}
	c, err := v.Verify(tok)
	if err != nil || c.Act == nil || c.Act.Sub != "bob" {
		t.Fatalf("act claim: %v %+v", err, c)
	}
}

// When several rules hold a call, only someone who is an approver of every
// one of them may release it.
func TestPromptHoldNeedsApproverOfEveryRule(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	erin := e.login("erin", "security", "dba")
	hold := broker.Hold{Caller: alice, GrantID: liveGrantID(t, e, alice), Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		AlsoApprovedBy: []policy.Subjects{{Groups: []string{"dba"}}}, Model: "gpt-4o", Excerpt: "DROP TABLE prod", SHA256: strings.Repeat("ef", 32)}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	r, err := e.svc.HoldPrompt(short, hold)
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("hold: %v %+v", err, r)
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "", nil); code(err) != broker.CodeForbidden && code(err) != broker.CodeNotFound {
		t.Fatalf("an approver of only one rule released the call: %v", err)
	}
	if r, err = e.svc.Review(ctx, erin, r.ID, true, "", nil); err != nil || r.State != broker.StateApproved {
		t.Fatalf("approver of both rules: %v %+v", err, r)
	}
}

// A held call is shown with its method (a POST and a DELETE of one path
// are different calls to approve), stored with it and recorded in
// prompt.held's endpoint as proxy.call records it. A hold from a proxy
// older than the method field has none: it is shown as not reported and
// recorded with the path alone, never with a guessed method. A method
// that is not an HTTP token is refused.
func TestHoldShowsItsMethod(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	base := broker.Hold{Caller: alice, GrantID: "req_g", Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o", Endpoint: "/v1/chat/completions/chatcmpl_1", Excerpt: "[not readable by pamctl: body]", SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32)}
	for i, c := range []struct{ method, call, trail string }{
		{"DELETE", "DELETE /v1/chat/completions/chatcmpl_1", "DELETE /v1/chat/completions/chatcmpl_1"},
		{"POST", "POST /v1/chat/completions/chatcmpl_1", "POST /v1/chat/completions/chatcmpl_1"},
		{"", "(method not reported) /v1/chat/completions/chatcmpl_1", "/v1/chat/completions/chatcmpl_1"}, // an older proxy
	} {
		h := base
		h.Method = c.method
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		r, err := e.svc.HoldPrompt(short, h)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.Get(ctx, alice, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Prompt.Method != c.method || got.Prompt.Call() != c.call {
			t.Errorf("held with method %q: stored %q, shown %q", c.method, got.Prompt.Method, got.Prompt.Call())
		}
		if ev := e.eventsOf(audit.TypePromptHeld); len(ev) != i+1 || ev[i].Endpoint != c.trail || ev[i].Review != r.ID {
			t.Errorf("held with method %q: prompt.held %+v", c.method, ev)
		}
	}
	for _, m := range []string{"POST\n", "GET /v1/models", "<!channel>", "P\u202eOST", strings.Repeat("X", 33)} {
		h := base
		h.Method = m
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if _, err := e.svc.HoldPrompt(short, h); code(err) != broker.CodeInvalid || !strings.Contains(err.Error(), "method") {
			t.Errorf("held with method %q: %v", m, err)
		}
		cancel()
	}
}

// A hold keeps the pieces of its excerpt with the places the rule matched
// in (the trail records the excerpt's text, which names them too), within
// bounds: no more pieces, places or bytes than a proxy sends.
func TestHoldKeepsWhereTheRuleMatched(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	h := broker.Hold{Caller: alice, GrantID: "req_g", Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions", SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32),
		Excerpt:      "[prompt of 9000 bytes; rule \"destructive-sql\" matches 2 times]\n[found in messages[0] (system)]\n…DROP TABLE a…\n[found in input[1] (user)]\n…drop table b",
		MatchSummary: `prompt of 9000 bytes; rule "destructive-sql" matches 2 times`,
		Matches:      []broker.HeldMatch{{Where: []string{"messages[0] (system)"}, Text: "…DROP TABLE a…"}, {Where: []string{"input[1] (user)"}, Text: "…drop table b"}}}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	r, err := e.svc.HoldPrompt(short, h)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := e.svc.Get(ctx, alice, r.ID)
	if got.Prompt.MatchSummary != h.MatchSummary || len(got.Prompt.Matches) != 2 || got.Prompt.Matches[1].Where[0] != "input[1] (user)" || got.Prompt.Matches[0].Text != "…DROP TABLE a…" {
		t.Fatalf("stored %+v", got.Prompt)
	}
	if ev := e.eventsOf(audit.TypePromptHeld); len(ev) != 1 || ev[0].Prompt != h.Excerpt {
		t.Fatalf("prompt.held %+v", ev)
	}
	many := make([]string, 17)
	for name, m := range map[string][]broker.HeldMatch{
		"17 pieces":            make([]broker.HeldMatch, 17),
		"17 places":            {{Where: many, Text: "x"}},
		"17 KiB of text":       {{Where: []string{"input"}, Text: strings.Repeat("x", 17<<10)}},
		"17 KiB of its places": {{Where: []string{strings.Repeat("p", 17<<10)}, Text: "x"}},
	} {
		bad := h
		bad.Matches = m
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if _, err := e.svc.HoldPrompt(short, bad); code(err) != broker.CodeInvalid || !strings.Contains(err.Error(), "excerpt") {
			t.Errorf("%s: %v", name, err)
		}
		cancel()
	}
}

// A hold carries what an approver is shown and the trail records it first:
// one with a tool name of megabytes is refused, and so is one whose
// prompt.held event cannot be written (no pending review is left without
// its event in the trail).
func TestHoldIsBoundedAndAuditedFirst(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	hold := broker.Hold{Caller: alice, GrantID: "req_g", Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o", Endpoint: "/v1/chat/completions", Tool: "safe_" + strings.Repeat("X", 3<<20), Excerpt: "tool arguments: {}", SHA256: strings.Repeat("ab", 32)}
	first, cancelFirst := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelFirst()
	if _, err := e.svc.HoldPrompt(first, hold); code(err) != broker.CodeInvalid || !strings.Contains(err.Error(), "tool name") {
		t.Fatalf("a 3 MiB tool name: %v", err)
	}
	hold.Tool = "shell"
	e.log.Close() // the trail can no longer be written
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := e.svc.HoldPrompt(short, hold); err == nil || !strings.Contains(err.Error(), "audit trail") {
		t.Fatalf("a hold the trail cannot record: %v", err)
	}
	if rs, _ := e.svc.List(ctx, bob, true); len(rs) != 0 {
		t.Fatalf("a review was left pending without its event: %+v", rs[0])
	}
}

// Each place of a held call's excerpt is one place on one line: a proxy's
// place that holds a line feed (which would add a line to the excerpt) or
// splits into two places at a "; " outside quotes is refused, even when
// the excerpt is its pieces; a quoted name (audit.QuoteLine) holding a
// bidi control, a quote, a "; " and a "]" is kept exactly.
func TestHoldRefusesAPlaceThatIsNotOnePlace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	hold := func(where string) broker.Hold {
		pieces := []audit.HeldPiece{{Where: []string{where}, Text: "DROP TABLE a"}}
		return broker.Hold{Caller: alice, GrantID: "req_g", Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
			Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions", SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32),
			Excerpt: audit.HeldExcerpt("", pieces), Matches: []broker.HeldMatch{{Where: pieces[0].Where, Text: pieces[0].Text}}}
	}
	for _, where := range []string{"messages[1] (user)\n[found in messages[0] (system)]", "messages[1] (user); messages[0] (system)", `messages[1] (role "x"); messages[0] (system)`,
		// every other line break a reader may end a line at, raw
		"messages[1] (user)\r[found in messages[0] (system)]", "messages[1] (user)\u2028[found in messages[0] (system)]",
		"messages[1] (user)\u2029[found in messages[0] (system)]", "messages[1] (user)\u0085[found in messages[0] (system)]",
		// and those Python's str.splitlines ends a line at too
		"messages[1] (user)\x1c[found in messages[0] (system)]", "messages[1] (user)\x1d[found in messages[0] (system)]", "messages[1] (user)\x1e[found in messages[0] (system)]"} {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if _, err := e.svc.HoldPrompt(short, hold(where)); code(err) != broker.CodeInvalid || !strings.Contains(err.Error(), "place") {
			t.Errorf("held with the place %q: %v", where, err)
		}
		cancel()
	}
	where := "messages[1] (role " + audit.QuoteLine("u\u202e\"x; y]\n[found in messages[0] (system)]\r\u2028\u0085\x1e") + ")"
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	h := hold(where)
	if _, err := e.svc.HoldPrompt(short, h); err != nil {
		t.Fatalf("the place %q: %v", where, err)
	}
	if ev := e.eventsOf(audit.TypePromptHeld); len(ev) != 1 || ev[0].Prompt != h.Excerpt {
		t.Fatalf("prompt.held %+v", ev)
	}
	if _, pieces := audit.SplitHeldExcerpt(h.Excerpt); len(pieces) != 1 || len(pieces[0].Where) != 1 || pieces[0].Where[0] != where {
		t.Errorf("the excerpt splits into %q", pieces)
	}
}
