package toolcall

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/responses"
)

// itemJudge denies calls whose arguments mention rm -rf or DROP, redacts
// ghp_SECRET, allows the rest, and records what it saw.
func itemJudge(seen *[]Call) Judge {
	return JudgeFunc(func(_ context.Context, c Call) (Verdict, error) {
		*seen = append(*seen, c)
		switch {
		case strings.Contains(c.Arguments, "rm -rf") || strings.Contains(c.Arguments, "DROP"):
			return Verdict{Action: Deny, Rule: "no-rm", Message: "blocked " + c.Tool()}, nil
		case strings.Contains(c.Arguments, "ghp_SECRET"):
			return Verdict{Action: Redact, Rule: "mask", Arguments: strings.ReplaceAll(c.Arguments, "ghp_SECRET", "[MASKED]")}, nil
		}
		return Verdict{Action: Allow}, nil
	})
}

func responsesBody(items ...string) string {
	return `{"id":"r","object":"response","created_at":1,"status":"completed","model":"m","output":[` + strings.Join(items, ",") + `]}`
}

// A computer_call's batch of actions: every action is judged as a call of
// its own (tool computer_use, the action's JSON as arguments), after the
// single action when there is one; one denied action denies the item; a
// redaction changes only its own action.
func TestRewriteAnswerComputerActions(t *testing.T) {
	click := `{"type":"click","x":1,"y":2,"button":"left"}`
	for name, c := range map[string]struct {
		item    string
		judged  []string // arguments, in order
		denied  bool
		visible []string // in the rewritten answer
	}{
		"action only": {`{"type":"computer_call","id":"cu","call_id":"c","action":` + click + `,"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"button":"left","type":"click","x":1,"y":2}`}, false, []string{`"action":{"button":"left","type":"click","x":1,"y":2}`}},
		"actions only": {`{"type":"computer_call","id":"cu","call_id":"c","actions":[` + click + `,{"type":"type","text":"ls"},{"type":"keypress","keys":["ENTER"]}],"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"button":"left","type":"click","x":1,"y":2}`, `{"text":"ls","type":"type"}`, `{"keys":["ENTER"],"type":"keypress"}`}, false, []string{`"keys":["ENTER"]`}},
		"null action beside actions": {`{"type":"computer_call","id":"cu","call_id":"c","action":null,"actions":[{"type":"type","text":"ls"}],"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"text":"ls","type":"type"}`}, false, []string{`"text":"ls"`}},
		"neither": {`{"type":"computer_call","id":"cu","call_id":"c","pending_safety_checks":[],"status":"completed"}`,
			[]string{`{}`}, false, nil},
		"the third action denied": {`{"type":"computer_call","id":"cu","call_id":"c","actions":[` + click + `,{"type":"type","text":"ls"},{"type":"type","text":"rm -rf /"},{"type":"keypress","keys":["ENTER"]}],"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"button":"left","type":"click","x":1,"y":2}`, `{"text":"ls","type":"type"}`, `{"text":"rm -rf /","type":"type"}`, `{"keys":["ENTER"],"type":"keypress"}`}, true, []string{"blocked computer_use"}},
		"a harmless action, the batch denied": {`{"type":"computer_call","id":"cu","call_id":"c","action":{"type":"screenshot"},"actions":[{"type":"type","text":"DROP TABLE users"}],"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"type":"screenshot"}`, `{"text":"DROP TABLE users","type":"type"}`}, true, []string{"blocked computer_use"}},
		"the action denied, the batch harmless": {`{"type":"computer_call","id":"cu","call_id":"c","action":{"type":"type","text":"rm -rf /"},"actions":[{"type":"screenshot"}],"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"text":"rm -rf /","type":"type"}`, `{"type":"screenshot"}`}, true, []string{"blocked computer_use"}},
		"one action redacted": {`{"type":"computer_call","id":"cu","call_id":"c","actions":[{"type":"type","text":"token ghp_SECRET"},{"type":"keypress","keys":["ENTER"]}],"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"text":"token ghp_SECRET","type":"type"}`, `{"keys":["ENTER"],"type":"keypress"}`}, false, []string{`{"text":"token [MASKED]","type":"type"}`, `"keys":["ENTER"]`}},
		"a drag path": {`{"type":"computer_call","id":"cu","call_id":"c","actions":[{"type":"drag","path":[{"x":1,"y":2},{"x":3,"y":4}]}],"pending_safety_checks":[],"status":"completed"}`,
			[]string{`{"path":[{"x":1,"y":2},{"x":3,"y":4}],"type":"drag"}`}, false, nil},
	} {
		t.Run(name, func(t *testing.T) {
			var seen []Call
			out, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(responsesBody(c.item)), itemJudge(&seen))
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != len(c.judged) {
				t.Fatalf("judged %+v, want %d calls", seen, len(c.judged))
			}
			for i, want := range c.judged {
				if seen[i].Tool() != "computer_use" || seen[i].ID != "c" || seen[i].Arguments != want {
					t.Errorf("call %d: %+v, want %s", i, seen[i], want)
				}
			}
			var r responses.Response
			if err := json.Unmarshal(out, &r); err != nil || len(r.Output) != 1 {
				t.Fatalf("%v: %s", err, out)
			}
			if got := r.Output[0].Type; (got == "message") != c.denied {
				t.Fatalf("output type %s: %s", got, out)
			}
			if c.denied && (strings.Contains(string(out), "rm -rf") || strings.Contains(string(out), "DROP")) {
				t.Fatalf("a denied action reached the client: %s", out)
			}
			if strings.Contains(string(out), "ghp_SECRET") {
				t.Fatalf("masked text reached the client: %s", out)
			}
			for _, v := range c.visible {
				if !strings.Contains(string(out), v) {
					t.Errorf("%s not in %s", v, out)
				}
			}
			if !c.denied {
				if cu := r.Output[0].AsComputerCall(); cu.CallID != "c" {
					t.Errorf("the SDK reads %+v", cu)
				}
			}
		})
	}
}

