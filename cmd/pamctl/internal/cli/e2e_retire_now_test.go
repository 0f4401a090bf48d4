package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
)

// `pamctl keys rotate --retire-now` is the emergency rotation: every
// token signed before (access tokens, and session tokens: alice logs in
// again) is refused at once, by the in-process proxy (role all) and by a
// local proxy (role proxy, told over its link stream to refetch the
// JWKS), while a token minted after works; recorded as key.rotated with
// details.retire_now and details.withdrawn.
func TestKeysRotateRetireNowRefusesOldTokensAtOnce(t *testing.T) {
	retireNow := func(t *testing.T, s *testServer) api.KeysRotation {
		t.Helper()
		r := s.as(t, "admin", "", "keys", "rotate", "--retire-now", "-o", "json").must(t, "keys rotate --retire-now")
		var out api.KeysRotation
		if err := json.Unmarshal([]byte(r.out), &out); err != nil || out.Active == "" || len(out.Withdrawn) == 0 {
			t.Fatalf("keys rotate --retire-now -o json: %v %s", err, r.out)
		}
		if len(out.JWKS.Keys) != 1 || out.JWKS.Keys[0].Kid != out.Active {
			t.Fatalf("jwks after retire-now: %+v", out.JWKS)
		}
		ev := s.as(t, "admin", "", "audit", "tail", "--type", "key.rotated", "-o", "json").must(t, "audit tail")
		var last struct {
			Target  string            `json:"target"`
			Details map[string]string `json:"details"`
		}
		lines := strings.Split(strings.TrimSpace(ev.out), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Target != out.Active ||
			last.Details["retire_now"] != "true" || last.Details["withdrawn"] != strings.Join(out.Withdrawn, " ") {
			t.Fatalf("key.rotated event: %v %s", err, ev.out)
		}
		return out
	}
	grant := func(t *testing.T, s *testServer) (string, string) {
		t.Helper()
		r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "-o", "json").must(t, "request")
		var req map[string]any
		json.Unmarshal([]byte(r.out), &req)
		id, _ := req["id"].(string)
		return id, strings.TrimSpace(s.as(t, "alice", "", "token", id).must(t, "token").out)
	}
	call := func(t *testing.T, proxyURL, tok string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, proxyURL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	afterRetire := func(t *testing.T, s *testServer, proxyURL, id, old string) {
		t.Helper()
		// alice's session token was signed by a withdrawn key too.
		if r := s.as(t, "alice", "", "token", id); r.code != ExitUnauthenticated {
			t.Fatalf("alice's old session after retire-now: %+v", r)
		}
		s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice logs in again")
		fresh := strings.TrimSpace(s.as(t, "alice", "", "token", id).must(t, "a fresh token").out)
		if fresh == old {
			t.Fatal("token returned the old token")
		}
		waitUntil(t, "a fresh token to work", 3*time.Second, func() bool { return call(t, proxyURL, fresh) == http.StatusOK })
		if code := call(t, proxyURL, old); code != http.StatusUnauthorized {
			t.Fatalf("the old token after the fresh one works: %d", code)
		}
	}

	t.Run("role all", func(t *testing.T) {
		s := startServerWith(t, func(c *Config) { c.Policies = rolePolicies })
		s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
		id, old := grant(t, s)
		if code := call(t, s.app.ProxyURL(), old); code != http.StatusOK {
			t.Fatalf("before: %d", code)
		}
		retireNow(t, s)
		if code := call(t, s.app.ProxyURL(), old); code != http.StatusUnauthorized {
			t.Fatalf("a token minted before retire-now: %d, want 401 at once", code)
		}
		afterRetire(t, s, s.app.ProxyURL(), id, old)
	})

	t.Run("role proxy", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
		t.Setenv("PAMCTL_MASTER_KEY", "")
		up := keyCheckingUpstream(t)
		b := startRoleBroker(t, dir, "127.0.0.1:0", up.URL)
		admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
		if _, err := admin.VaultSet(context.Background(), "openai", []byte(testProviderKey)); err != nil {
			t.Fatal(err)
		}
		p := startRoleProxy(t, b.ts.app.BrokerURL(), filepath.Join(dir, "proxy-a"), mintIDToken(t, b, dir, "proxy-a"), 30*time.Second)
		waitUntil(t, "enrollment", 15*time.Second, func() bool { code, _ := p.app.link.Refusal(); return code == "" })
		b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
		id, old := grant(t, b.ts)
		waitUntil(t, "the proxy to serve", 5*time.Second, func() bool { return call(t, p.app.ProxyURL(), old) == http.StatusOK })
		start := time.Now()
		retireNow(t, b.ts)
		// Well within the proxy's revocation_staleness (30s): the stream
		// says the signing keys changed.
		waitUntil(t, "the proxy to refuse the old token", 3*time.Second, func() bool { return call(t, p.app.ProxyURL(), old) == http.StatusUnauthorized })
		t.Logf("the proxy refused the old token %s after retire-now", time.Since(start).Round(time.Millisecond))
		afterRetire(t, b.ts, p.app.ProxyURL(), id, old)
	})
}
