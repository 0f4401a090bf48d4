package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/rules"
	"github.com/pamctl/pamctl/proxy/toolcall"
)

// The tool-call firewall (docs/tools.md). On the request side a grant with
// tool: scopes may declare only tools those scopes cover (checkTools). On
// the answer side every tool call the model proposes goes to the call's
// judge (toolJudge): the grant's tool scopes first, then the tool_call
// rules, a hold for a person when a rule asks for approval, and one
// tool.call audit event per call. Whole answers are rewritten here
// (judgeAnswer); the stream relay passes the same judge to its
// held-call buffer. A grant without tool scopes, under a config without
// tool_call rules, has no judge and pays nothing.

// maxArgumentsShown bounds the masked arguments of a tool call that can
// be held for a person. An approval releases the whole call, so the
// person is shown all of its arguments: a call whose masked arguments are
// longer is refused, not held with a cut (a command padded past the cut
// would be released unseen).
const maxArgumentsShown = 8 << 10

// checkTools refuses a model call whose grant has tool scopes when its body
// declares a tool those scopes do not cover (403 tool_not_in_scope). It
// sets c.toolScopes for the judge.
func (p *Proxy) checkTools(c *call) *apiError {
	c.toolScopes = toolcall.Scopes(c.scopes)
	if c.toolScopes == nil || c.req == nil {
		return nil
	}
	tools, err := payload.DeclaredTools(c.path, c.req.Raw)
	if err != nil {
		return errBadRequest(CodeInvalidJSON, "", "The request body is not a valid JSON object. Send the same JSON you would send to OpenAI.", err)
	}
	granted := "tool:" + strings.Join(c.toolScopes, " tool:")
	for _, t := range tools {
		switch {
		case t.Stored:
			if !coversEverything(c.toolScopes) {
				return errForbidden(CodeToolNotInScope, fmt.Sprintf(
					"The request uses a stored prompt (%s), whose tools pamctl cannot see, and this token may use only some tools (%s). Send the prompt inline, or ask for every tool with `pamctl request --scope 'tool:*'`.",
					t.Where, clip(granted, capDetail)))
			}
		case t.Name == "":
			return errForbidden(CodeToolNotInScope, fmt.Sprintf(
				"The request declares a tool at %s without a name pamctl can read, and this token may use only some tools (%s). Name every tool (and an MCP tool's server_label) as the OpenAI API documents it.",
				t.Where, clip(granted, capDetail)))
		case !toolcall.ValidName(nameToCheck(t.Name)):
			return errForbidden(CodeToolNotInScope, fmt.Sprintf(
				"Tool %s (%s) has a name no tool scope can name: use letters, digits, '_', '-' and '.', at most %d bytes (an MCP tool is mcp:SERVER/TOOL)%s.",
				toolcall.QuoteName(t.Name), t.Where, toolcall.MaxNameLen, firstOutside(nameToCheck(t.Name))))
		case !toolcall.Covered(c.toolScopes, t.Name):
			return errForbidden(CodeToolNotInScope, fmt.Sprintf(
				"Tool %s (%s) is not in this token's tool scopes (%s). Ask for it with `pamctl request --scope 'tool:%s'`%s.",
				toolcall.QuoteName(t.Name), t.Where, clip(granted, capDetail), t.Name, mcpHint(t.Name)))
		}
	}
	return nil
}

// nameToCheck is the name whose syntax ValidName checks: "mcp:SERVER/*"
// (every tool of a server) is checked as a tool of SERVER.
func nameToCheck(name string) string {
	if rest, ok := strings.CutSuffix(name, "/*"); ok && strings.HasPrefix(rest, "mcp:") && !strings.Contains(rest[4:], "/") {
		return rest + "/x"
	}
	return name
}

func coversEverything(scopes []string) bool {
	for _, s := range scopes {
		if s == "*" {
			return true
		}
	}
	return false
}

func mcpHint(name string) string {
	if strings.HasPrefix(name, "mcp:") && strings.HasSuffix(name, "/*") {
		return ", or list the tools the model may use in the MCP tool's allowed_tools"
	}
	return ""
}

// toolJudge returns the judge of the call's proposed tool calls, or nil
// when nothing needs judging: the grant has no tool scopes and no
// tool_call rule is in force (the relays then take their fast path).
// The judge may be called from the goroutine relaying the answer.
func (p *Proxy) toolJudge(c *call) toolcall.Judge {
	if len(c.toolScopes) == 0 && !c.Rules.HasCallRules() {
		return nil
	}
	return &judge{p: p, c: c}
}