// Unreadable batches, and keys of an arguments object (at any depth) that
// differ from one the SDKs read only under case folding: the answer is
// withheld, whatever the judge would say.
func TestRewriteAnswerArgumentsObjectsFailClosed(t *testing.T) {
	for name, item := range map[string]string{
		"actions not an array":      `{"type":"computer_call","call_id":"c","actions":{"type":"type","text":"rm -rf /"}}`,
		"actions element a string":  `{"type":"computer_call","call_id":"c","actions":["rm -rf /"]}`,
		"actions element null":      `{"type":"computer_call","call_id":"c","actions":[null]}`,
		"action a string":           `{"type":"computer_call","call_id":"c","action":"rm -rf /"}`,
		"Text in an action":         `{"type":"computer_call","call_id":"c","actions":[{"type":"type","Text":"rm -rf /"}]}`,
		"X in the action":           `{"type":"computer_call","call_id":"c","action":{"type":"click","X":1,"y":2}}`,
		"Kelvin-sign keys":          `{"type":"computer_call","call_id":"c","actions":[{"type":"keypress","\u212aeys":["CTRL","W"]}]}`,
		"long-s scroll_x":           `{"type":"computer_call","call_id":"c","actions":[{"type":"scroll","ſcroll_x":5,"x":1,"y":1}]}`,
		"Y in a drag path":          `{"type":"computer_call","call_id":"c","actions":[{"type":"drag","path":[{"x":1,"Y":2}]}]}`,
		"TYPE in an action":         `{"type":"computer_call","call_id":"c","actions":[{"TYPE":"type","text":"x"}]}`,
		"Commands in a shell_call":  `{"type":"shell_call","call_id":"c","action":{"commandſ":["rm -rf /"]}}`,
		"Working_Directory":         `{"type":"local_shell_call","call_id":"c","action":{"type":"exec","command":["ls"],"Working_Directory":"/"}}`,
		"program code not a string": `{"type":"program","call_id":"c","code":{"src":"rm -rf /"}}`,
		"program name not a string": `{"type":"program","call_id":"c","code":"x","name":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			var seen []Call
			_, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(responsesBody(item)), itemJudge(&seen))
			if !errors.Is(err, ErrAnswerShape) {
				t.Fatalf("err %v, judged %+v", err, seen)
			}
		})
	}
	// Environment variables are data: PATH is not path.
	var seen []Call
	ok := `{"type":"local_shell_call","call_id":"c","action":{"type":"exec","command":["ls"],"env":{"PATH":"/bin","Type":"x"}}}`
	if _, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(responsesBody(ok)), itemJudge(&seen)); err != nil || len(seen) != 1 {
		t.Fatalf("env: %v %+v", err, seen)
	}
}

// tool_search_call and program items are calls: judged as tool_search and
// programmatic_tool_calling with their arguments (the search's arguments,
// the program's code) visible to argument patterns, redacted in place.
func TestRewriteAnswerToolSearchAndProgram(t *testing.T) {
	for name, c := range map[string]struct {
		item    string
		tool    string
		args    string
		denied  bool
		visible string
	}{
		"tool search, object": {`{"type":"tool_search_call","id":"ts","call_id":"c","execution":"client","arguments":{"query":"crm tools","limit":5},"status":"completed"}`,
			"tool_search", `{"limit":5,"query":"crm tools"}`, false, `"arguments":{"limit":5,"query":"crm tools"}`},
		"tool search, string": {`{"type":"tool_search_call","id":"ts","call_id":"c","execution":"server","arguments":"{\"query\":\"DROP tools\"}","status":"completed"}`,
			"tool_search", `{"query":"DROP tools"}`, true, "blocked tool_search"},
		"tool search, absent": {`{"type":"tool_search_call","id":"ts","call_id":"c","execution":"client","status":"completed"}`,
			"tool_search", `{}`, false, `"tool_search_call"`},
		"tool search, redacted": {`{"type":"tool_search_call","id":"ts","call_id":"c","execution":"client","arguments":{"query":"ghp_SECRET"},"status":"completed"}`,
			"tool_search", `{"query":"ghp_SECRET"}`, false, `"arguments":{"query":"[MASKED]"}`},
		"program": {`{"type":"program","id":"pg","call_id":"c","code":"await tools.ls()","fingerprint":"f"}`,
			"programmatic_tool_calling", `await tools.ls()`, false, `"code":"await tools.ls()"`},
		"program denied": {`{"type":"program","id":"pg","call_id":"c","code":"await tools.shell('rm -rf /')","fingerprint":"f"}`,
			"programmatic_tool_calling", `await tools.shell('rm -rf /')`, true, "blocked programmatic_tool_calling"},
		"program redacted": {`{"type":"program","id":"pg","call_id":"c","code":"login('ghp_SECRET')","fingerprint":"f"}`,
			"programmatic_tool_calling", `login('ghp_SECRET')`, false, `"code":"login('[MASKED]')"`},
	} {
		t.Run(name, func(t *testing.T) {
			var seen []Call
			out, err := RewriteAnswer(context.Background(), EndpointResponses, []byte(responsesBody(c.item)), itemJudge(&seen))
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != 1 || seen[0].Tool() != c.tool || seen[0].ID != "c" || seen[0].Arguments != c.args {
				t.Fatalf("judged %+v", seen)
			}
			var r responses.Response
			if err := json.Unmarshal(out, &r); err != nil || len(r.Output) != 1 {
				t.Fatalf("%v: %s", err, out)
			}
			if (r.Output[0].Type == "message") != c.denied || !strings.Contains(string(out), c.visible) {
				t.Fatalf("%s", out)
			}
			if strings.Contains(string(out), "rm -rf") || strings.Contains(string(out), "DROP") || strings.Contains(string(out), "ghp_SECRET") {
				t.Fatalf("denied or masked text reached the client: %s", out)
			}
		})
	}
}
