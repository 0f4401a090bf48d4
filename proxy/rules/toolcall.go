package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/mask"
)

// Tool-call rules (target: tool_call) judge a tool call the model proposes:
// the tool's name (Rule.Tool, a glob) and, optionally, its arguments.
//
// The arguments are matched as the agent will read them, not as the model
// spelled them: JSON arguments are decoded and written back in one
// canonical form (no whitespace, keys sorted, escapes such as \u002d
// decoded, so "rm \u002drf" is "rm -rf"). Arguments that are not JSON (a
// custom tool's free-form input) are matched as they are; the proxy
// refuses a function or MCP call's arguments that are not one standard
// JSON value before they get here (a client's lenient decoder could read
// them as JSON this text match never saw).
//
//   - pattern / literals match that whole text;
//   - arguments: {path, pattern, unless} matches the one value at path (a
//     string as its text, anything else as its canonical JSON) when
//     pattern matches it (or is empty) and unless does not; without a
//     pattern the rule matches when path exists, and with unless when it
//     does not exist too. When the arguments are not JSON, the patterns
//     run on the whole text instead (so a rule is never skipped because
//     the model wrote something unreadable);
//   - neither: every call of the tool matches.
//
// Redact masks matching text inside JSON string values only, so the
// result is always valid JSON: with a path, inside (or, without a pattern,
// the whole of) the selected string; without one, inside every string
// value. A match the redaction cannot reach (a number at path, a match
// spanning JSON syntax) makes the call unredactable: it is denied.

// CallInput is one proposed tool call as the rules see it.
type CallInput struct {
	Tool      string // toolcall.Call.Tool(): "shell", "mcp:github/search"
	Arguments string // the arguments JSON text (or a custom tool's input), unmasked
	Model     string
	Subject   string
	Endpoint  string
	Groups    []string
}

// CallResult is the outcome of EvaluateCall. It names rules, never
// matched text.
type CallResult struct {
	// Action is the strongest action among the matching rules, or Allow.
	Action string
	// Rule is the first rule (in config order) with that action.
	Rule string
	// Approvers and Approvals are as in Result, for RequireApproval.
	Approvers Approvers
	Approvals []Approval
	// Matched names every rule that matched, in config order.
	Matched []string
	// Arguments are the call's arguments with every matching redact rule's
	// matches replaced (whatever the Action); equal to the input when
	// Redactions is 0.
	Arguments  string
	Redactions int
	// Unredactable is set when Action is Deny because redact rule Rule
	// matched text it could not mask inside a JSON string.
	Unredactable bool
}

// Action returns the action of the rule named name ("" when unknown).
func (e *Engine) Action(name string) string {
	if e == nil {
		return ""
	}
	for _, rs := range [][]compiled{e.rules, e.calls} {
		for i := range rs {
			if rs[i].Name == name {
				return rs[i].Action
			}
		}
	}
	return ""
}

// HasCallRules reports whether any tool_call rule is in force.
func (e *Engine) HasCallRules() bool { return e != nil && len(e.calls) > 0 }

// SelectorKeys returns the object keys the arguments selectors of the
// tool_call rules that may apply to tool name ($.files[0].path: files and
// path), without duplicates, nil when there are none. A key of a call's
// arguments that equals one of them only under case folding is one a
// selector misses and a case-insensitive decoder reads.
func (e *Engine) SelectorKeys(tool string) []string {
	if e == nil {
		return nil
	}
	var out []string
	for i := range e.calls {
		c := &e.calls[i]
		if c.Arguments == nil || !token.MatchGlob(c.Tool, tool) {
			continue
		}
		for _, st := range c.sel {
			if st.key != "" && !slices.Contains(out, st.key) {
				out = append(out, st.key)
			}
		}
	}
	return out
}

