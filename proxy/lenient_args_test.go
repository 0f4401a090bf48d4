package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// Arguments Go's strict decoder refuses but a client's lenient one reads
// as JSON: Python's json.loads (openai-agents, LangChain) reads NaN,
// Infinity and -Infinity, LangChain's strict=False raw control characters
// in strings, LangChain's streaming parser a document cut short, repair
// libraries single quotes and trailing text. Matched as raw text, such
// arguments hide "rm -\u0072f" from a rule the agent's decoder reads as
// "rm -rf", and "tok-\u0061..." from a redact rule. They are refused as
// malformed (whole answers withheld, streams ended), and the refusal is a
// tool.call deny event that does not store the arguments.
func TestLenientJSONArgumentsRefused(t *testing.T) {
	checkArgumentsRefused(t, []argumentsCase{
		{"shell", `{"command":"rm -\u0072f /srv","x":NaN}`, true},
		{"shell", `{"command":"rm -\u0072f /srv","x":Infinity}`, true},
		{"shell", `{"command":"rm -\u0072f /srv","x":-Infinity}`, true},
		{"shell", `{"command":"rm -\u0072f /srv","x":[1,{"y":NaN}]}`, true},
		{"shell", "{\"command\":\"rm -\\u0072f /srv\n\"}", true}, // a raw newline: json.loads(strict=False)
		{"shell", "{\"command\":\"rm -\\u0072f /srv\t\"}", true},
		{"shell", `{"command":"rm -\u0072f /srv"`, true}, // cut short: LangChain's partial parser closes it
		{"shell", `{"command":"rm -\u0072f /srv`, true},
		{"shell", `{"command":"rm -\u0072f /srv"}{"command":"ls"}`, true}, // trailing data
		{"shell", `{"command":"rm -\u0072f /srv"} x`, true},
		{"shell", `{'command':'rm -\u0072f /srv'}`, true}, // single quotes: repair libraries
		{"shell", `rm -\u0072f /srv`, true},               // not JSON for anyone: still no function's arguments
		{"http", `{"tok":"tok-\u0061bcdefgh1","x":NaN}`, true},
		{"shell", `{"command":"rm -\u0072f /srv\udc80"}`, true}, // a lone surrogate: decoders differ
		{"shell", `"rm -\u0072f /srv\udc80"`, true},             // the same in a bare string
		{"shell", `["rm -\u0072f /srv\ud800"]`, true},
		{"shell", `{"Command":"rm -rf /srv","x":1e999}`, true}, // a number float64 cannot hold hid the case-variant key
		{"shell", `{"command":"ls /srv"}`, false},
		{"shell", ` {"command":"ls /srv"} `, false},
		{"shell", `{"command":"ls /srv","x":1e999}`, false}, // Go reads it as a number too
		{"shell", ``, false},
	})
}

type argumentsCase struct {
	tool, args string
	refused    bool
}

// checkArgumentsRefused proposes each case's call in a chat answer and
// stream, a Responses answer and stream, and (for shell) an MCP call; a
// refused one must be withheld (502, a stream ended as malformed) with
// one tool.call deny event, "unreadable arguments", without arguments.
func checkArgumentsRefused(t *testing.T, cases []argumentsCase) {
	t.Helper()
	h := newHarness(t, withRules(t, toolRules))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for _, c := range cases {
		args := c.args
		quoted := jsonStr(args)
		mcpAnswer := `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4o","output":[` +
			`{"id":"mcp_1","type":"mcp_call","server_label":"ops","name":"` + c.tool + `","arguments":` + quoted + `,"status":"completed"}]}`

		transports := append(callTransports(c.tool, args),
			callTransport{"responses mcp", "/v1/responses", `{"model":"gpt-4o","input":"x"}`, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, mcpAnswer) }})
		for _, tr := range transports {
			if tr.name == "responses mcp" && (c.tool != "shell" || strings.Contains(args, "Command")) { // mcp:ops/shell: no rule, no selector keys
				continue
			}
			before := len(h.sink.ofType(audit.TypeToolCall))
			h.up.set(tr.up)
			res, b := h.do("POST", tr.path, tok, tr.body)
			stream := strings.Contains(tr.name, "stream")
			got := string(b)
			switch {
			case c.refused && (strings.Contains(got, `u0072f`) || strings.Contains(got, `u0061bcdefgh1`) || strings.Contains(got, "/srv")):
				t.Errorf("%s %q: the call reached the client: %s", tr.name, args, b)
			case c.refused && !stream && res.StatusCode != http.StatusBadGateway:
				t.Errorf("%s %q: %d %s", tr.name, args, res.StatusCode, b)
			case c.refused && stream && !strings.Contains(got, CodeToolCallMalformed):
				t.Errorf("%s %q: not ended as malformed: %s", tr.name, args, b)
			case !c.refused && (res.StatusCode != 200 || strings.Contains(got, CodeToolCallMalformed)):
				t.Errorf("%s %q: %d %s", tr.name, args, res.StatusCode, b)
			}
			if !c.refused {
				continue
			}
			evs := h.sink.ofType(audit.TypeToolCall)
			if len(evs) != before+1 {
				t.Errorf("%s %q: %d tool.call events, want 1", tr.name, args, len(evs)-before)
				continue
			}
			ev := evs[len(evs)-1]
			if ev.Decision != "deny" || strings.Join(ev.Reasons, ",") != "unreadable arguments" || ev.Details["arguments"] != "" {
				t.Errorf("%s %q: tool.call %s %v %q", tr.name, args, ev.Decision, ev.Reasons, ev.Details["arguments"])
			}
		}
	}
}
