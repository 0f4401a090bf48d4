package broker_test

import (
	"context"
	"testing"

	"github.com/pamctl/pamctl/broker"
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
