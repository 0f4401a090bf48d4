package toolcall

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
)

func TestScopesAndCovered(t *testing.T) {
	scopes := Scopes([]string{"model:gpt-4o", "tool:shell", "tool:read_*", "tool:mcp:github/search_*", "tool:", "traces:write", "tool:mcp:fs/*"})
	if strings.Join(scopes, " ") != "shell read_* mcp:github/search_* mcp:fs/*" {
		t.Fatalf("Scopes: %q", scopes)
	}
	if Scopes([]string{"model:gpt-4o"}) != nil {
		t.Fatal("no tool scopes must be nil")
	}
	cases := []struct {
		tool string
		want bool
	}{
		{"shell", true},
		{"Shell", false},                            // case variant
		{"SHELL", false},                            // case variant
		{"sh\u0435ll", false},                       // Cyrillic look-alike
		{"shell ", false},                           // trailing space
		{"shell\x00", false},                        // NUL
		{"read_file", true},                         // glob
		{"read_*", false},                           // a glob byte in the name is never a name
		{"read_?", false},                           // other glob-ish bytes
		{"read_[a]", false},                         //
		{"read_" + strings.Repeat("x", 200), false}, // over long
		{"write_file", false},
		{"mcp:github/search_code", true},
		{"mcp:github/delete_repo", false},
		{"mcp:github/*", false}, // every tool of github: only a scope absorbing '*' covers it
		{"mcp:fs/*", true},
		{"mcp:fs/read", true},
		{"mcp:github/search_code/x", false}, // a '/' in the tool name
		{"mcp:git hub/search", false},
		{"mcp:/search_code", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := Covered(scopes, tc.tool); got != tc.want {
			t.Errorf("Covered(%q) = %v, want %v", tc.tool, got, tc.want)
		}
	}
	if !Covered([]string{"*"}, "anything.at-all") || Covered([]string{"*"}, "no spaces") {
		t.Error("tool:* covers every valid name and only those")
	}
}

func TestCallTool(t *testing.T) {
	for _, tc := range []struct {
		c    Call
		want string
	}{
		{Call{Kind: Function, Name: "shell"}, "shell"},
		{Call{Kind: Custom, Name: "patch"}, "patch"},
		{Call{Kind: MCP, Server: "github", Name: "search"}, "mcp:github/search"},
		{Call{Kind: LocalShell}, "local_shell"},
		{Call{Kind: Computer}, "computer_use"},
		{Call{Kind: Shell}, "shell"},
		{Call{Kind: ApplyPatch}, "apply_patch"},
		{Call{Kind: ToolSearch}, "tool_search"},
		{Call{Kind: Program, Name: "ignored"}, "programmatic_tool_calling"},
		{Call{Kind: Unknown, Name: "browser_call"}, "item:browser_call"},
	} {
		if got := tc.c.Tool(); got != tc.want {
			t.Errorf("%+v: %q", tc.c, got)
		}
	}
}

// denyNamed denies calls of one tool, redacts another's arguments, and
// records every call it saw.
type recorder struct {
	seen []Call
	deny string
	red  string
	err  error
}

func (r *recorder) Judge(_ context.Context, c Call) (Verdict, error) {
	r.seen = append(r.seen, c)
	switch {
	case r.err != nil:
		return Verdict{}, r.err
	case c.Tool() == r.deny:
		return Verdict{Action: Deny, Rule: "r", Message: "blocked " + c.Tool()}, nil
	case c.Tool() == r.red:
		return Verdict{Action: Redact, Rule: "m", Arguments: `{"x":"[masked]"}`}, nil
	}
	return Verdict{Action: Allow}, nil
}

func TestRewriteAnswerUntouched(t *testing.T) {
	j := &recorder{deny: "shell"}
	for _, body := range []string{
		`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`,
		`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"x","tool_calls":null},"finish_reason":"stop"}]}`,
	} {
		out, err := RewriteAnswer(context.Background(), EndpointChat, []byte(body), j)
		if err != nil || string(out) != body {
			t.Errorf("%s -> %s %v", body, out, err)
		}
	}
	if out, _ := RewriteAnswer(context.Background(), "/v1/embeddings", []byte(`{"tool_calls":1}`), j); string(out) != `{"tool_calls":1}` {
		t.Error("other endpoints pass")
	}
	if out, _ := RewriteAnswer(context.Background(), EndpointChat, []byte(`x`), nil); string(out) != "x" {
		t.Error("nil judge")
	}
}

// A key spelled with JSON escapes is the same key to every client's
// decoder: it is judged too.
func TestRewriteAnswerEscapedKeys(t *testing.T) {
	j := &recorder{deny: "shell"}
	body := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","tool\u005fcalls":[{"id":"1","type":"function","function":{"name":"sh\u0065ll","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`
	out, err := RewriteAnswer(context.Background(), EndpointChat, []byte(body), j)
	if err != nil {
		t.Fatal(err)
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(out, &cc); err != nil || len(cc.Choices[0].Message.ToolCalls) != 0 || cc.Choices[0].FinishReason != "stop" {
		t.Fatalf("%v %s", err, out)
	}
	rbody := `{"id":"r","object":"response","created_at":1,"status":"completed","model":"m","output":[{"type":"function\u005fcall","call_id":"c","name":"shell","arguments":"{}"}]}`
	out, err = RewriteAnswer(context.Background(), EndpointResponses, []byte(rbody), j)
	if err != nil || strings.Contains(string(out), "function_call") {
		t.Fatalf("%v %s", err, out)
	}
}

func TestRewriteAnswerShapes(t *testing.T) {
	j := &recorder{}
	for name, body := range map[string]string{
		"arguments object":    `{"choices":[{"message":{"tool_calls":[{"id":"1","type":"function","function":{"name":"ls","arguments":{"a":1}}}]}}]}`,
		"name number":         `{"choices":[{"message":{"tool_calls":[{"id":"1","type":"function","function":{"name":1,"arguments":"{}"}}]}}]}`,
		"tool_calls object":   `{"choices":[{"message":{"tool_calls":{"0":{}}}}]}`,
		"no function":         `{"choices":[{"message":{"tool_calls":[{"id":"1","type":"function"}]}}]}`,
		"function_call array": `{"choices":[{"message":{"function_call":[]}}]}`,
	} {
		if _, err := RewriteAnswer(context.Background(), EndpointChat, []byte(body), j); !errors.Is(err, ErrAnswerShape) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, body := range map[string]string{
		"mcp arguments number": `{"output":[{"type":"mcp_call","server_label":"s","name":"t","arguments":3}]}`,
		"action string":        `{"output":[{"type":"local_shell_call","call_id":"c","action":"rm -rf /"}]}`,
		"server label number":  `{"output":[{"type":"mcp_call","server_label":1,"name":"t","arguments":"{}"}]}`,
	} {
		if _, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(body), j); !errors.Is(err, ErrAnswerShape) {
			t.Errorf("%s: %v", name, err)
		}
	}
	j.err = errors.New("audit down")
	if _, err := RewriteAnswer(context.Background(), EndpointChat, []byte(`{"choices":[{"message":{"tool_calls":[{"id":"1","type":"function","function":{"name":"ls","arguments":"{}"}}]}}]}`), j); err == nil || !strings.Contains(err.Error(), "audit down") {
		t.Errorf("judge error: %v", err)
	}
}

func TestRewriteAnswerResponsesOrderAndRedact(t *testing.T) {
	j := &recorder{deny: "mcp:github/delete_repo", red: "computer_use"}
	body := `{"id":"r","object":"response","created_at":1,"status":"completed","model":"m","output":[` +
		`{"type":"reasoning","id":"rs_1","summary":[]},` +
		`{"type":"mcp_approval_request","id":"mcpr_1","server_label":"github","name":"delete_repo","arguments":"{}"},` +
		`{"type":"computer_call","id":"cu_1","call_id":"c2","status":"completed","pending_safety_checks":[],"action":{"type":"type","text":"hunter2"}},` +
		`{"type":"custom_tool_call","id":"ct_1","call_id":"c3","name":"patch","input":"*** Begin Patch"}]}`
	out, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(body), j)
	if err != nil {
		t.Fatal(err)
	}
	var r responses.Response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Output) != 4 || r.Output[1].Type != "message" || r.Output[2].Type != "computer_call" || r.Output[3].AsCustomToolCall().Input != "*** Begin Patch" {
		t.Fatalf("%s", out)
	}
	if strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), `"action":{"x":"[masked]"}`) {
		t.Fatalf("computer action not redacted: %s", out)
	}
	if len(j.seen) != 3 || j.seen[0].Kind != MCP || j.seen[1].Arguments != `{"text":"hunter2","type":"type"}` || j.seen[2].Kind != Custom {
		t.Fatalf("seen %+v", j.seen)
	}
}

// QuoteName stores a tool name raw in quotes (audit.QuoteLine), for
// the view to escape once: a look-alike letter, a bidi or zero-width
// character stays itself, the six characters \u202e typed stay six
// characters (Go's quoting wrote \u escapes, which a view then doubled:
// a person read \\u202e where \u202e was meant); a quote, a "; " or a
// line feed cannot end the quote or start a line.
func TestQuoteName(t *testing.T) {
	for _, name := range []string{"sh\u0435ll", "sh\u202ell", "sh\u200bell", `a"b`, `a\b`, `\u202e`, "x, y", "x; y", "x]", "x\n[found in messages[0] (system)]", `x" arguments: {"`} {
		q := QuoteName(name)
		back, rest, ok := audit.Unquote(q)
		if !ok || back != name || rest != "" || strings.Contains(q, "\n") {
			t.Errorf("QuoteName(%q) = %q reads back as %q, %q (%v)", name, q, back, rest, ok)
		}
		v := safetext.Escape(q)
		if strings.Count(v, `\\u202e`) != strings.Count(name, `\u202e`) || strings.Count(v, `\u200b`) != strings.Count(name, "\u200b") ||
			strings.Count(v, `\u202e`)-strings.Count(v, `\\u202e`) != strings.Count(name, "\u202e") {
			t.Errorf("QuoteName(%q) is shown %s", name, v)
		}
	}
	// every other line break is written as a line feed is: ⏎ outside the
	// quotes, read back as a line feed
	for _, br := range []string{"\r", "\r\n", "\u0085", "\u2028", "\u2029", "\x1c", "\x1d", "\x1e"} {
		if q, want := QuoteName("x"+br+"[found in messages[0] (system)]"), "\"x\"\u23ce\"[found in messages[0] (system)]\""; q != want {
			t.Errorf("QuoteName with %q = %q, want %q", br, q, want)
		}
	}
	long := QuoteName(strings.Repeat("é", 100))
	if !strings.HasSuffix(long, "…") || len(long) > MaxNameLen+8 {
		t.Error(long)
	}
}

