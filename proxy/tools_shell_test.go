package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// The shell and apply_patch tools through the proxy, with the real judge:
// scopes name them "shell" and "apply_patch" on the request and on the
// answer, tool_call rules match their action / operation objects.

var shellRules = []rules.Rule{
	{Name: "rm-rf", Target: rules.TargetToolCall, Tool: "shell", Pattern: `rm\s+-rf`, Action: rules.Deny},
	{Name: "patch-token", Target: rules.TargetToolCall, Tool: "apply_patch", Arguments: &rules.ArgumentMatch{Path: "$.diff", Pattern: `ghp_[A-Za-z0-9]+`}, Action: rules.Redact},
}

const shellAnswer = `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4o","output":[` +
	`{"type":"shell_call","id":"sh_1","call_id":"call_1","status":"completed","action":{"commands":["ls -la"],"timeout_ms":1000}},` +
	`{"type":"shell_call","id":"sh_2","call_id":"call_2","status":"completed","action":{"commands":["cd /srv","rm  -rf cache"]}},` +
	`{"type":"apply_patch_call","id":"ap_1","call_id":"call_3","status":"completed","operation":{"type":"update_file","path":"ci.yml","diff":"+token: ghp_abcdef123"}},` +
	`{"type":"browser_call","id":"pg_1","call_id":"call_4","action":{"script":"shell('rm -rf /')"}}]}`

