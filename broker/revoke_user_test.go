package broker_test

import (
	"context"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

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