// compileCallRule checks and compiles the tool_call parts of a rule.
func compileCallRule(c *compiled, bad func(field, format string, args ...any)) {
	r := &c.Rule
	switch {
	case strings.TrimSpace(r.Tool) == "":
		bad("tool", "a tool_call rule needs a tool glob, e.g. tool: shell or tool: \"mcp:github/*\"")
	case len(r.Tool) > token.MaxScopeLen:
		bad("tool", "is longer than %d bytes", token.MaxScopeLen)
	}
	if r.Unscanned {
		bad("unscanned", "applies to prompt rules only")
	}
	if a := r.Arguments; a != nil {
		if r.Pattern != "" || len(r.Literals) > 0 {
			bad("arguments", "match either the whole arguments (pattern, literals) or one argument (arguments), not both")
		}
		sel, err := parseSelector(a.Path)
		if err != nil {
			bad("arguments.path", "%v", err)
		}
		c.sel = sel
		if a.Pattern != "" {
			re, err := regexp.Compile(a.Pattern)
			switch {
			case err != nil:
				bad("arguments.pattern", "%v", err)
			case mask.MinMatchLen(a.Pattern) == 0:
				bad("arguments.pattern", "can match the empty string, so it would match every value; make every match at least one character long")
			default:
				c.argRe = re
			}
		}
		if a.Unless != "" {
			re, err := regexp.Compile(a.Unless)
			switch {
			case err != nil:
				bad("arguments.unless", "%v", err)
			case r.Action == Redact:
				bad("arguments.unless", "applies to deny and require_approval rules: a redact rule masks what matches, not what does not")
			default:
				c.unlessRe = re
			}
		}
	}
	if r.Action == Redact && r.Pattern == "" && len(r.Literals) == 0 && r.Arguments == nil {
		bad("action", "a redact tool_call rule masks matching text in the arguments: give it a pattern, literals or arguments: {path: ...} (a string argument)")
	}
}

// EvaluateCall applies every tool_call rule that applies to in and returns
// the strongest action (deny > require_approval > redact), with every
// matching redact rule's redactions applied to Arguments.
func (e *Engine) EvaluateCall(in CallInput) CallResult {
	res := CallResult{Arguments: in.Arguments}
	if e == nil || len(e.calls) == 0 {
		return res
	}
	a := parseArgs(in.Arguments)
	var redacts []*compiled
	for i := range e.calls {
		c := &e.calls[i]
		if !token.MatchGlob(c.Tool, in.Tool) || !c.appliesTo(Input{Model: in.Model, Subject: in.Subject, Endpoint: in.Endpoint, Groups: in.Groups}) {
			continue
		}
		if !c.matchCall(a) {
			continue
		}
		res.Matched = append(res.Matched, c.Name)
		if c.Action == Redact {
			redacts = append(redacts, c)
		}
		if rank(c.Action) > rank(res.Action) {
			res.Action, res.Rule = c.Action, c.Name
			if c.Action == RequireApproval {
				res.Approvers = c.Approvers.clone()
			}
		}
		if c.Action == RequireApproval {
			res.Approvals = append(res.Approvals, Approval{Rule: c.Name, Approvers: c.Approvers.clone()})
		}
	}
	if res.Action != RequireApproval {
		res.Approvers, res.Approvals = Approvers{}, nil
	}
	if len(redacts) > 0 {
		out, n, failed := redactArgs(a, redacts)
		switch {
		case failed != "":
			if res.Action != Deny {
				res.Action, res.Rule, res.Unredactable = Deny, failed, true
				res.Approvers, res.Approvals = Approvers{}, nil
			}
		case n > 0:
			res.Arguments, res.Redactions = out, n
		}
	}
	return res
}

// args is a call's arguments, decoded when they are JSON.
type args struct {
	raw   string
	root  any    // decoded (json.Number for numbers); nil unless isJSON
	canon string // the canonical JSON text, or raw
	json  bool
}

func parseArgs(s string) *args {
	a := &args{raw: s, canon: s}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return a
	}
	if strings.TrimSpace(s[d.InputOffset():]) != "" {
		return a // trailing data: not one JSON value
	}
	canon, err := canonical(v)
	if err != nil {
		return a
	}
	a.root, a.canon, a.json = v, canon, true
	return a
}

