package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/policy"
)

// Revoking a local proxy's proxy:serve grant (`pamctl revoke GRANT`) cuts
// it off like revoking its enrollment: it answers 503 proxy_not_enrolled
// at once, until it obtains a new grant (docs/deployment.md, "Cutting a
// proxy off"). Found by a red team: the proxy stopped serving only on a
// refusal worded "revoked by an admin", and went on forwarding calls with
// the keys in its memory until its revocation staleness ran out.
func TestRoleProxyStopsServingWhenItsGrantIsRevoked(t *testing.T) {
	dir := t.TempDir()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"done"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer up.Close()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", up.URL, func(c *Config) {
		c.Policies = policy.Set{
			// A new proxy:serve grant needs an approver, so the proxy cannot
			// obtain one at once after its grant is revoked.
			{Name: "proxies", Subjects: policy.Subjects{Users: []string{"proxy-a"}}, Scopes: []string{"proxy:serve"}, MaxTTL: time.Hour,
				Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1}},
			{Name: "ml", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o"}, MaxTTL: time.Hour},
		}
	})
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	if _, err := admin.VaultSet(t.Context(), "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}
	p := startRoleProxy(t, b.ts.app.BrokerURL(), filepath.Join(dir, "proxy-a"), mintIDToken(t, b, dir, "proxy-a"), 0) // default staleness 30s

	b.ts.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	var pending []broker.Request
	waitUntil(t, "the proxy's request", 5*time.Second, func() bool {
		r := b.ts.as(t, "bob", "", "requests", "--pending", "-o", "json").must(t, "pending")
		json.Unmarshal([]byte(r.out), &pending)
		return len(pending) == 1
	})
	proxyGrant := pending[0].ID
	b.ts.as(t, "bob", "", "approve", proxyGrant).must(t, "approve the proxy")
	waitUntil(t, "enrollment", 5*time.Second, func() bool { code, _ := p.app.link.Refusal(); return code == "" })

	b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	r := b.ts.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "-o", "json").must(t, "request")
	var g broker.Request
	json.Unmarshal([]byte(r.out), &g)
	tok := strings.TrimSpace(b.ts.as(t, "alice", "", "token", g.ID).must(t, "token").out)
	if code, body, _ := p.call(t, tok); code != http.StatusOK {
		t.Fatalf("call before: %d %s", code, body)
	}

	// The admin revokes the proxy's proxy:serve grant.
	b.ts.as(t, "admin", "", "revoke", proxyGrant).must(t, "revoke the proxy's grant")
	waitUntil(t, "the broker to end the proxy's enrollment", 3*time.Second, func() bool { return p.app.link.Enrollment() == nil })
	time.Sleep(500 * time.Millisecond)

	code, body, _ := p.call(t, tok)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"proxy_not_enrolled"`) {
		t.Errorf("after its proxy:serve grant was revoked the proxy still answers %d %s (want 503 proxy_not_enrolled)", code, strings.TrimSpace(body))
	}
}
