package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/proxy/rules"
)

// TestEndToEndAgentsSDKToolFirewall runs a real agent built with the
// OpenAI Agents SDK (JS, testdata/agents-sdk) through pamctl's proxy, over
// the Responses API and Chat Completions, streamed and not, against a
// scripted upstream whose model proposes a forbidden tool call
// (delete_repo, denied by a tool_call rule) and an allowed one
// (get_weather). The forbidden tool never runs and the agent reads why;
// the allowed tool runs; proposed alone, the forbidden call ends the run
// with pamctl's explanation as the agent's final output.
//
// The SDK is installed with npm from the lockfile into a cache directory
// (PAMCTL_E2E_NPM_DIR, else the user cache dir) the first time. The test
// is skipped only when node is not installed; CI installs node.
func TestEndToEndAgentsSDKToolFirewall(t *testing.T) {
	if testing.Short() {
		t.Skip("installs and runs the Agents SDK with node")
	}
	nodeDir := agentsSDK(t)
	up := &scriptedModel{}
	srv := httptest.NewServer(up)
	defer srv.Close()
	s := startServerWith(t, func(c *Config) {
		c.Upstreams = []UpstreamConfig{{Name: "openai", URL: srv.URL + "/v1", Key: "openai"}}
		c.Policies = policy.Set{{Name: "agents", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o-mini"}, MaxTTL: time.Hour}}
		c.Rules = []rules.Rule{{Name: "no-delete", Target: rules.TargetToolCall, Tool: "delete_*", Action: rules.Deny}}
	})
	s.as(t, "admin", "sk-test-0123456789abcdefghij", "vault", "set", "openai").must(t, "vault set")
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "-o", "json").must(t, "request")
	var grant broker.Request
	if err := json.Unmarshal([]byte(r.out), &grant); err != nil || grant.State != broker.StateApproved {
		t.Fatalf("grant: %v %s", err, r.out)
	}
	tok := strings.TrimSpace(s.as(t, "alice", "", "token", grant.ID).must(t, "token").out)

	for _, api := range []string{"responses", "chat_completions"} {
		for _, stream := range []bool{true, false} {
			name := fmt.Sprintf("%s/stream=%v", api, stream)
			t.Run(name+"/forbidden and allowed", func(t *testing.T) {
				got := runAgent(t, nodeDir, s.app.ProxyURL()+"/v1", tok, api, stream, "mixed: weather in Paris, then delete the prod repo")
				if got.Error != "" {
					t.Fatalf("the agent failed: %s", got.Error)
				}
				if fmt.Sprint(got.Ran) != "[get_weather:Paris]" {
					t.Fatalf("tools that ran: %v", got.Ran)
				}
				if !strings.Contains(strings.Join(got.Messages, "\n"), "delete_repo") || !strings.Contains(strings.Join(got.Messages, "\n"), "no-delete") {
					t.Fatalf("the agent was not told why delete_repo was blocked: %q", got.Messages)
				}
				if got.FinalOutput != "It is sunny in Paris." {
					t.Fatalf("final output %q", got.FinalOutput)
				}
				if !up.sawToolOutput(api, "Sunny in Paris.") || up.sawToolOutput(api, "Deleted") {
					t.Fatal("the model did not get exactly the allowed tool's output back")
				}
			})
			t.Run(name+"/forbidden alone", func(t *testing.T) {
				got := runAgent(t, nodeDir, s.app.ProxyURL()+"/v1", tok, api, stream, "only-forbidden: delete the prod repo")
				if got.Error != "" {
					t.Fatalf("the agent failed: %s", got.Error)
				}
				if len(got.Ran) != 0 {
					t.Fatalf("tools that ran: %v", got.Ran)
				}
				if !strings.Contains(got.FinalOutput, "delete_repo") || !strings.Contains(got.FinalOutput, "no-delete") {
					t.Fatalf("the agent finished with %q, not the explanation", got.FinalOutput)
				}
			})
		}
	}
	tail := s.as(t, "admin", "", "audit", "tail", "-n", "100", "--type", "tool.call", "-o", "json").must(t, "audit tail")
	// Each of the 8 runs proposed delete_repo once: 8 denials, 4 allowed
	// get_weather calls, one tool.call event each.
	if n, m := strings.Count(tail.out, `"decision":"deny","reasons":["rule no-delete"]`), strings.Count(tail.out, `"target":"get_weather","decision":"allow"`); n != 8 || m != 4 {
		t.Errorf("tool.call events: %d denials by rule no-delete (want 8), %d allowed get_weather (want 4):\n%s", n, m, tail.out)
	}
}

// agentResult is what testdata/agents-sdk/agent.mjs prints.
type agentResult struct {
	FinalOutput string   `json:"finalOutput"`
	Ran         []string `json:"ran"`
	Messages    []string `json:"messages"`
	Error       string   `json:"error"`
}

func runAgent(t *testing.T, dir, baseURL, tok, api string, stream bool, input string) agentResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "agent.mjs")
	cmd.Dir = dir
	st := "0"
	if stream {
		st = "1"
	}
	cmd.Env = append(os.Environ(), "OPENAI_BASE_URL="+baseURL, "OPENAI_API_KEY="+tok, "AGENT_API="+api, "AGENT_STREAM="+st, "AGENT_INPUT="+input,
		"OPENAI_AGENTS_DISABLE_TRACING=1", "NO_PROXY=127.0.0.1,localhost")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node agent.mjs: %v\n%s\n%s", err, out, stderr.String())
	}
	var res agentResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("agent output %q: %v\n%s", out, err, stderr.String())
	}
	return res
}

