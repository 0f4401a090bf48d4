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
	"github.com/pamctl/pamctl/proxy/rules"
)

// A local proxy (role proxy) judges tool calls under the broker's rules:
// a held call reaches the broker's approvers with its tool and masked
// arguments, and the tool.call events are shipped into the broker's trail.
func TestEndToEndProxyRoleToolCalls(t *testing.T) {
	dir := t.TempDir()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[`+
			`{"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":\"rm -rf /srv/cache\"}"}},`+
			`{"id":"call_2","type":"function","function":{"name":"deploy","arguments":"{}"}}`+
			`]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer up.Close()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", up.URL, func(c *Config) {
		c.Policies = append(policy.Set{{Name: "tools", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o", "tool:*"}, MaxTTL: time.Hour}}, rolePolicies...)
		c.Rules = []rules.Rule{{Name: "rm-needs-security", Target: rules.TargetToolCall, Tool: "shell", Pattern: `rm -rf`,
			Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}}
		c.Proxy.HoldTimeout = 15 * time.Second
	})
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	if _, err := admin.VaultSet(t.Context(), "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}
	p := startRoleProxy(t, b.ts.app.BrokerURL(), filepath.Join(dir, "proxy-a"), mintIDToken(t, b, dir, "proxy-a"), 0)
	waitUntil(t, "enrollment", 10*time.Second, func() bool { code, _ := p.app.link.Refusal(); return code == "" })

	b.ts.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	r := b.ts.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--scope", "tool:shell", "-o", "json").must(t, "request")
	var g broker.Request
	json.Unmarshal([]byte(r.out), &g)
	tok := strings.TrimSpace(b.ts.as(t, "alice", "", "token", g.ID).must(t, "token").out)

	res := make(chan callResult, 1)
	go func() {
		body := `{"model":"gpt-4o","messages":[{"role":"user","content":"tidy"}],"tools":[{"type":"function","function":{"name":"shell"}}]}`
		req, _ := http.NewRequest("POST", p.app.ProxyURL()+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- callResult{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		res <- callResult{status: resp.StatusCode, body: string(out)}
	}()
	var pending []broker.Request
	waitUntil(t, "the held tool call", 10*time.Second, func() bool {
		r := b.ts.as(t, "bob", "", "requests", "--pending", "-o", "json").must(t, "pending")
		json.Unmarshal([]byte(r.out), &pending)
		return len(pending) == 1 && pending[0].Prompt != nil
	})
	if hp := pending[0].Prompt; hp.Tool != "shell" || !strings.Contains(hp.Arguments, "rm -rf /srv/cache") {
		t.Fatalf("held call: %+v", hp)
	}
	b.ts.as(t, "bob", "", "deny", pending[0].ID, "--reason", "not today").must(t, "refuse the call")
	got := <-res
	if got.status != http.StatusOK || strings.Contains(got.body, "rm -rf") || !strings.Contains(got.body, "not today") ||
		!strings.Contains(got.body, `tool \"deploy\": it is not in this grant's tool scopes`) || !strings.Contains(got.body, `"finish_reason":"stop"`) {
		t.Fatalf("answer: %+v", got)
	}
	waitUntil(t, "the shipped tool.call events", 15*time.Second, func() bool {
		out := b.ts.as(t, "bob", "", "audit", "tail", "-n", "20", "--type", "tool.call").must(t, "audit tail").out
		return strings.Count(out, `"type":"tool.call"`) == 2 && strings.Contains(out, `"proxy":`)
	})
}
