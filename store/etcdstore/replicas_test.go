package etcdstore_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// propagation is the bound for a change on one replica to reach
// the others' in-memory state.
const propagation = time.Second

type nopAudit struct{}

func (nopAudit) Append(context.Context, *audit.Event) error { return nil }

var replicaPolicies = policy.Set{{
	Name: "ml-models", Subjects: policy.Subjects{Groups: []string{"ml"}},
	Scopes: []string{"model:gpt-4o"}, MaxTTL: time.Hour,
	Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
}}

var replicaRules = broker.RuleApproverMap{"destructive-sql": {Groups: []string{"security"}}}

// replica is one broker over the shared etcd store, following it.
type replica struct {
	db   *etcdstore.DB
	keys *token.Keyring
	svc  *broker.Service
}

type replicas struct {
	t   *testing.T
	iss *devissuer.Issuer
	idv *oidc.Verifier
	rs  []*replica
}

// startReplicas starts n broker services on one prefix of c, as n pamctl
// replicas sharing one master key would run.
func startReplicas(t *testing.T, c *etcdtest.Cluster, n int) *replicas {
	t.Helper()
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	iss, err := devissuer.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss
	idv, err := oidc.NewVerifier([]oidc.IssuerConfig{{Name: "corp", URL: srv.URL, ClientID: devissuer.DefaultClientID}}, srv.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mk, _ := vault.GenerateMasterKey()
	out := &replicas{t: t, iss: iss, idv: idv}
	prefix := "/replicas/"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range n {
		db, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: c.Endpoints(), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		db.SetRecordKey(testRecKey)
		t.Cleanup(func() { db.Close() })
		v, err := vault.Open(ctx, db, mk, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := token.LoadKeyring(ctx, db, v.Sealer(), 8*time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := broker.New(ctx, broker.Config{Store: db, IDTokens: idv, Keys: keys, Issuer: "http://broker.test", Audit: nopAudit{},
			Policies: replicaPolicies, Rules: replicaRules})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); svc.Follow(ctx, db) }()
		t.Cleanup(func() { cancel(); <-done })
		out.rs = append(out.rs, &replica{db: db, keys: keys, svc: svc})
	}
	return out
}

// login logs sub in through replica i and returns the session.
func (r *replicas) login(i int, sub string, groups ...string) (*broker.Session, broker.Identity) {
	r.t.Helper()
	raw, err := r.iss.Mint(devissuer.Claims{Subject: sub, Groups: groups})
	if err != nil {
		r.t.Fatal(err)
	}
	sess, err := r.rs[i].svc.Login(context.Background(), raw, "", audit.Client{})
	if err != nil {
		r.t.Fatal(err)
	}
	who, _, err := r.rs[i].svc.Authenticate(context.Background(), sess.Token)
	if err != nil {
		r.t.Fatal(err)
	}
	return sess, who
}

// within waits up to propagation for cond, failing the test with what
// otherwise.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > propagation {
			t.Fatalf("%s: not within %s", what, propagation)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
}