// judgeAnswer applies the call's judge to a whole (non-streamed) answer of
// a chat or Responses call: denied calls are replaced by an explanation,
// redacted ones carry masked arguments (toolcall.RewriteAnswer).
func (p *Proxy) judgeAnswer(ctx context.Context, c *call, body []byte) ([]byte, error) {
	j := p.toolJudge(c)
	if j == nil || c.shape == "" {
		return body, nil
	}
	ep := toolcall.EndpointChat
	switch c.shape {
	case toolcall.EndpointResponses, toolcall.EndpointItems, toolcall.EndpointItem, toolcall.EndpointChatMessages:
		ep = c.shape
	}
	// What a case-insensitive decoder would read as calls (Tool_calls,
	// duplicate keys) must not slip past the rewrite, which reads exact keys.
	if err := strictToolJSON(body); err != nil {
		return nil, fmt.Errorf("%w: %w", toolcall.ErrAnswerShape, err)
	}
	choices := 0 // not known: a stored completion read back
	if ep == toolcall.EndpointChat && c.kind == epChat {
		choices = max(c.choices, 1)
	}
	out, err := toolcall.RewriteAnswerChoices(ctx, ep, body, j, choices)
	if err != nil {
		var u *unreadableCall
		if errors.As(err, &u) {
			err = tokenLimitCut(ep, body, u.tool, err)
		}
	}
	return out, err
}

// unreadableCall: the judge refused a call's arguments unread
// (ambiguousArguments).
type unreadableCall struct {
	tool string
	err  error
}

func (e *unreadableCall) Error() string {
	return "the arguments of a call of tool " + toolcall.QuoteName(e.tool) + ": " + e.err.Error()
}
func (e *unreadableCall) Unwrap() error { return e.err }

// judge is a call's toolcall.Judge.
type judge struct {
	p *Proxy
	c *call
}

var _ toolcall.Judge = (*judge)(nil)

// Judge decides on one proposed call and records it.
func (j *judge) Judge(ctx context.Context, tc toolcall.Call) (toolcall.Verdict, error) {
	p, c := j.p, j.c
	tool := tc.Tool()
	ev := toolEvent(c, tc)
	if tc.Kind != toolcall.Unknown {
		if err := ambiguousArguments(tc.Kind, tc.Arguments, c.Rules.SelectorKeys(tool)); err != nil {
			if errors.Is(err, errLenientArguments) && cutShortJSON(tc.Arguments) {
				err = &cutShortError{args: tc.Arguments} // the token limit may have cut it: judgeAnswer tells
			}
			// Unreadable, like a malformed item: the answer is withheld
			// (the stream ends), nothing is judged or relayed. The trail
			// records the refusal, without the arguments: they are what
			// masking could not read.
			ev.Decision, ev.Reasons = "deny", []string{"unreadable arguments"}
			if aerr := p.appendEvent(context.WithoutCancel(ctx), ev); aerr != nil {
				p.log.Error("audit append failed", "request_id", c.id, "type", audit.TypeToolCall, "err", aerr)
				return toolcall.Verdict{}, fmt.Errorf("proxy: audit tool call: %w", aerr)
			}
			return toolcall.Verdict{}, fmt.Errorf("%w: %w", toolcall.ErrAnswerShape, &unreadableCall{tool: tool, err: err})
		}
	}
	v, final := j.decide(ctx, tc, tool, ev)
	if final == "" {
		final = tc.Arguments
	}
	masked, _ := c.ResponseMask.Mask(final)
	ev.Details["arguments"] = masked
	switch v.Action {
	case toolcall.Allow:
		ev.Decision = "allow"
	case toolcall.Redact:
		ev.Decision = "redact"
	default:
		ev.Decision = "deny"
	}
	if err := p.appendEvent(context.WithoutCancel(ctx), ev); err != nil {
		p.log.Error("audit append failed", "request_id", c.id, "type", audit.TypeToolCall, "err", err)
		return toolcall.Verdict{}, fmt.Errorf("proxy: audit tool call: %w", err)
	}
	return v, nil
}

// toolEvent is the tool.call event of tc, without its decision.
func toolEvent(c *call, tc toolcall.Call) *audit.Event {
	tool := tc.Tool()
	ev := &audit.Event{
		Type: audit.TypeToolCall, Actor: actorOf(c.claims), Model: c.model, Endpoint: c.method + " " + c.path, Target: tool,
		Details: callDetails(c),
	}
	ev.Details["tool"], ev.Details["kind"] = tool, string(tc.Kind)
	if c.claims != nil {
		ev.Grant, ev.Request = c.claims.Req, c.claims.Req
	}
	if tc.ID != "" {
		ev.Details["call_id"] = tc.ID
	}
	return ev
}