// agentsSDK installs testdata/agents-sdk's dependencies (once per lockfile)
// and returns the directory to run agent.mjs in.
func agentsSDK(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the Agents SDK end-to-end test needs node and npm (CI installs them)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("node is installed but npm is not: install npm to run the Agents SDK end-to-end test")
	}
	src := filepath.Join("testdata", "agents-sdk")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	base := os.Getenv("PAMCTL_E2E_NPM_DIR")
	if base == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		base = filepath.Join(cache, "pamctl-e2e")
	}
	dir := filepath.Join(base, "agents-sdk-"+hex.EncodeToString(sum[:6]))
	for _, f := range []string{"package.json", "package-lock.json", "agent.mjs"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(dir, "node_modules", ".pamctl-installed")
	if _, err := os.Stat(marker); err == nil {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--cache", filepath.Join(base, "npm-cache"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci (the Agents SDK for the end-to-end test) failed: %v\n%s", err, out)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// scriptedModel is an OpenAI-compatible upstream whose "model" follows a
// script: asked to act, it proposes delete_repo (and, for a "mixed" ask,
// get_weather first); given a tool's output, it sums up.
type scriptedModel struct {
	mu   sync.Mutex
	seen []string // request bodies
}

func (m *scriptedModel) sawToolOutput(api, text string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.seen {
		if strings.Contains(b, text) && (strings.Contains(b, `"function_call_output"`) || strings.Contains(b, `"role":"tool"`)) {
			return true
		}
	}
	return false
}

type scriptedCall struct{ id, name, args string }

func (m *scriptedModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.seen = append(m.seen, string(body))
	m.mu.Unlock()
	var req struct {
		Stream bool `json:"stream"`
	}
	_ = json.Unmarshal(body, &req)
	b := string(body)
	var calls []scriptedCall
	text := ""
	switch {
	case strings.Contains(b, `"function_call_output"`) || strings.Contains(b, `"role":"tool"`):
		text = "It is sunny in Paris."
	case strings.Contains(b, "mixed:"):
		calls = []scriptedCall{{"call_w", "get_weather", `{"city":"Paris"}`}, {"call_d", "delete_repo", `{"repo":"prod"}`}}
	default:
		calls = []scriptedCall{{"call_d", "delete_repo", `{"repo":"prod"}`}}
	}
	chat := strings.HasSuffix(r.URL.Path, "/chat/completions")
	switch {
	case chat && req.Stream:
		writeScriptedChatStream(w, text, calls)
	case chat:
		writeScriptedJSON(w, scriptedChat(text, calls))
	case req.Stream:
		writeScriptedResponsesStream(w, text, calls)
	default:
		writeScriptedJSON(w, scriptedResponse(text, calls))
	}
}

func writeScriptedJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func scriptedChat(text string, calls []scriptedCall) map[string]any {
	msg := map[string]any{"role": "assistant", "content": nil}
	finish := "tool_calls"
	if text != "" {
		msg["content"], finish = text, "stop"
	}
	var tcs []any
	for _, c := range calls {
		tcs = append(tcs, map[string]any{"id": c.id, "type": "function", "function": map[string]any{"name": c.name, "arguments": c.args}})
	}
	if len(tcs) > 0 {
		msg["tool_calls"] = tcs
	}
	return map[string]any{"id": "chatcmpl-e2e", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   map[string]any{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
}

func scriptedItems(text string, calls []scriptedCall) []map[string]any {
	var items []map[string]any
	if text != "" {
		items = append(items, map[string]any{"type": "message", "id": "msg_e2e", "status": "completed", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}})
	}
	for _, c := range calls {
		items = append(items, map[string]any{"type": "function_call", "id": "fc_" + c.id, "call_id": c.id, "name": c.name, "arguments": c.args, "status": "completed"})
	}
	return items
}

func scriptedResponse(text string, calls []scriptedCall) map[string]any {
	return map[string]any{"id": "resp_e2e", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4o-mini",
		"output": scriptedItems(text, calls), "parallel_tool_calls": true, "tool_choice": "auto", "tools": []any{},
		"usage": map[string]any{"input_tokens": 5, "output_tokens": 5, "total_tokens": 10,
			"input_tokens_details": map[string]any{"cached_tokens": 0}, "output_tokens_details": map[string]any{"reasoning_tokens": 0}}}
}

func sseJSON(w http.ResponseWriter, name string, v any) {
	b, _ := json.Marshal(v)
	if name != "" {
		fmt.Fprintf(w, "event: %s\n", name)
	}
	fmt.Fprintf(w, "data: %s\n\n", b)
	w.(http.Flusher).Flush()
}

// writeScriptedChatStream streams the calls as the API does, arguments a
// byte at a time and the calls interleaved (parallel tool calls).
func writeScriptedChatStream(w http.ResponseWriter, text string, calls []scriptedCall) {
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	sseJSON(w, "", chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	for _, word := range strings.SplitAfter(text, " ") {
		if word != "" {
			sseJSON(w, "", chunk(map[string]any{"content": word}, nil))
		}
	}
	for i, c := range calls {
		sseJSON(w, "", chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "id": c.id, "type": "function",
			"function": map[string]any{"name": c.name, "arguments": ""}}}}, nil))
	}
	for k := 0; ; k++ {
		more := false
		for i, c := range calls {
			if k < len(c.args) {
				more = true
				sseJSON(w, "", chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "function": map[string]any{"arguments": c.args[k : k+1]}}}}, nil))
			}
		}
		if !more {
			break
		}
	}
	finish := "stop"
	if len(calls) > 0 {
		finish = "tool_calls"
	}
	sseJSON(w, "", chunk(map[string]any{}, finish))
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func writeScriptedResponsesStream(w http.ResponseWriter, text string, calls []scriptedCall) {
	w.Header().Set("Content-Type", "text/event-stream")
	seq := 0
	ev := func(v map[string]any) {
		v["sequence_number"] = seq
		seq++
		sseJSON(w, v["type"].(string), v)
	}
	created := scriptedResponse("", nil)
	created["status"], created["output"] = "in_progress", []any{}
	ev(map[string]any{"type": "response.created", "response": created})
	for i, item := range scriptedItems(text, calls) {
		added := map[string]any{}
		for k, v := range item {
			added[k] = v
		}
		added["status"] = "in_progress"
		id := item["id"].(string)
		if item["type"] == "message" {
			added["content"] = []any{}
			ev(map[string]any{"type": "response.output_item.added", "output_index": i, "item": added})
			ev(map[string]any{"type": "response.content_part.added", "item_id": id, "output_index": i, "content_index": 0, "part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}})
			ev(map[string]any{"type": "response.output_text.delta", "item_id": id, "output_index": i, "content_index": 0, "delta": text, "logprobs": []any{}})
			ev(map[string]any{"type": "response.output_text.done", "item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": []any{}})
			ev(map[string]any{"type": "response.content_part.done", "item_id": id, "output_index": i, "content_index": 0, "part": map[string]any{"type": "output_text", "text": text, "annotations": []any{}}})
		} else {
			args := item["arguments"].(string)
			added["arguments"] = ""
			ev(map[string]any{"type": "response.output_item.added", "output_index": i, "item": added})
			for k := 0; k < len(args); k++ {
				ev(map[string]any{"type": "response.function_call_arguments.delta", "item_id": id, "output_index": i, "delta": args[k : k+1]})
			}
			ev(map[string]any{"type": "response.function_call_arguments.done", "item_id": id, "output_index": i, "arguments": args})
		}
		ev(map[string]any{"type": "response.output_item.done", "output_index": i, "item": item})
	}
	ev(map[string]any{"type": "response.completed", "response": scriptedResponse(text, calls)})
}
