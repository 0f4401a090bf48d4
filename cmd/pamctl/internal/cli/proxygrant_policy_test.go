package cli

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/link"
)

// A proxy enrolls only on a grant today's policies still give: an approved
// proxy:serve grant of an identity no policy names (one the sweep has not
// ended after a policy change, or one that never went through a policy)
// is refused, as Token refuses to mint on it, and no key is handed out.
func TestEnrollRefusesAGrantNoPolicyGives(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", "http://127.0.0.1:9")
	brokerURL := b.ts.app.BrokerURL()
	ctx := context.Background()

	call := func(method, path, session string, in, out any) (int, string) {
		t.Helper()
		return rtCall(t, method, brokerURL+path, session, "", in, out)
	}
	idTok, _ := os.ReadFile(mintIDToken(t, b, dir, "intruder"))
	var sess struct {
		Token string `json:"token"`
	}
	if code, body := call("POST", "/v1/login", "", map[string]string{"id_token": strings.TrimSpace(string(idTok))}, &sess); code != 200 {
		t.Fatalf("login: %d %s", code, body)
	}
	var who api.WhoAmI
	if code, body := call("GET", "/v1/whoami", sess.Token, nil, &who); code != 200 || who.Subject != "intruder" {
		t.Fatalf("whoami: %d %s", code, body)
	}

	now := time.Now().UTC()
	exp := now.Add(time.Hour)
	grant := &broker.Request{ID: "req_unpoliced", Kind: broker.KindAccess, Requester: who.Identity, Scopes: []string{link.ScopeServe},
		TTL: time.Hour, State: broker.StateApproved, CreatedAt: now, PendingUntil: now, ApprovedAt: &now, ExpiresAt: &exp}
	if err := b.ts.app.state.CreateRequest(ctx, grant); err != nil {
		t.Fatal(err)
	}
	// A held prompt's record is no grant either, whatever its scopes say.
	held := *grant
	held.ID, held.Kind = "req_held", broker.KindPrompt
	if err := b.ts.app.state.CreateRequest(ctx, &held); err != nil {
		t.Fatal(err)
	}
	enroll := func(id string) (int, string) {
		priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
		return call("POST", "/v1/proxies/enroll", sess.Token, link.EnrollRequest{Grant: id, PublicKey: priv.PublicKey().Bytes()}, nil)
	}
	if code, body := enroll(grant.ID); code != http.StatusForbidden || !strings.Contains(body, "has ended") || !strings.Contains(body, "no policy") {
		t.Fatalf("enroll on a grant no policy gives: %d %s, want 403 saying it has ended", code, body)
	}
	if code, body := enroll(held.ID); code < 400 {
		t.Fatalf("enroll on a held prompt: %d %s, want refused", code, body)
	}
}