// A duplicated key is read differently by different decoders: the client
// gets the answer as judged, with one copy.
func TestRewriteAnswerDuplicateKeys(t *testing.T) {
	j := &recorder{deny: "shell"}
	body := `{"choices":[{"message":{"tool_calls":[{"id":"1","type":"function","function":{"name":"shell","arguments":"{}"}}],"tool_calls":[{"id":"2","type":"function","function":{"name":"ls","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`
	out, err := RewriteAnswer(context.Background(), EndpointChat, []byte(body), j)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), `"tool_calls":[`) != 1 || strings.Contains(string(out), "shell") || len(j.seen) != 1 {
		t.Fatalf("%s (judged %+v)", out, j.seen)
	}
}

func TestRewriteAnswerTooManyCalls(t *testing.T) {
	j := &recorder{}
	calls := make([]string, MaxCallsPerAnswer+1)
	for i := range calls {
		calls[i] = `{"id":"c` + strconv.Itoa(i) + `","type":"function","function":{"name":"ls","arguments":"{}"}}` // one id twice is refused before any is judged
	}
	body := `{"choices":[{"message":{"tool_calls":[` + strings.Join(calls, ",") + `]}}]}`
	if _, err := RewriteAnswer(context.Background(), EndpointChat, []byte(body), j); !errors.Is(err, ErrAnswerShape) || len(j.seen) != MaxCallsPerAnswer {
		t.Fatalf("%v after %d judged", err, len(j.seen))
	}
}

