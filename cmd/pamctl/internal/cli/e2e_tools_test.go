package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/proxy/rules"
)

// The tool-call firewall end to end through the CLI: a grant scoped to
// one tool, a request declaring another refused, a proposed call held for
// security (shown by `requests --pending` with its tool and masked
// arguments) and released by `approve`, and every proposed call in
// `audit tail --type tool.call` and `audit show GRANT`.
func TestEndToEndToolCallFirewall(t *testing.T) {
	const answer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":\"git status\"}"}},` +
		`{"id":"call_2","type":"function","function":{"name":"shell","arguments":"{\"command\":\"rm -rf /srv/cache\",\"notify\":\"ops@example.com\"}"}}` +
		`]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
	defer up.Close()
	s := startServerWith(t, func(c *Config) {
		c.Upstreams = []UpstreamConfig{{Name: "openai", URL: up.URL + "/v1", Key: "openai"}}
		c.Policies = policy.Set{
			{Name: "agents", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o-mini", "tool:*"}, MaxTTL: time.Hour},
			{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{"audit:read"}},
		}
		c.Rules = []rules.Rule{{Name: "rm-needs-security", Target: rules.TargetToolCall, Tool: "shell",
			Arguments: &rules.ArgumentMatch{Path: "$.command", Pattern: `rm\s+-rf`}, Action: rules.RequireApproval,
			Approvers: rules.Approvers{Groups: []string{"security"}}}}
		c.Proxy.HoldTimeout = 20 * time.Second
	})
	s.as(t, "admin", "sk-test-0123456789abcdefghij", "vault", "set", "openai").must(t, "vault set")
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--scope", "tool:shell", "-o", "json").must(t, "request")
	var grant broker.Request
	if err := json.Unmarshal([]byte(r.out), &grant); err != nil || grant.State != broker.StateApproved {
		t.Fatalf("grant: %v %s", err, r.out)
	}
	tok := strings.TrimSpace(s.as(t, "alice", "", "token", grant.ID).must(t, "token").out)
	post := func(body string) callResult {
		req, _ := http.NewRequest("POST", s.app.ProxyURL()+"/v1/chat/completions", strings.NewReader(body))
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
	tools := func(names ...string) string {
		var ts []string
		for _, n := range names {
			ts = append(ts, `{"type":"function","function":{"name":"`+n+`"}}`)
		}
		return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"tidy"}],"tools":[` + strings.Join(ts, ",") + `]}`
	}

	if res := post(tools("shell", "delete_repo")); res.status != 403 || !strings.Contains(res.body, "tool_not_in_scope") ||
		!strings.Contains(res.body, "pamctl request --scope 'tool:delete_repo'") {
		t.Fatalf("undeclared tool: %+v", res)
	}

	done := make(chan callResult, 1)
	go func() { done <- post(tools("shell")) }()
	var pending []*broker.Request
	bob := s.sessionClient(t, "bob")
	for deadline := time.Now().Add(15 * time.Second); len(pending) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		pending, _ = bob.Requests(context.Background(), true)
	}
	if len(pending) != 1 || pending[0].Prompt == nil || pending[0].Prompt.Tool != "shell" ||
		!strings.Contains(pending[0].Prompt.Arguments, "rm -rf /srv/cache") || strings.Contains(pending[0].Prompt.Arguments, "ops@example.com") {
		t.Fatalf("pending: %+v", pending)
	}
	list := s.as(t, "bob", "", "requests", "--pending").must(t, "requests --pending")
	if !strings.Contains(list.out, "tool:shell") || !strings.Contains(list.out, "rm -rf") {
		t.Fatalf("requests --pending:\n%s", list.out)
	}
	if ap := s.as(t, "bob", "", "approve", pending[0].ID).must(t, "approve"); !strings.Contains(ap.out+ap.err, "tool shell") {
		t.Fatalf("approve output: %+v", ap)
	}
	var res callResult
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the held answer did not return after approval")
	}
	if res.status != 200 || !strings.Contains(res.body, "call_1") || !strings.Contains(res.body, "call_2") {
		t.Fatalf("released answer: %+v", res)
	}

	tail := s.as(t, "bob", "", "audit", "tail", "-n", "20", "--type", "tool.call").must(t, "audit tail")
	if n := strings.Count(tail.out, `"type":"tool.call"`); n != 2 || !strings.Contains(tail.out, "released") || strings.Contains(tail.out, "ops@example.com") {
		t.Fatalf("audit tail --type tool.call (%d events):\n%s", n, tail.out)
	}
	show := s.as(t, "bob", "", "audit", "show", grant.ID).must(t, "audit show")
	if !strings.Contains(show.out, "tool.call") || !strings.Contains(show.out, "git status") || !strings.Contains(show.out, "prompt.held") {
		t.Fatalf("audit show %s:\n%s", grant.ID, show.out)
	}
}