// Unrelayed records a call a stream removed without judging it: a tool
// item in an event no SDK reads calls from (the output of
// response.created or response.in_progress, an event of a type pamctl
// does not know). It is one tool.call event, deny, reason "unrelayed
// event", without arguments (the agent never got any).
func (j *judge) Unrelayed(ctx context.Context, tc toolcall.Call) error {
	p, c := j.p, j.c
	ev := toolEvent(c, tc)
	ev.Decision, ev.Reasons = "deny", []string{"unrelayed event"}
	if err := p.appendEvent(context.WithoutCancel(ctx), ev); err != nil {
		p.log.Error("audit append failed", "request_id", c.id, "type", audit.TypeToolCall, "err", err)
		return fmt.Errorf("proxy: audit tool call: %w", err)
	}
	return nil
}

// Withheld records a call a stream began and ends without a verdict:
// one it never finished (the upstream's error or end, response.failed,
// the client leaving before it was complete or judged), one the buffer
// refused unjudged (a call_id twice). It is one tool.call event, deny,
// reason why, with the arguments as far as they came, masked as a judged
// call's are (the agent never got them).
func (j *judge) Withheld(ctx context.Context, tc toolcall.Call, why string) error {
	p, c := j.p, j.c
	ev := toolEvent(c, tc)
	ev.Decision, ev.Reasons = "deny", []string{why}
	if tc.Arguments != "" {
		masked, _ := c.ResponseMask.Mask(tc.Arguments)
		ev.Details["arguments"] = masked
	}
	if err := p.appendEvent(context.WithoutCancel(ctx), ev); err != nil {
		p.log.Error("audit append failed", "request_id", c.id, "type", audit.TypeToolCall, "err", err)
		return fmt.Errorf("proxy: audit tool call: %w", err)
	}
	return nil
}

// ambiguousArguments refuses arguments that decoders could read
// differently from the rules: duplicate keys or keys equal under case
// folding in one object, invalid UTF-8 or a lone surrogate escape
// (payload.Validate), and a key that equals one of keys (the selectors'
// keys) only under case folding: a rule's $.command does not see
// "Command" or "COMMAND", an agent decoding into a struct with
// encoding/json runs it as command.
//
// The arguments of a function or MCP call are a JSON object for the
// agent, so they must be empty or one JSON value Go reads exactly
// (errLenientArguments), and that value an object or null
// (errNonObjectArguments): anything else is refused too, and so is a
// lone surrogate in a bare JSON string. Arguments of other kinds that are not
// JSON (a custom tool's input, a program's code) are text, matched as
// they are.
func ambiguousArguments(kind toolcall.Kind, args string, keys []string) error {
	t := strings.TrimLeft(args, " \t\r\n")
	jsonArgs := kind == toolcall.Function || kind == toolcall.MCP
	switch {
	case t == "":
		return nil // no arguments: the SDKs read {}
	case !jsonArgs && t[0] != '{' && t[0] != '[':
		return nil // text, not an object or array: no keys
	}
	switch err := payload.Validate([]byte(args)); {
	case jsonArgs && (errors.Is(err, payload.ErrInvalidJSON) || errors.Is(err, payload.ErrTooComplex)):
		return errLenientArguments
	case errors.Is(err, payload.ErrInvalidJSON):
		return nil // not JSON: the rules match the text
	case err != nil:
		return err
	}
	if jsonArgs && t[0] != '{' && strings.TrimRight(t, " \t\r\n") != "null" {
		return errNonObjectArguments
	}
	if len(keys) == 0 {
		return nil
	}
	var v any
	d := json.NewDecoder(strings.NewReader(args))
	d.UseNumber() // 1e999 is a number to the rules too: no reason to skip the keys
	if d.Decode(&v) != nil {
		return errors.New("they are JSON Go's decoder cannot read")
	}
	got, want, err := toolcall.FoldedKeyIn(v, keys, nil, 10000)
	if err == nil && got != "" {
		err = fmt.Errorf("the key %s differs from %q (a rule's selector) only in letter case", quoteUpstream(got), want)
	}
	return err
}

// errNonObjectArguments refuses a function or MCP call's arguments that
// are one JSON value but not an object (nor null, which the SDKs read as
// no arguments): a string, an array, a number or a boolean. A selector
// reads nothing in them, and clients read them their own way: LangChain
// passes a string (or any other value) to the tool as its first
// argument, so "rm -rf /" runs as the command a $.command rule never saw,
// and a string holding JSON would be judged as text; openai-agents fails
// on them. pamctl cannot judge them as the agent reads them, so they fail
// closed.
var errNonObjectArguments = errors.New("they are JSON but not an object (a string, an array, a number or a boolean), and a function tool's arguments are an object: clients read anything else their own way (LangChain passes it as the tool's first argument), not as the rules read it")