func TestItemKind(t *testing.T) {
	for typ, want := range map[string]Kind{
		"function_call": Function, "custom_tool_call": Custom, "mcp_call": MCP, "mcp_approval_request": MCP,
		"local_shell_call": LocalShell, "computer_call": Computer, "shell_call": Shell, "apply_patch_call": ApplyPatch,
		"tool_search_call": ToolSearch, "program": Program,
		// Unknown to pamctl, or spelled so that only some decoders read
		// them: an agent may run them.
		"browser_call": Unknown, "": Unknown, "Program": Unknown, "tool_ſearch_call": Unknown,
		"Shell_Call": Unknown, "shell_call ": Unknown, "SHELL_CALL": Unknown,
	} {
		if k, call := ItemKind(typ); !call || k != want {
			t.Errorf("ItemKind(%q) = %q %v, want %q", typ, k, call, want)
		}
	}
	for _, typ := range []string{"message", "reasoning", "web_search_call", "file_search_call", "code_interpreter_call",
		"image_generation_call", "mcp_list_tools", "shell_call_output", "apply_patch_call_output", "function_call_output"} {
		if k, call := ItemKind(typ); call {
			t.Errorf("ItemKind(%q) = %q: a hosted tool's item or a result is not a call", typ, k)
		}
	}
	if CaseVariant("Shell_Call") != "shell_call" || CaseVariant("APPLY_PATCH_CALL") != "apply_patch_call" || CaseVariant("shell_call") != "" || CaseVariant("Message") != "" ||
		CaseVariant("PROGRAM") != "program" || CaseVariant("tool_ſearch_call") != "tool_search_call" {
		t.Error("CaseVariant")
	}
}