// canonical writes v as compact JSON with sorted keys and without HTML
// escaping, so matching sees the characters the agent will read.
func canonical(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// matchCall reports whether c's argument matcher matches a.
func (c *compiled) matchCall(a *args) bool {
	switch {
	case c.Arguments != nil:
		if !a.json {
			return c.matchArg(a.raw)
		}
		v, ok := c.sel.find(a.root)
		if !ok {
			// Absent: no pattern can match it, and it is not what an
			// unless pattern allows.
			return c.argRe == nil && c.unlessRe != nil
		}
		if s, isStr := v.(string); isStr {
			return c.matchArg(s)
		}
		text, err := canonical(v)
		return err == nil && c.matchArg(text)
	case c.re != nil || len(c.lits) > 0:
		if c.match(&text{s: a.canon}) {
			return true
		}
		// A redact rule masks inside string values, so it also matches
		// what only a decoded string shows (a quote or backslash, which
		// the JSON text escapes).
		return c.Action == Redact && a.json && anyString(a.root, func(s string) bool { return c.match(&text{s: s}) })
	}
	return true
}

// matchArg applies the argument pattern and unless pattern to one value.
func (c *compiled) matchArg(s string) bool {
	return (c.argRe == nil || c.argRe.MatchString(s)) && (c.unlessRe == nil || !c.unlessRe.MatchString(s))
}

// anyString reports whether f holds for any string value under v.
func anyString(v any, f func(string) bool) bool {
	switch x := v.(type) {
	case string:
		return f(x)
	case map[string]any:
		for _, e := range x {
			if anyString(e, f) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if anyString(e, f) {
				return true
			}
		}
	}
	return false
}

// redactArgs applies the redact rules to a. It returns the new arguments,
// the number of spans replaced, or the name of a rule whose match it could
// not mask inside a JSON string.
func redactArgs(a *args, rs []*compiled) (string, int, string) {
	if !a.json {
		// Free-form input (a custom tool): mask the text itself.
		s, n := a.raw, 0
		for _, c := range rs {
			var k int
			s, k = c.redactString(s)
			n += k
		}
		return s, n, ""
	}
	root := deepCopyJSON(a.root)
	n := 0
	for _, c := range rs {
		k := 0
		if c.Arguments != nil {
			parent, key, ok := c.sel.locate(&root)
			if !ok {
				continue
			}
			s, isStr := parent.get(key).(string)
			if !isStr {
				return "", 0, c.Name
			}
			if c.argRe == nil {
				parent.set(key, c.replace)
				n++
				continue
			}
			var out string
			out, k = c.redactString(s)
			parent.set(key, out)
		} else {
			root, k = c.redactStrings(root)
			if k == 0 {
				// The rule matched the canonical text, but no string value:
				// its match spans JSON syntax, which cannot be masked.
				return "", 0, c.Name
			}
		}
		n += k
	}
	out, err := canonical(root)
	if err != nil {
		return "", 0, rs[0].Name
	}
	return out, n, ""
}

// redactString masks every match of c in s.
func (c *compiled) redactString(s string) (string, int) {
	var spans []span
	if c.argRe != nil {
		for _, l := range c.argRe.FindAllStringIndex(s, -1) {
			if l[1] > l[0] {
				spans = append(spans, span{l[0], l[1], 0})
			}
		}
	} else {
		spans = c.findAll(&text{s: s}, 0)
	}
	if len(spans) == 0 {
		return s, 0
	}
	return redactSpans(s, spans, func(int) string { return c.replace })
}

// redactStrings masks c's matches in every string value under v (object
// keys are names, not values, and stay).
func (c *compiled) redactStrings(v any) (any, int) {
	switch x := v.(type) {
	case string:
		return c.redactString(x)
	case map[string]any:
		n := 0
		for k, e := range x {
			var m int
			x[k], m = c.redactStrings(e)
			n += m
		}
		return x, n
	case []any:
		n := 0
		for i, e := range x {
			var m int
			x[i], m = c.redactStrings(e)
			n += m
		}
		return x, n
	}
	return v, 0
}

func deepCopyJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopyJSON(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopyJSON(e)
		}
		return a
	}
	return v
}

