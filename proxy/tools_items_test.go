package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/rules"
)

// computer_call batches, tool_search_call and program items, and
// ambiguous arguments, through the proxy with the real judge.

var itemRules = []rules.Rule{
	{Name: "computer-no-rm", Target: rules.TargetToolCall, Tool: "computer_use", Arguments: &rules.ArgumentMatch{Path: "$.text", Pattern: `rm\s+-rf`}, Action: rules.Deny},
	{Name: "search-no-drop", Target: rules.TargetToolCall, Tool: "tool_search", Arguments: &rules.ArgumentMatch{Path: "$.query", Pattern: `DROP`}, Action: rules.Deny},
	{Name: "program-no-shell", Target: rules.TargetToolCall, Tool: "programmatic_tool_calling", Pattern: `shell\(`, Action: rules.Deny},
}

const itemsAnswer = `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4o","output":[` +
	`{"type":"computer_call","id":"cu_1","call_id":"call_1","status":"completed","pending_safety_checks":[],"actions":[{"type":"click","x":1,"y":2,"button":"left"},{"type":"type","text":"ls"}]},` +
	`{"type":"computer_call","id":"cu_2","call_id":"call_2","status":"completed","pending_safety_checks":[],"action":{"type":"screenshot"},"actions":[{"type":"type","text":"rm  -rf /srv"},{"type":"keypress","keys":["ENTER"]}]},` +
	`{"type":"tool_search_call","id":"ts_1","call_id":"call_3","execution":"client","status":"completed","arguments":{"query":"crm tools"}},` +
	`{"type":"program","id":"pg_1","call_id":"call_4","code":"await shell('ls')","fingerprint":"f"}]}`

func TestComputerBatchToolSearchAndProgramThroughProxy(t *testing.T) {
	h := newHarness(t, withRules(t, itemRules))
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, itemsAnswer) })
	tok := h.mint(grant{scope: "model:gpt-4o tool:computer_use tool:tool_search tool:programmatic_tool_calling"})
	cl := h.client(tok)
	r, err := cl.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("go")},
		Tools: []responses.ToolUnionParam{{OfComputer: &responses.ComputerToolParam{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.up.requests(); !strings.Contains(string(got[len(got)-1].Body), `"type":"computer"`) {
		t.Fatalf("the request did not declare the computer tool: %s", got[len(got)-1].Body)
	}
	raw := r.RawJSON()
	if len(r.Output) != 4 || r.Output[0].Type != "computer_call" || r.Output[1].Type != "message" || r.Output[2].Type != "tool_search_call" || r.Output[3].Type != "message" {
		t.Fatalf("%s", raw)
	}
	if cu := r.Output[0].AsComputerCall(); len(cu.Actions) != 2 || cu.Actions[1].Text != "ls" {
		t.Errorf("allowed batch %s", r.Output[0].RawJSON())
	}
	if m := r.Output[1].AsMessage().Content[0].Text; !strings.Contains(m, `tool "computer_use"`) || !strings.Contains(m, `rule "computer-no-rm"`) {
		t.Errorf("denied batch: %q", m)
	}
	if m := r.Output[3].AsMessage().Content[0].Text; !strings.Contains(m, `tool "programmatic_tool_calling"`) || !strings.Contains(m, `rule "program-no-shell"`) {
		t.Errorf("denied program: %q", m)
	}
	for _, leak := range []string{"rm  -rf", "cu_2", "call_2", "pg_1", "shell("} {
		if strings.Contains(raw, leak) {
			t.Errorf("%q reached the client: %s", leak, raw)
		}
	}
	evs := h.sink.ofType(audit.TypeToolCall)
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Target+" "+ev.Details["kind"]+" "+ev.Decision+" "+ev.Details["arguments"])
	}
	want := []string{
		`computer_use computer allow {"button":"left","type":"click","x":1,"y":2}`,
		`computer_use computer allow {"text":"ls","type":"type"}`,
		`computer_use computer allow {"type":"screenshot"}`,
		`computer_use computer deny {"text":"rm  -rf /srv","type":"type"}`,
		`computer_use computer allow {"keys":["ENTER"],"type":"keypress"}`,
		`tool_search tool_search allow {"query":"crm tools"}`,
		`programmatic_tool_calling program deny await shell('ls')`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tool.call events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Under tool:computer_use only: {"type":"computer"} may be declared,
	// tool_search may not, and the proposed search and program are denied
	// by the scope.
	tok = h.mint(grant{scope: "model:gpt-4o tool:computer_use"})
	if res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","tools":[{"type":"computer"},{"type":"tool_search"}]}`); res.StatusCode != 403 ||
		!strings.Contains(string(b), `\"tool_search\" (tools[1])`) {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	res, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","tools":[{"type":"computer"}]}`)
	if res.StatusCode != 200 || !strings.Contains(string(b), `pamctl blocked a call of tool \"tool_search\": it is not in this grant's tool scopes`) ||
		!strings.Contains(string(b), `pamctl blocked a call of tool \"programmatic_tool_calling\": it is not in this grant's tool scopes`) {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
}

// Arguments that decoders read differently from the rules: a key that
// equals a rule's selector key ($.command) only under case folding, at any
// depth, and duplicate keys or case twins. Whole answers are withheld
// (502), streams end as malformed; the call never reaches the client.
// Keys no selector names are the tool's own and pass.
func TestAmbiguousArgumentsThroughProxy(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for args, refused := range map[string]bool{
		`{"Command":"rm -rf /srv"}`:                    true,
		`{"COMMAND":"rm -rf /srv"}`:                    true,
		`{"opts":[{"commanD":"rm -rf /srv"}]}`:         true,
		`{"command":"ls","command":"rm -rf /srv"}`:     true,
		`{"command":"ls","Command":"rm -rf /srv"}`:     true,
		`{"command":"ls","Path":"/srv","Owner":"ops"}`: false,
		`{"command":"ls","path":"/srv","PATH":"/bin"}`: true, // a case twin, whatever the selectors
	} {
		for _, c := range callTransports("shell", args) {
			h.up.set(c.up)
			res, b := h.do("POST", c.path, tok, c.body)
			stream := strings.Contains(c.name, "stream")
			switch {
			case strings.Contains(string(b), "rm -rf") || strings.Contains(string(b), "/srv") && refused:
				t.Errorf("%s %s: the call reached the client: %s", c.name, args, b)
			case refused && !stream && res.StatusCode != http.StatusBadGateway:
				t.Errorf("%s %s: %d %s", c.name, args, res.StatusCode, b)
			case refused && stream && !strings.Contains(string(b), CodeToolCallMalformed):
				t.Errorf("%s %s: not ended as malformed: %s", c.name, args, b)
			case !refused && (res.StatusCode != 200 || !strings.Contains(string(b), "Owner") || strings.Contains(string(b), CodeToolCallMalformed)):
				t.Errorf("%s %s: %d %s", c.name, args, res.StatusCode, b)
			}
		}
	}
}