// The shell and apply_patch tools' items are judged like local_shell_call:
// their action or operation object is the arguments; a redaction keeps it
// an object the SDK reads; a denied one is replaced by a message.
func TestRewriteAnswerShellAndApplyPatch(t *testing.T) {
	body := `{"id":"r","object":"response","created_at":1,"status":"completed","model":"m","output":[` +
		`{"type":"shell_call","id":"sh_1","call_id":"c1","status":"completed","action":{"commands":["ls -la","rm -rf /srv"],"timeout_ms":1000,"max_output_length":4096}},` +
		`{"type":"apply_patch_call","id":"ap_1","call_id":"c2","status":"completed","operation":{"type":"update_file","path":"app.go","diff":"@@\n-a\n+token=ghp_SECRET"}},` +
		`{"type":"shell_call","id":"sh_2","call_id":"c3","status":"completed","action":{"commands":["git status"]}}]}`
	j := JudgeFunc(func(_ context.Context, c Call) (Verdict, error) {
		switch {
		case c.Tool() == "shell" && strings.Contains(c.Arguments, "rm -rf"):
			return Verdict{Action: Deny, Rule: "no-rm", Message: "blocked shell"}, nil
		case c.Tool() == "apply_patch":
			return Verdict{Action: Redact, Rule: "mask", Arguments: strings.Replace(c.Arguments, "ghp_SECRET", "[REDACTED]", 1)}, nil
		}
		return Verdict{Action: Allow}, nil
	})
	var seen []Call
	rec := JudgeFunc(func(ctx context.Context, c Call) (Verdict, error) { seen = append(seen, c); return j(ctx, c) })
	out, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(body), rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0].Tool() != "shell" || seen[0].ID != "c1" ||
		seen[0].Arguments != `{"commands":["ls -la","rm -rf /srv"],"max_output_length":4096,"timeout_ms":1000}` ||
		seen[1].Tool() != "apply_patch" || seen[1].Arguments != `{"diff":"@@\n-a\n+token=ghp_SECRET","path":"app.go","type":"update_file"}` ||
		seen[2].Arguments != `{"commands":["git status"]}` {
		t.Fatalf("judged %+v", seen)
	}
	var r responses.Response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Output) != 3 || r.Output[0].Type != "message" || r.Output[0].AsMessage().Content[0].Text != "blocked shell" {
		t.Fatalf("%s", out)
	}
	if strings.Contains(string(out), "rm -rf") || strings.Contains(string(out), "ghp_SECRET") {
		t.Fatalf("denied or masked text reached the client: %s", out)
	}
	if op := r.Output[1].AsApplyPatchCall().Operation; r.Output[1].Type != "apply_patch_call" || op.Path != "app.go" || op.Diff != "@@\n-a\n+token=[REDACTED]" || op.Type != "update_file" {
		t.Fatalf("redacted operation %+v: %s", op, out)
	}
	if sh := r.Output[2].AsShellCall(); sh.CallID != "c3" || len(sh.Action.Commands) != 1 || sh.Action.Commands[0] != "git status" {
		t.Fatalf("allowed shell call %+v", sh)
	}
}