// A selector picks one value out of a JSON document: "$" is the whole
// document, ".key" a member of an object, "[n]" an element of an array
// (n from 0). Keys are letters, digits, '_' and '-'. Nothing else: no
// wildcards, filters, quoting or negative indexes.
type selector []step

type step struct {
	key   string
	index int // when key == ""
}

// maxSelectorSteps bounds a selector's length.
const maxSelectorSteps = 32

func parseSelector(p string) (selector, error) {
	if p == "" {
		return nil, fmt.Errorf("is required: a selector such as $.command or $.files[0].path")
	}
	if p[0] != '$' {
		return nil, fmt.Errorf("%q must start with $ (the arguments object), e.g. $.command", p)
	}
	var sel selector
	for i := 1; i < len(p); {
		if len(sel) == maxSelectorSteps {
			return nil, fmt.Errorf("%q has more than %d steps", p, maxSelectorSteps)
		}
		switch p[i] {
		case '.':
			j := i + 1
			for j < len(p) && keyByte(p[j]) {
				j++
			}
			if j == i+1 {
				return nil, fmt.Errorf("%q: expected a key (letters, digits, _ or -) after '.' at offset %d", p, i)
			}
			sel = append(sel, step{key: p[i+1 : j]})
			i = j
		case '[':
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("%q: '[' at offset %d is not closed", p, i)
			}
			digits := p[i+1 : i+end]
			n, err := strconv.Atoi(digits)
			if err != nil || n < 0 || digits == "" || digits[0] == '+' || digits[0] == '-' || (len(digits) > 1 && digits[0] == '0') {
				return nil, fmt.Errorf("%q: [%s] must be an array index, a whole number from 0", p, digits)
			}
			sel = append(sel, step{index: n})
			i += end + 1
		default:
			return nil, fmt.Errorf("%q: unexpected %q at offset %d; use .key and [n] steps", p, p[i], i)
		}
	}
	return sel, nil
}

func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// find returns the value sel selects in root.
func (sel selector) find(root any) (any, bool) {
	v := root
	for _, s := range sel {
		var ok bool
		if v, ok = s.in(v); !ok {
			return nil, false
		}
	}
	return v, true
}

func (s step) in(v any) (any, bool) {
	if s.key != "" {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		e, ok := m[s.key]
		return e, ok
	}
	a, ok := v.([]any)
	if !ok || s.index >= len(a) {
		return nil, false
	}
	return a[s.index], true
}

// slot is a place a value can be replaced: a member of an object, an
// element of an array, or the root.
type slot struct {
	m    map[string]any
	a    []any
	root *any
}

func (sl slot) get(s step) any {
	switch {
	case sl.m != nil:
		return sl.m[s.key]
	case sl.a != nil:
		return sl.a[s.index]
	}
	return *sl.root
}

func (sl slot) set(s step, v any) {
	switch {
	case sl.m != nil:
		sl.m[s.key] = v
	case sl.a != nil:
		sl.a[s.index] = v
	default:
		*sl.root = v
	}
}

// locate finds the slot holding the selected value.
func (sel selector) locate(root *any) (slot, step, bool) {
	if len(sel) == 0 {
		return slot{root: root}, step{}, true
	}
	parent, ok := sel[:len(sel)-1].find(*root)
	if !ok {
		return slot{}, step{}, false
	}
	last := sel[len(sel)-1]
	if _, ok := last.in(parent); !ok {
		return slot{}, step{}, false
	}
	if last.key != "" {
		return slot{m: parent.(map[string]any)}, last, true
	}
	return slot{a: parent.([]any)}, last, true
}
