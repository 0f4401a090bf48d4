package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// Black-box red team: a CI job (workload issuer, act_claim: actor) that
// alice triggered as GitHub user "alice-gh" or "ALICE" could be approved
// by alice. Through login, session and stored request, the act and the
// person act_people maps it to reach the review guard.
func TestActorCannotApproveTheirOwnJob(t *testing.T) {
	e := newEnv(t)
	gha := otherIssuer(t, e)
	v, err := oidc.NewVerifier([]oidc.IssuerConfig{
		{Name: "corp", URL: e.iss.URL(), ClientID: devissuer.DefaultClientID},
		{Name: "gha", URL: gha.URL(), Audience: "pamctl", Workload: true, GroupsClaim: "groups", ActClaim: "actor",
			ActPeople: map[string]string{"alice-gh": "alice@example.com"}},
	}, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.idv = v
	e.restart()
	ctx := context.Background()
	alice := e.login("alice", "security")
	job := func(actor string) broker.Identity {
		t.Helper()
		// One repository per actor: a job's pending request for the same
		// scopes would be its earlier one, made with another act.
		raw, err := gha.Mint(devissuer.Claims{Subject: "repo:acme/" + actor + ":ref:refs/heads/main", Audience: "pamctl", Groups: []string{"ml"},
			Extra: map[string]any{"actor": actor}})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := e.svc.Login(ctx, raw, "", audit.Client{})
		if err != nil {
			t.Fatalf("job login: %v", err)
		}
		who, _, err := e.svc.Authenticate(ctx, sess.Token)
		if err != nil {
			t.Fatal(err)
		}
		return who
	}
	for _, actor := range []string{"alice", "ALICE", "alice-gh", "Alice-GH", "alice@example.com"} {
		r, err := e.svc.CreateRequest(ctx, job(actor), broker.Ask{Scopes: []string{"model:gpt-4o"}})
		if err != nil || r.State != broker.StatePending {
			t.Fatalf("actor %s: request %v %+v", actor, err, r)
		}
		_, err = e.svc.Review(ctx, alice, r.ID, true, "", nil)
		if err == nil {
			t.Errorf("actor %q: alice approved the job she triggered", actor)
		} else if ok, why := e.svc.CanReview(r, alice); ok || !strings.Contains(why, "on your behalf") {
			t.Errorf("actor %q: refused (%v) for another reason: %v %s", actor, err, ok, why)
		}
	}
	// A call the job's token makes is held with the caller the proxy reads
	// from the token (act, no act_for): the broker completes it from the
	// grant, so alice cannot release her own job's call either.
	j := job("alice-gh")
	g := liveGrant(t, e, j, 0)
	caller := broker.Identity{Subject: j.Subject, Groups: j.Groups, Issuer: j.Issuer, Kind: j.Kind, Act: j.Act}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	held, err := e.svc.HoldPrompt(short, dropTableHold(caller, g.ID))
	if err != nil || held.State != broker.StatePending {
		t.Fatalf("hold: %v %+v", err, held)
	}
	if held.Requester.ActFor != "alice@example.com" {
		t.Errorf("held call's requester act_for %q", held.Requester.ActFor)
	}
	if ok, why := e.svc.CanReview(held, alice); ok {
		t.Errorf("alice may release her own job's call: %s", why)
	}
	// Another person's job is hers to approve.
	r, _ := e.svc.CreateRequest(ctx, job("carol-gh"), broker.Ask{Scopes: []string{"model:gpt-4o"}})
	if _, err := e.svc.Review(ctx, alice, r.ID, true, "", nil); err != nil {
		t.Errorf("carol's job: %v", err)
	}
}