// Fail closed: an output item of a type pamctl does not know is denied
// whatever the judge says (it is still judged: the audit records it);
// hosted tools' items and results pass untouched.
func TestRewriteAnswerUnknownItems(t *testing.T) {
	j := &recorder{}
	inert := `{"id":"r","object":"response","created_at":1,"status":"completed","model":"m","output":[` +
		`{"type":"reasoning","id":"rs_1","summary":[]},` +
		`{"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"q"}},` +
		`{"type":"file_search_call","id":"fs_1","status":"completed","queries":["q"]},` +
		`{"type":"code_interpreter_call","id":"ci_1","status":"completed","code":"print(1)","container_id":"c","outputs":[]},` +
		`{"type":"image_generation_call","id":"ig_1","status":"completed","result":"AAAA"},` +
		`{"type":"mcp_list_tools","id":"ml_1","server_label":"gh","tools":[]},` +
		`{"type":"shell_call_output","id":"so_1","call_id":"c","output":[{"stdout":"ok","stderr":"","outcome":{"type":"exit","exit_code":0}}]},` +
		`{"type":"message","id":"m1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"hi","annotations":[]}]}]}`
	out, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(inert), j)
	if err != nil || string(out) != inert || len(j.seen) != 0 {
		t.Fatalf("hosted items changed: %v %s (judged %v)", err, out, j.seen)
	}
	body := `{"id":"r","object":"response","created_at":1,"status":"completed","model":"m","output":[` +
		`{"type":"browser_call","id":"p1","call_id":"c1","action":{"url":"runShell('rm -rf /')"}},` +
		`{"type":"Program_Call","id":"t1","call_id":"c2","execution":"client","arguments":{"query":"deploy"},"status":"completed"},` +
		`{"id":"x1","call_id":"c3","action":{"commands":["rm -rf /"]}},` +
		`{"type":"message","id":"m1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"hi","annotations":[]}]}]}`
	out, err = RewriteAnswer(context.Background(), EndpointResponses, []byte(body), j)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.seen) != 3 || j.seen[0].Tool() != "item:browser_call" || j.seen[1].Name != "Program_Call" || j.seen[2].Name != "" ||
		!strings.Contains(j.seen[0].Arguments, `"url":"runShell('rm -rf /')"`) {
		t.Fatalf("judged %+v", j.seen)
	}
	var r responses.Response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Output) != 4 || strings.Contains(string(out), "rm -rf") || r.Output[3].AsMessage().Content[0].Text != "hi" {
		t.Fatalf("%s", out)
	}
	for i, want := range []string{`"browser_call"`, `"Program_Call"`, `""`} {
		if txt := r.Output[i].AsMessage().Content[0].Text; r.Output[i].Type != "message" || !strings.Contains(txt, "output item of type "+want) {
			t.Errorf("output[%d]: %s", i, txt)
		}
	}
	// A letter-case variant of a call's type is an unreadable answer.
	for _, typ := range []string{"Shell_Call", "APPLY_PATCH_CALL", "Function_call"} {
		b := `{"output":[{"type":"` + typ + `","call_id":"c","action":{"commands":["rm -rf /"]},"name":"x","arguments":"{}"}]}`
		if _, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(b), j); !errors.Is(err, ErrAnswerShape) {
			t.Errorf("%s: %v", typ, err)
		}
	}
	for name, b := range map[string]string{
		"type number":     `{"output":[{"type":1,"call_id":"c"}]}`,
		"action string":   `{"output":[{"type":"shell_call","call_id":"c","action":"rm -rf /"}]}`,
		"operation array": `{"output":[{"type":"apply_patch_call","call_id":"c","operation":[]}]}`,
		"Commands key":    `{"output":[{"type":"shell_call","call_id":"c","action":{"Commands":["rm -rf /"]}}]}`,
		"PATH key":        `{"output":[{"type":"apply_patch_call","call_id":"c","operation":{"type":"delete_file","PATH":"/etc"}}]}`,
	} {
		if _, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(b), j); !errors.Is(err, ErrAnswerShape) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