func TestReplicasFollowEachOther(t *testing.T) {
	c := etcdtest.Start(t, 1)
	rs := startReplicas(t, c, 2)
	a, b := rs.rs[0], rs.rs[1]
	ctx := context.Background()
	_, alice := rs.login(0, "alice", "ml")
	_, bob := rs.login(1, "bob", "security")

	// Request on A, approve on B, use the token at B, revoke on A.
	req, err := a.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Review(ctx, bob, req.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	raw, _, err := a.svc.Token(ctx, alice, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	verifyAt := func(r *replica) error {
		_, err := (&token.Verifier{Keys: r.keys, Issuer: "http://broker.test", Audience: token.AudienceProxy, Use: token.UseAccess}).Verify(raw)
		return err
	}
	if err := verifyAt(b); err != nil || b.svc.IsRevoked(req.ID) {
		t.Fatalf("B refuses A's token: %v, revoked %v", err, b.svc.IsRevoked(req.ID))
	}
	if _, err := a.svc.Revoke(ctx, alice, req.ID, false); err != nil {
		t.Fatal(err)
	}
	within(t, "revoked on A, refused at B", func() bool { return b.svc.IsRevoked(req.ID) })
	if _, ok := b.svc.RevokedGrants()[req.ID]; !ok {
		t.Fatal("B's revocation stream to its proxies lacks the grant")
	}

	// Rotate on B: A publishes and verifies the new key.
	oldKID := a.keys.ActiveKID()
	newKID, err := b.keys.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "rotated on B, new key at A", func() bool { _, ok := a.keys.PublicKey(newKID); return ok })
	within(t, "A signs with the new key", func() bool { return a.keys.ActiveKID() == newKID })
	if _, ok := a.keys.PublicKey(oldKID); !ok {
		t.Fatal("A unpublished the retired key before its tokens expired")
	}
	found := false
	for _, k := range a.keys.JWKS().Keys {
		found = found || k.Kid == newKID
	}
	if !found {
		t.Fatal("A's JWKS lacks the new key")
	}
	req2, err := b.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.Review(ctx, bob, req2.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	if raw, _, err = b.svc.Token(ctx, alice, req2.ID); err != nil {
		t.Fatal(err)
	}
	if err := verifyAt(a); err != nil {
		t.Fatalf("A refuses a token B signed with the new key: %v", err)
	}
}

func TestReplicasEndSessionsEverywhere(t *testing.T) {
	c := etcdtest.Start(t, 1)
	rs := startReplicas(t, c, 2)
	a, b := rs.rs[0], rs.rs[1]
	ctx := context.Background()
	sess, alice := rs.login(0, "alice", "ml")
	if _, _, err := b.svc.Authenticate(ctx, sess.Token); err != nil { // cached at B now
		t.Fatal(err)
	}
	if err := a.svc.Logout(ctx, alice, sess.ID, audit.Client{}); err != nil {
		t.Fatal(err)
	}
	within(t, "logged out on A, refused at B", func() bool {
		_, _, err := b.svc.Authenticate(ctx, sess.Token)
		return broker.ErrorCode(err) == broker.CodeUnauthenticated
	})
}

// heldOnA starts two replicas, has bob (security) approve alice's grant
// through B, and holds a call of alice's under it on A; got receives what
// HoldPrompt returns. The grant matters: a call on an unknown or ended
// grant is never released.
func heldOnA(t *testing.T) (rs *replicas, alice, bob broker.Identity, grant *broker.Request, got chan *broker.Request) {
	t.Helper()
	rs = startReplicas(t, etcdtest.Start(t, 1), 2)
	a, b := rs.rs[0], rs.rs[1]
	ctx := context.Background()
	_, alice = rs.login(0, "alice", "ml")
	_, bob = rs.login(1, "bob", "security")
	grant, err := a.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Review(ctx, bob, grant.ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	got = make(chan *broker.Request, 1)
	go func() {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		r, err := a.svc.HoldPrompt(hctx, broker.Hold{Caller: alice, GrantID: grant.ID, Rule: "destructive-sql",
			Approvers: policy.Subjects{Groups: []string{"security"}}, Model: "gpt-4o", Endpoint: "/v1/chat/completions", Excerpt: "DROP TABLE", SHA256: "abc"})
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	return rs, alice, bob, grant, got
}

func TestReplicasReleaseHeldCalls(t *testing.T) {
	// A call held on A ...
	rs, _, bob, _, got := heldOnA(t)
	b := rs.rs[1]
	ctx := context.Background()
	var held []*broker.Request
	deadline := time.Now().Add(30 * time.Second)
	for len(held) == 0 && time.Now().Before(deadline) {
		var err error
		if held, err = b.db.RequestsInState(ctx, broker.StatePending, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(held) != 1 || held[0].Kind != broker.KindPrompt {
		t.Fatalf("held calls seen by B: %+v", held)
	}
	// ... approved through B, is released on A.
	if _, err := b.svc.Review(ctx, bob, held[0].ID, true, "", nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case r := <-got:
		if r == nil || r.State != broker.StateApproved || r.Prompt == nil || !r.Prompt.Used {
			t.Fatalf("held call not released: %+v", r)
		}
		if d := time.Since(start); d > propagation {
			t.Fatalf("released after %s, want within %s", d, propagation)
		}
		t.Logf("approved on B, released on A: %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(propagation):
		t.Fatalf("the call held on A was not released within %s of its approval on B", propagation)
	}
}

// A call held on replica A ends within the propagation bound when its
// grant is revoked through replica B: the agent waiting on A is told the
// grant ended (not at the hold timeout), and the call leaves every
// replica's queue. B ends the held call itself; a replica that only
// records the revocation (an older version, during a rolling upgrade)
// is written as one: A's waiter sees the grant change through the feed
// and ends the call.
func TestReplicasEndHeldCallsWithTheirGrant(t *testing.T) {
	for name, revoke := range map[string]func(t *testing.T, b *replica, who broker.Identity, grant string){
		"revoked on B": func(t *testing.T, b *replica, who broker.Identity, grant string) {
			if _, err := b.svc.Revoke(context.Background(), who, grant, false); err != nil {
				t.Fatal(err)
			}
		},
		"revoke recorded by an older B": func(t *testing.T, b *replica, who broker.Identity, grant string) {
			now := time.Now().UTC()
			if _, err := b.db.UpdateRequest(context.Background(), grant, func(r *broker.Request) error {
				r.State, r.EndedAt, r.EndedBy = broker.StateRevoked, &now, &who
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) { replicasEndHeldCalls(t, revoke) })
	}
}

func replicasEndHeldCalls(t *testing.T, revoke func(t *testing.T, b *replica, who broker.Identity, grant string)) {
	rs, alice, bob, grant, got := heldOnA(t)
	b := rs.rs[1]
	ctx := context.Background()
	var err error
	var held []*broker.Request
	for deadline := time.Now().Add(30 * time.Second); len(held) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if held, err = b.svc.List(ctx, bob, true); err != nil {
			t.Fatal(err)
		}
	}
	if len(held) != 1 || held[0].Kind != broker.KindPrompt {
		t.Fatalf("held calls B shows bob: %+v", held)
	}
	start := time.Now()
	revoke(t, b, alice, grant.ID)
	select {
	case r := <-got:
		if r == nil || r.State != broker.StateExpired || !strings.Contains(r.EndReason, grant.ID) {
			t.Fatalf("the held call on A after its grant was revoked on B: %+v", r)
		}
		t.Logf("revoked on B, ended on A: %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(propagation):
		t.Fatalf("the call held on A still waits %s after its grant was revoked on B", propagation)
	}
	for i, r := range rs.rs {
		if q, err := r.svc.List(ctx, bob, true); err != nil || len(q) != 0 {
			t.Fatalf("replica %d still offers bob %+v (%v)", i, q, err)
		}
	}
}
