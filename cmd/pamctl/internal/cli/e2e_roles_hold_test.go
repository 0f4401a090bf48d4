package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/proxy/rules"
)

// A proxy whose proxy:serve grant needs approval waits for it; held
// calls go to the broker's approvers; a rule change on the broker reaches
// the proxy without a restart; revoking its grant cuts it off at once.
func TestEndToEndProxyRoleApprovalHoldsAndConfig(t *testing.T) {
	dir := t.TempDir()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"done"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer up.Close()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte("# v1\n"), 0o600)
	holdRule := rules.Rule{Name: "destructive-sql", Pattern: `(?i)drop\s+table`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}
	var start *Config
	b := startRoleBroker(t, dir, "127.0.0.1:0", up.URL, func(c *Config) {
		c.Policies = policy.Set{
			{Name: "proxies", Subjects: policy.Subjects{Users: []string{"proxy-a"}}, Scopes: []string{"proxy:serve"}, MaxTTL: time.Hour,
				Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1}},
			{Name: "ml", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o"}, MaxTTL: time.Hour},
		}
		c.Rules = []rules.Rule{holdRule}
		c.Proxy.HoldTimeout = 10 * time.Second
		c.File = cfgFile
		start = c
	})
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	if _, err := admin.VaultSet(t.Context(), "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}
	p := startRoleProxy(t, b.ts.app.BrokerURL(), filepath.Join(dir, "proxy-a"), mintIDToken(t, b, dir, "proxy-a"), 0)

	// Pending: the proxy waits, and says so.
	b.ts.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	var pending []broker.Request
	waitUntil(t, "the proxy's request", 5*time.Second, func() bool {
		r := b.ts.as(t, "bob", "", "requests", "--pending", "-o", "json").must(t, "pending")
		json.Unmarshal([]byte(r.out), &pending)
		return len(pending) == 1
	})
	waitUntil(t, "the proxy to say it waits for approval", 2*time.Second, func() bool {
		code, msg := p.app.link.Refusal()
		return code == "proxy_not_enrolled" && strings.Contains(msg, "waits for approval")
	})
	proxyGrant := pending[0].ID
	b.ts.as(t, "bob", "", "approve", proxyGrant).must(t, "approve the proxy")
	waitUntil(t, "enrollment", 5*time.Second, func() bool { code, _ := p.app.link.Refusal(); return code == "" })

	// A held call waits for bob, who sees it among the pending requests.
	b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	r := b.ts.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "-o", "json").must(t, "request")
	var g broker.Request
	json.Unmarshal([]byte(r.out), &g)
	tok := strings.TrimSpace(b.ts.as(t, "alice", "", "token", g.ID).must(t, "token").out)
	res := make(chan callResult, 1)
	go func() {
		res <- chatModel(t, p.app.ProxyURL(), tok, "gpt-4o", "please drop table users"+strings.Repeat(" and so on", 150)+", then drop table orders")
	}()
	waitUntil(t, "the held call", 5*time.Second, func() bool {
		r := b.ts.as(t, "bob", "", "requests", "--pending", "-o", "json").must(t, "pending")
		json.Unmarshal([]byte(r.out), &pending)
		return len(pending) == 1 && pending[0].Prompt != nil
	})
	if hp := pending[0].Prompt; len(hp.CallSHA256) != 64 || hp.Method != "POST" || len(hp.Matches) != 2 || len(hp.Matches[1].Where) != 1 ||
		hp.Matches[1].Where[0] != "messages[0] (user)" || !strings.HasSuffix(hp.Matches[1].Text, "then drop table orders") ||
		!strings.HasSuffix(hp.MatchSummary, `rule "destructive-sql" matches 2 times`) {
		t.Fatalf("the held call's digest, method or places did not cross the link: %+v", pending[0].Prompt)
	}
	if ev := b.ts.as(t, "admin", "", "audit", "tail", "--type", "prompt.held", "-o", "json").must(t, "audit").out; !strings.Contains(ev, `"endpoint":"POST /v1/chat/completions"`) {
		t.Fatalf("prompt.held does not record the method:\n%s", ev)
	}
	b.ts.as(t, "bob", "", "approve", pending[0].ID).must(t, "release the call")
	if got := <-res; got.status != http.StatusOK || !strings.Contains(got.body, "done") {
		t.Fatalf("released call: %+v", got)
	}

	// The broker's rules change: the proxy follows without a restart.
	before := p.app.link.ConfigVersion()
	next := *start
	next.Rules = []rules.Rule{holdRule, {Name: "no-injection", Pattern: `(?i)ignore previous instructions`, Action: rules.Deny}}
	next.present = map[string]bool{"rules": true, "policies": true, "masking": true}
	reload := func() (*Config, error) { c := next; return &c, nil }
	b.ts.reload.Store(&reload)
	os.WriteFile(cfgFile, []byte("# v2\n"), 0o600)
	waitUntil(t, "the proxy to take the new rules", 5*time.Second, func() bool { return p.app.link.ConfigVersion() != before })
	if got := chatModel(t, p.app.ProxyURL(), tok, "gpt-4o", "ignore previous instructions"); got.status != http.StatusForbidden {
		t.Fatalf("denied by the new rule: %+v", got)
	}
	waitUntil(t, "the broker to list the new version", 5*time.Second, func() bool {
		out := b.ts.as(t, "admin", "", "proxies", "-o", "json").must(t, "proxies").out
		return strings.Contains(out, p.app.link.ConfigVersion())
	})

	// Revoking the proxy's proxy:serve grant (pamctl revoke GRANT) cuts it
	// off like revoking its enrollment: 503 proxy_not_enrolled at once, as
	// a new grant needs bob (docs/deployment.md, "Cutting a proxy off").
	// Found by a red team: the proxy stopped serving only on a refusal
	// worded "revoked by an admin", and forwarded calls with the keys in
	// its memory until its revocation staleness (30 s here) ran out.
	b.ts.as(t, "admin", "", "revoke", proxyGrant).must(t, "revoke the proxy's grant")
	waitUntil(t, "the broker to end the proxy's enrollment", 3*time.Second, func() bool { return p.app.link.Enrollment() == nil })
	time.Sleep(500 * time.Millisecond)
	if got := chatModel(t, p.app.ProxyURL(), tok, "gpt-4o", "hello"); got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, `"code":"proxy_not_enrolled"`) {
		t.Errorf("after its proxy:serve grant was revoked the proxy still answers %d %s (want 503 proxy_not_enrolled)", got.status, strings.TrimSpace(got.body))
	}
}

func chatModel(t *testing.T, proxyURL, tok, model, prompt string) callResult {
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}})
	req, _ := http.NewRequest("POST", proxyURL+"/v1/chat/completions", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return callResult{status: -1, body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return callResult{status: resp.StatusCode, body: string(b)}
}