// errLenientArguments refuses a function or MCP call's arguments that are
// neither empty (white space only) nor exactly one JSON value by the
// standard. The agent's SDK decodes them, and client decoders are
// lenient where Go's is not: Python's json.loads (openai-agents,
// LangChain) reads NaN, Infinity and -Infinity, LangChain's
// json.loads(strict=False) raw control characters inside strings, its
// streaming parser a document cut short (it closes the open strings and
// brackets), repair libraries single quotes and trailing text. Matched as
// raw text, such arguments would hide "rm -\u0072f" from a rule (and a
// secret spelled with an escape from a redact rule) that the agent's
// decoder reads as "rm -rf": pamctl cannot read them as the agent will,
// so they fail closed.
var errLenientArguments = errors.New("they are not one JSON value as the standard reads it (NaN, Infinity, a raw control character in a string, a document cut short or followed by more, or not JSON), and a client's lenient decoder may read them as JSON the rules never saw")

// decide returns the verdict and the arguments the client would get (""
// for the model's own), adding reasons to ev.
func (j *judge) decide(ctx context.Context, tc toolcall.Call, tool string, ev *audit.Event) (toolcall.Verdict, string) {
	c := j.c
	if tc.Kind == toolcall.Unknown {
		// An output item pamctl cannot read as a call: no scope or rule
		// can allow it (toolcall.ItemKind).
		ev.Reasons = []string{"unknown item type"}
		return toolcall.UnknownVerdict(tc, toolcall.Verdict{Rule: "unknown_item"}), ""
	}
	if len(c.toolScopes) > 0 && !toolcall.Covered(c.toolScopes, tool) {
		ev.Reasons = []string{"scope"}
		why := "it is not in this grant's tool scopes"
		if toolcall.ValidName(tool) {
			why += fmt.Sprintf("; ask for it with `pamctl request --scope 'tool:%s'`", tool)
		}
		return toolcall.Verdict{Action: toolcall.Deny, Rule: "scope", Message: toolcall.DeniedMessage(tc, why)}, ""
	}
	in := rules.CallInput{Tool: tool, Arguments: tc.Arguments, Model: c.model, Endpoint: c.path}
	if c.claims != nil {
		in.Subject, in.Groups = c.claims.Subject, c.claims.Groups
	}
	res := c.Rules.EvaluateCall(in)
	for _, name := range res.Matched {
		ev.Reasons = append(ev.Reasons, "rule "+name)
	}
	redacted := ""
	if res.Redactions > 0 {
		redacted = res.Arguments
	}
	switch res.Action {
	case rules.Deny:
		why := fmt.Sprintf("rule %q forbids it", res.Rule)
		if res.Unredactable {
			why = fmt.Sprintf("rule %q must mask part of its arguments and could not", res.Rule)
		}
		return toolcall.Verdict{Action: toolcall.Deny, Rule: res.Rule, Message: toolcall.DeniedMessage(tc, why)}, ""
	case rules.RequireApproval:
		if why := j.hold(ctx, tc, tool, res, redacted, ev); why != "" {
			return toolcall.Verdict{Action: toolcall.Deny, Rule: res.Rule, Message: toolcall.DeniedMessage(tc, why)}, ""
		}
	}
	if redacted != "" {
		rule := res.Rule
		if res.Action != rules.Redact {
			rule = firstRedact(c.Rules, res.Matched)
		}
		return toolcall.Verdict{Action: toolcall.Redact, Rule: rule, Arguments: redacted}, redacted
	}
	return toolcall.Verdict{Action: toolcall.Allow, Rule: res.Rule}, ""
}

// firstRedact names the first matched rule that redacts (a released call
// whose arguments a redact rule also masked).
func firstRedact(e *rules.Engine, matched []string) string {
	for _, m := range matched {
		if e.Action(m) == rules.Redact {
			return m
		}
	}
	return ""
}