func TestShellToolAnswerThroughProxy(t *testing.T) {
	h := newHarness(t, withRules(t, shellRules))
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, shellAnswer) })
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell tool:apply_patch"})
	cl := h.client(tok)
	r, err := cl.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("tidy up")},
		Tools: []responses.ToolUnionParam{{OfShell: &responses.FunctionShellToolParam{}}, {OfApplyPatch: &responses.ApplyPatchToolParam{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.up.requests(); !strings.Contains(string(got[len(got)-1].Body), `"type":"shell"`) {
		t.Fatalf("the request did not declare the shell tool: %s", got[len(got)-1].Body)
	}
	raw := r.RawJSON()
	if len(r.Output) != 4 || r.Output[0].Type != "shell_call" || r.Output[1].Type != "message" || r.Output[2].Type != "apply_patch_call" || r.Output[3].Type != "message" {
		t.Fatalf("%s", raw)
	}
	if sh := r.Output[0].AsShellCall(); len(sh.Action.Commands) != 1 || sh.Action.Commands[0] != "ls -la" || sh.Action.TimeoutMs != 1000 {
		t.Errorf("allowed shell call %s", r.Output[0].RawJSON())
	}
	if m := r.Output[1].AsMessage().Content[0].Text; !strings.Contains(m, `tool "shell"`) || !strings.Contains(m, `rule "rm-rf"`) {
		t.Errorf("denied shell call: %q", m)
	}
	if op := r.Output[2].AsApplyPatchCall().Operation; op.Diff != "+token: [REDACTED:patch-token]" || op.Path != "ci.yml" {
		t.Errorf("redacted patch %s", r.Output[2].RawJSON())
	}
	if m := r.Output[3].AsMessage().Content[0].Text; !strings.Contains(m, `output item of type "browser_call"`) {
		t.Errorf("unknown item: %q", m)
	}
	for _, leak := range []string{"rm  -rf", "rm -rf", "ghp_abcdef", "sh_2", "pg_1"} {
		if strings.Contains(raw, leak) {
			t.Errorf("%q reached the client: %s", leak, raw)
		}
	}
	evs := h.sink.ofType(audit.TypeToolCall)
	if len(evs) != 4 {
		t.Fatalf("%d tool.call events", len(evs))
	}
	for i, want := range []struct{ target, kind, decision, reason string }{
		{"shell", "shell", "allow", ""},
		{"shell", "shell", "deny", "rule rm-rf"},
		{"apply_patch", "apply_patch", "redact", "rule patch-token"},
		{"item:browser_call", "unknown_item", "deny", "unknown item type"},
	} {
		ev := evs[i]
		if ev.Target != want.target || ev.Details["kind"] != want.kind || ev.Decision != want.decision ||
			want.reason != "" && (len(ev.Reasons) == 0 || ev.Reasons[0] != want.reason) {
			t.Errorf("event %d: %s %s %s %v, want %+v", i, ev.Target, ev.Details["kind"], ev.Decision, ev.Reasons, want)
		}
	}
	if a := evs[1].Details["arguments"]; a != `{"commands":["cd /srv","rm  -rf cache"]}` {
		t.Errorf("audited arguments %q", a)
	}

	// Under tool:shell only, declaring apply_patch is refused, and a
	// proposed apply_patch_call is denied by the scope.
	tok = h.mint(grant{scope: "model:gpt-4o tool:shell"})
	res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","tools":[{"type":"shell"},{"type":"apply_patch"}]}`)
	if e := apiErr(t, b); res.StatusCode != 403 || e.Code != CodeToolNotInScope || !strings.Contains(e.Message, `"apply_patch" (tools[1])`) || !strings.Contains(e.Message, "--scope 'tool:apply_patch'") {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	res, b = h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","tools":[{"type":"shell"}],"tool_choice":{"type":"apply_patch"}}`)
	if res.StatusCode != 403 || !strings.Contains(string(b), "tool_choice") {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	res, b = h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","tools":[{"type":"shell"}]}`)
	if res.StatusCode != 200 || strings.Contains(string(b), "ghp_abcdef") || !strings.Contains(string(b), "not in this grant's tool scopes") {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
}

// writeBytes streams events one byte a write.
func writeBytes(events []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		all := strings.Join(events, "")
		for i := 0; i < len(all); i++ {
			_, _ = io.WriteString(w, all[i:i+1])
			w.(http.Flusher).Flush()
		}
	}
}

func TestShellToolStreamThroughProxy(t *testing.T) {
	seq := 0
	events := []string{respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)}
	events = append(events, interleave(
		shellEvents(&seq, 0, "sh_1", "call_1", 1, "ls -la"),
		shellEvents(&seq, 1, "sh_2", "call_2", 1, "rm -rf /srv"))...)
	events = append(events, respCompleted(0, shellItem("sh_1", "call_1", "completed", "ls -la"), shellItem("sh_2", "call_2", "completed", "rm -rf /srv")))
	for i := range events {
		events[i] = renumber(events[i], i)
	}
	for _, masked := range []bool{false, true} {
		opts := []harnessOption{withRules(t, shellRules)}
		if masked {
			opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
		}
		h := newHarness(t, opts...)
		h.up.set(writeBytes(events))
		cl := h.client(h.mint(grant{scope: "model:gpt-4o tool:shell"}))
		stream := cl.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
			Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("go")},
			Tools: []responses.ToolUnionParam{{OfShell: &responses.FunctionShellToolParam{}}},
		})
		var raw strings.Builder
		var final responses.Response
		for stream.Next() {
			ev := stream.Current()
			raw.WriteString(ev.RawJSON())
			if ev.Type == "response.completed" {
				final = ev.Response
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		for _, leak := range []string{"rm -rf", "/srv", "sh_2", "call_2", "shell_call_command"} {
			if strings.Contains(raw.String(), leak) {
				t.Fatalf("masked=%v: %q reached the client:\n%s", masked, leak, raw.String())
			}
		}
		if len(final.Output) != 2 || final.Output[0].AsShellCall().Action.Commands[0] != "ls -la" || !strings.Contains(final.OutputText(), `rule "rm-rf" forbids it`) {
			t.Fatalf("masked=%v: final %s", masked, final.RawJSON())
		}
	}
}

// The hosted shell worked example of docs/tools.md (the rules are
// proxy/rules' TestHostedShellAllowListExample) on whole answers.
func TestHostedShellExampleThroughProxy(t *testing.T) {
	rs := []rules.Rule{
		{Name: "shell-one-command-ls-or-git-status", Target: rules.TargetToolCall, Tool: "shell",
			Arguments: &rules.ArgumentMatch{Path: "$.commands", Unless: `^\["(?:ls(?: -[a-zA-Z]+)*(?: [\w./~-]+)*|git status|rm\s+-[a-zA-Z]*(?:rf|fr)[a-zA-Z]*(?: [\w./~-]+)+)"\]$`},
			Action:    rules.Deny},
	}
	h := newHarness(t, withRules(t, rs))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell"})
	for commands, allowed := range map[string]bool{
		`["ls -la src/"]`:         true,
		`["git status"]`:          true,
		`["ls","git status"]`:     false,
		`["ls && rm -rf /"]`:      false,
		`["git push --force"]`:    false,
		`["ls\",\"rm -rf /"]`:     false,
		`["cat /etc/shadow"]`:     false,
		`["ls\nrm -rf /tmp/x"]`:   false,
		`["ls -la /srv/../etc/"]`: true,
	} {
		answer := `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4o","output":[` +
			`{"type":"shell_call","id":"sh_1","call_id":"call_1","status":"completed","action":{"commands":` + commands + `,"timeout_ms":1000}}]}`
		h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, answer) })
		res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","tools":[{"type":"shell"}]}`)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", commands, res.StatusCode, b)
		}
		got := strings.Contains(string(b), `"type":"shell_call"`)
		if got != allowed || !allowed && !strings.Contains(string(b), `rule \"shell-one-command-ls-or-git-status\" forbids it`) {
			t.Errorf("%s: %s", commands, b)
		}
	}
}