// hold asks a person to release the call; it returns "" once released,
// else why the call is refused (for the agent's message).
func (j *judge) hold(ctx context.Context, tc toolcall.Call, tool string, res rules.CallResult, redacted string, ev *audit.Event) string {
	p, c := j.p, j.c
	who := fmt.Sprintf("rule %q needs approval by %s", res.Rule, res.Approvers)
	if p.holds == nil || c.claims == nil {
		ev.Reasons = append(ev.Reasons, "no approval channel")
		return who + ", and this proxy has no approval channel"
	}
	args := tc.Arguments
	if redacted != "" {
		args = redacted
	}
	if len(tool) > toolcall.MaxNameLen {
		// The page, the trail and the notifications show a name this long
		// cut short, and an approval would release all of it.
		ev.Reasons = append(ev.Reasons, "tool name too long to show")
		return fmt.Sprintf("%s, and the tool's name (%d bytes) is longer than an approver is shown (%d), so it is refused rather than held",
			who, len(tool), toolcall.MaxNameLen)
	}
	masked, _ := c.ResponseMask.Mask(args)
	if len(masked) > maxArgumentsShown {
		ev.Reasons = append(ev.Reasons, "arguments too long to show")
		return fmt.Sprintf("%s, and its arguments (%d bytes, masked) are longer than an approver is shown (%d), so it is refused rather than held: an approval would release what nobody saw",
			who, len(masked), maxArgumentsShown)
	}
	hctx, cancel := context.WithTimeout(ctx, p.holdTimeout)
	defer cancel()
	start := time.Now()
	d, err := p.holds.Hold(hctx, HoldRequest{
		GrantID: c.claims.Req, Claims: c.claims, Rule: res.Rule, Approvers: res.Approvers, Approvals: res.Approvals,
		Model: c.clientModel, Method: c.method, Endpoint: c.path, Tool: tool, Arguments: masked,
		Excerpt:      "tool " + toolcall.QuoteName(tool) + " arguments: " + audit.ExcerptText(masked), // no line reads as a place
		PromptSHA256: audit.PromptDigest("tool.call\x00" + tool + "\x00" + tc.Arguments),
	})
	ev.Details["held_ms"] = fmt.Sprint(time.Since(start).Milliseconds())
	if d.ID != "" {
		ev.Reasons = append(ev.Reasons, "hold "+d.ID)
		ev.Review = d.ID
	}
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		p.log.Warn("proxy: tool call hold failed", "request_id", c.id, "err", err)
		ev.Reasons = append(ev.Reasons, "hold failed")
		return who + ", and the approval channel failed"
	case d.Approved:
		ev.Reasons = append(ev.Reasons, "released")
		return ""
	case ctx.Err() != nil:
		ev.Reasons = append(ev.Reasons, "client gave up")
		return who + ", and the client stopped waiting"
	case d.Reason != "":
		ev.Reasons = append(ev.Reasons, "refused")
		return who + ", and it was refused: " + d.Reason
	}
	ev.Reasons = append(ev.Reasons, "timeout")
	return who + ", and no approver released it in time"
}

// toolJudgeError is what a client gets when its whole answer's tool calls
// could not all be judged: the answer is withheld.
func (p *Proxy) toolJudgeError(ctx context.Context, c *call, err error) error {
	var cut *truncatedCallError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("client went away: %w", ctx.Err())
	case errors.As(err, &cut):
		c.errDetail = clip("tool calls withheld: "+cut.Error(), capDetail)
		return errTruncatedCall(cut)
	case errors.Is(err, toolcall.ErrAnswerShape):
		c.errDetail = clip("tool calls withheld: "+err.Error(), capDetail)
		return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %q proposed a tool call pamctl could not read (or more than %d in one answer), so the answer is withheld. Retry; if it persists an administrator should check the upstream.", c.up.name, toolcall.MaxCallsPerAnswer), err)
	}
	return p.auditError(err)
}

// firstOutside names the first character of a tool name that a tool scope
// cannot name, as a code point ("; U+0435 at byte 2 is not one of them"):
// the name is shown as it is, and a look-alike letter reads as the letter
// it imitates. Empty when every character is one a scope can name.
func firstOutside(name string) string {
	rest, mcp := strings.CutPrefix(name, "mcp:")
	for i, r := range rest {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-' || r == '.' || mcp && r == '/' {
			continue
		}
		if mcp {
			i += len("mcp:")
		}
		return fmt.Sprintf("; U+%04X at byte %d is not one of them", r, i)
	}
	return ""
}

// requestedChoices is how many chat choices a request body asks for: its
// top-level n when that is an integer above 1, else 1 (absent, null, 1,
// or anything the upstream would not read as more than one).
func requestedChoices(body []byte) int {
	n := 1
	objectMembers(body, func(name, v string) {
		if name != "n" {
			return
		}
		n = 1
		if m, err := strconv.Atoi(v); err == nil && m > 1 {
			n = m
		}
	})
	return n
}
