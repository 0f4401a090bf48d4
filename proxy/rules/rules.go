// Package rules is the proxy's prompt-rule engine. Rules match prompt text
// by regular expression or by case-insensitive literal, optionally only for
// some models, endpoints, subjects or groups, and act on a match: deny the
// call, hold it for an approver (require_approval), or redact the matched
// text before it goes upstream.
//
// The engine is pure and compiled once: Compile checks every rule and reports
// every problem at once; Evaluate is safe for concurrent use and never
// echoes matched text anywhere but the redacted Text, so results can be
// logged and audited as they are.
package rules

import (
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/mask"
)

// Actions, from strongest to weakest. Allow is the empty action.
const (
	Allow           = ""
	Deny            = "deny"
	RequireApproval = "require_approval"
	Redact          = "redact"
)

// rank orders actions by precedence: deny > require_approval > redact > allow.
func rank(action string) int {
	switch action {
	case Deny:
		return 3
	case RequireApproval:
		return 2
	case Redact:
		return 1
	}
	return 0
}

// Rule is one prompt rule as written in the "rules:" list of the config.
type Rule struct {
	// Name identifies the rule in results, errors and the audit trail.
	Name string `mapstructure:"name" yaml:"name"`
	// Pattern is a Go (RE2) regular expression; use (?i) for case-insensitivity.
	Pattern string `mapstructure:"pattern" yaml:"pattern"`
	// Literals match case-insensitively as plain text. A rule with both a
	// pattern and literals matches when either does.
	Literals []string `mapstructure:"literals" yaml:"literals"`
	// Action is deny, require_approval or redact.
	Action string `mapstructure:"action" yaml:"action"`
	// Models limits the rule to these model globs ("gpt-4o*"); empty means all.
	Models []string `mapstructure:"models" yaml:"models"`
	// Subjects and Groups limit the rule to callers whose subject matches a
	// glob in Subjects or who belong to a group in Groups; both empty means
	// everyone.
	Subjects []string `mapstructure:"subjects" yaml:"subjects"`
	Groups   []string `mapstructure:"groups" yaml:"groups"`
	// Endpoints limits the rule to these request path globs
	// ("/v1/chat/completions"); empty means all.
	Endpoints []string `mapstructure:"endpoints" yaml:"endpoints"`
	// Approvers may release a call held by a require_approval rule.
	Approvers Approvers `mapstructure:"approvers" yaml:"approvers"`
	// Replace is the text put in place of a redacted match; the default is
	// "[REDACTED:<name>]". It is inserted literally ($1 is not expanded).
	Replace string `mapstructure:"replace" yaml:"replace"`
	// Unscanned makes the rule match calls that carry content pamctl
	// cannot read as text (images, audio, files, token ids, stored prompts
	// and conversations, bodies of endpoints it does not inspect), instead
	// of matching text: with action deny such calls are refused, with
	// require_approval held. Without such a rule they pass and the audit
	// event lists what was not read. It excludes pattern and literals.
	Unscanned bool `mapstructure:"unscanned" yaml:"unscanned"`
	// Target is what the rule inspects: "prompt" (the default) or
	// "tool_call", a tool call the model proposes in an answer (see
	// EvaluateCall and docs/tools.md).
	Target string `mapstructure:"target" yaml:"target,omitempty"`
	// Tool is the glob on the tool name a tool_call rule applies to
	// (toolcall.Call.Tool: "shell", "mcp:github/*", "local_shell").
	Tool string `mapstructure:"tool" yaml:"tool,omitempty"`
	// Arguments matches one argument of a tool call instead of the whole
	// arguments text: Path selects it, Pattern matches it.
	Arguments *ArgumentMatch `mapstructure:"arguments" yaml:"arguments,omitempty"`
}

// Targets of a rule.
const (
	TargetPrompt   = "prompt"
	TargetToolCall = "tool_call"
)

// ArgumentMatch selects one argument of a tool call (Path, e.g.
// "$.command" or "$.files[0].path") and matches it: Pattern, a Go regular
// expression, must match it (empty: any value present at Path), and
// Unless must not (so an allow list is a deny rule with Unless; a call
// without the argument then matches too).
type ArgumentMatch struct {
	Path    string `mapstructure:"path" yaml:"path"`
	Pattern string `mapstructure:"pattern" yaml:"pattern,omitempty"`
	Unless  string `mapstructure:"unless" yaml:"unless,omitempty"`
}

// clone copies r's slices, so the engine never shares memory with its caller.
func (r Rule) clone() Rule {
	r.Literals = slices.Clone(r.Literals)
	r.Models = slices.Clone(r.Models)
	r.Subjects = slices.Clone(r.Subjects)
	r.Groups = slices.Clone(r.Groups)
	r.Endpoints = slices.Clone(r.Endpoints)
	r.Approvers = r.Approvers.clone()
	if r.Arguments != nil {
		a := *r.Arguments
		r.Arguments = &a
	}
	return r
}

// Approvers name who may release a held call: users by subject or email
// (globs allowed, email case-insensitive) or members of groups.
type Approvers struct {
	Users  []string `mapstructure:"users" yaml:"users" json:"users,omitempty"`
	Groups []string `mapstructure:"groups" yaml:"groups" json:"groups,omitempty"`
}

func (a Approvers) clone() Approvers {
	return Approvers{Users: slices.Clone(a.Users), Groups: slices.Clone(a.Groups)}
}

// Empty reports whether a names nobody.
func (a Approvers) Empty() bool { return len(a.Users) == 0 && len(a.Groups) == 0 }

// String renders a for messages, e.g. "groups [security]".
func (a Approvers) String() string {
	var parts []string
	if len(a.Users) > 0 {
		parts = append(parts, "users ["+strings.Join(a.Users, ", ")+"]")
	}
	if len(a.Groups) > 0 {
		parts = append(parts, "groups ["+strings.Join(a.Groups, ", ")+"]")
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, " or ")
}

// Input is one proxied call as the rules see it.
type Input struct {
	Text     string   // the prompt text, all messages joined
	Model    string   // the model asked for, without upstream prefix
	Subject  string   // the caller's subject (token sub)
	Endpoint string   // the request path, e.g. /v1/chat/completions
	Groups   []string // the caller's groups
	// Unscanned lists content of the call the rules cannot read as text
	// (see Rule.Unscanned).
	Unscanned []string
}

// Approval is one require_approval rule that matched, and who may release it.
type Approval struct {
	Rule      string    `json:"rule"`
	Approvers Approvers `json:"approvers"`
}

// Result is the outcome of Evaluate. It names rules, never matched text.
type Result struct {
	// Action is the strongest action among the matching rules, or Allow.
	Action string `json:"action"`
	// Rule is the first rule (in config order) with that action.
	Rule string `json:"rule,omitempty"`
	// Approvers may release the call when Action is RequireApproval: those
	// of Rule. Approvals lists every matching require_approval rule; a
	// release must satisfy all of them (the broker decides releases, with
	// each rule's approvers as configured at review time).
	Approvers Approvers  `json:"approvers"`
	Approvals []Approval `json:"approvals,omitempty"`
	// Matched names every rule that matched, in config order.
	Matched []string `json:"matched,omitempty"`
	// Unscanned reports that Rule is an unscanned rule: it matched content
	// pamctl could not read, not text.
	Unscanned bool `json:"unscanned,omitempty"`
	// Text is the input text with the matches of every matching redact rule
	// replaced, whatever the Action; it equals Input.Text when nothing was
	// redacted. Send Text upstream, never Input.Text.
	Text string `json:"-"`
	// Redactions counts the spans replaced in Text.
	Redactions int `json:"redactions,omitempty"`
}

// Engine evaluates a compiled list of rules. The zero Engine and a nil
// *Engine allow everything.
type Engine struct {
	rules []compiled // prompt rules
	calls []compiled // tool_call rules (EvaluateCall)
}

type compiled struct {
	Rule
	re *regexp.Regexp
	// sel, argRe and unlessRe are a tool_call rule's argument selector,
	// pattern and unless pattern.
	sel      selector
	argRe    *regexp.Regexp
	unlessRe *regexp.Regexp
	// reLit is a case-folded literal every match of re contains (see
	// requiredLiteral); when the folded text lacks it, re is not run.
	reLit string
	// lits are the case-folded literals, searched with strings.Index in the
	// folded text.
	lits    []string
	replace string
}

// RuleError is one problem Compile found.
type RuleError struct {
	Index int    // position in the rules list
	Rule  string // rule name, may be empty
	Field string
	Msg   string
}

func (e *RuleError) Error() string {
	where := fmt.Sprintf("rules[%d]", e.Index)
	if e.Rule != "" {
		where += fmt.Sprintf(" %q", e.Rule)
	}
	return fmt.Sprintf("rules: %s: %s: %s", where, e.Field, e.Msg)
}

// Compile checks and compiles rules. Its error joins a *RuleError for every
// problem found, each naming the rule and what is wrong with it.
func Compile(rules []Rule) (*Engine, error) {
	var errs []error
	e := &Engine{}
	seen := map[string]int{}
	for i, r := range rules {
		bad := func(field, format string, args ...any) {
			errs = append(errs, &RuleError{Index: i, Rule: r.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		c := compiled{Rule: r.clone()}
		switch first, dup := seen[r.Name]; {
		case strings.TrimSpace(r.Name) == "":
			bad("name", "is required")
		case dup:
			bad("name", "duplicates rules[%d]; names must be unique", first)
		default:
			seen[r.Name] = i
		}
		toolCall := false
		switch r.Target {
		case "", TargetPrompt:
			if r.Tool != "" {
				bad("tool", "applies to tool_call rules only: add target: tool_call")
			}
			if r.Arguments != nil {
				bad("arguments", "applies to tool_call rules only: add target: tool_call")
			}
		case TargetToolCall:
			toolCall = true
		default:
			bad("target", "%q is not one of prompt, tool_call", r.Target)
		}
		switch r.Action {
		case Deny, RequireApproval, Redact:
		case "":
			bad("action", "is required: one of deny, require_approval, redact")
		default:
			bad("action", "%q is not one of deny, require_approval, redact", r.Action)
		}
		switch {
		case toolCall:
			compileCallRule(&c, bad)
		case r.Unscanned && (r.Pattern != "" || len(r.Literals) > 0):
			bad("unscanned", "matches calls with content pamctl cannot read, not text: drop pattern and literals, or make it a rule of its own")
		case r.Unscanned && r.Action == Redact:
			bad("unscanned", "cannot redact what pamctl cannot read: use deny or require_approval")
		case !r.Unscanned && r.Pattern == "" && len(r.Literals) == 0:
			bad("pattern", "a pattern or literals are required (or unscanned: true)")
		}
		if r.Pattern != "" {
			re, err := regexp.Compile(r.Pattern)
			switch {
			case err != nil:
				bad("pattern", "%v", err)
			case mask.MinMatchLen(r.Pattern) == 0:
				bad("pattern", "can match the empty string (zero-width, like \\b, ^, $, a* or (?:)), so it would match every prompt; make every match at least one character long, e.g. \\bword\\b")
			default:
				c.re = re
				c.reLit = requiredLiteral(r.Pattern)
			}
		}
		for j, lit := range r.Literals {
			switch {
			case strings.TrimSpace(lit) == "":
				bad(fmt.Sprintf("literals[%d]", j), "is empty")
			case !utf8.ValidString(lit):
				bad(fmt.Sprintf("literals[%d]", j), "is not valid UTF-8")
			default:
				c.lits = append(c.lits, fold(lit))
			}
		}
		switch {
		case r.Action == RequireApproval && r.Approvers.Empty():
			bad("approvers", "require_approval needs approvers (users or groups) who can release held calls")
		case r.Action != RequireApproval && !r.Approvers.Empty():
			bad("approvers", "only apply to require_approval rules")
		}
		c.replace = r.Replace
		if r.Replace == "" {
			c.replace = "[REDACTED:" + r.Name + "]"
		} else if r.Action != Redact {
			bad("replace", "only applies to redact rules")
		}
		checkList := func(field string, list []string, path bool) {
			for j, v := range list {
				switch {
				case strings.TrimSpace(v) == "":
					bad(fmt.Sprintf("%s[%d]", field, j), "is empty")
				case path && v != "*" && !strings.HasPrefix(v, "/"):
					bad(fmt.Sprintf("%s[%d]", field, j), "%q must be a path starting with '/', e.g. /v1/chat/completions", v)
				}
			}
		}
		checkList("models", r.Models, false)
		checkList("subjects", r.Subjects, false)
		checkList("groups", r.Groups, false)
		checkList("endpoints", r.Endpoints, true)
		checkList("approvers.users", r.Approvers.Users, false)
		for j, u := range r.Approvers.Users {
			// Matched as a policy's approvers are (policy.Subjects.Match):
			// an email in ASCII case only.
			if c := token.CapitalOutsideASCII(u); c != 0 && strings.Contains(u, "@") {
				bad(fmt.Sprintf("approvers.users[%d]", j), "%s", token.EmailCaseError(u, c))
			}
		}
		checkList("approvers.groups", r.Approvers.Groups, false)
		if toolCall {
			e.calls = append(e.calls, c)
			continue
		}
		e.rules = append(e.rules, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// Len returns the number of compiled rules, of both targets.
func (e *Engine) Len() int {
	if e == nil {
		return 0
	}
	return len(e.rules) + len(e.calls)
}

// Evaluate applies every rule that applies to in and returns the strongest
// action (deny > require_approval > redact), with every matching redact
// rule's redactions applied to Text.
func (e *Engine) Evaluate(in Input) Result {
	res := Result{Text: in.Text}
	if e == nil || (in.Text == "" && len(in.Unscanned) == 0) {
		return res
	}
	t := text{s: in.Text}
	var spans []span
	for i := range e.rules {
		c := &e.rules[i]
		if !c.appliesTo(in) {
			continue
		}
		if c.Unscanned {
			if len(in.Unscanned) == 0 {
				continue
			}
		} else if in.Text == "" {
			continue
		} else if c.Action == Redact {
			found := c.findAll(&t, i)
			if len(found) == 0 {
				continue
			}
			spans = append(spans, found...)
		} else if !c.match(&t) {
			continue
		}
		res.Matched = append(res.Matched, c.Name)
		if rank(c.Action) > rank(res.Action) {
			res.Action, res.Rule, res.Unscanned = c.Action, c.Name, c.Unscanned
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
	if len(spans) > 0 {
		res.Text, res.Redactions = e.redact(in.Text, spans)
	}
	return res
}

// Spans returns the byte spans [start, end) of the matches in s of the
// rule named name, by start, at most limit of them, and how many there
// are, counted up to countLimit (a pattern and a literal matching at the
// same place count once): an approver of a held call is shown each place
// the rule found, and told how many there are. Nil for a rule that does
// not match s, is not a text rule, or is unknown.
func (e *Engine) Spans(name, s string, limit, countLimit int) (spans [][2]int, total int) {
	if e == nil {
		return nil, 0
	}
	for i := range e.rules {
		c := &e.rules[i]
		if c.Name != name || c.Unscanned {
			continue
		}
		t := text{s: s}
		var all [][2]int
		if c.mayMatch(&t) {
			for _, loc := range c.re.FindAllStringIndex(s, countLimit) {
				all = append(all, [2]int{loc[0], loc[1]})
			}
		}
		if c.litIndex(&t) >= 0 {
			for _, lit := range c.lits {
				for from := 0; len(all) < 2*countLimit; {
					j := strings.Index(t.folded[from:], lit)
					if j < 0 {
						break
					}
					j += from
					all = append(all, [2]int{t.original(j), t.original(j + len(lit))})
					from = j + len(lit)
				}
			}
		}
		slices.SortFunc(all, func(a, b [2]int) int { return a[0] - b[0] })
		all = slices.Compact(all)
		total = min(len(all), countLimit)
		return all[:min(len(all), limit)], total
	}
	return nil, 0
}

func (c *compiled) appliesTo(in Input) bool {
	if len(c.Models) > 0 && !anyGlob(c.Models, []string{in.Model}) {
		return false
	}
	if len(c.Endpoints) > 0 && !anyGlob(c.Endpoints, []string{in.Endpoint}) {
		return false
	}
	if len(c.Subjects) > 0 || len(c.Groups) > 0 {
		return anyGlob(c.Subjects, []string{in.Subject}) || anyGlob(c.Groups, in.Groups)
	}
	return true
}

// anyGlob reports whether any non-empty value matches any pattern.
func anyGlob(patterns, values []string) bool {
	for _, p := range patterns {
		for _, v := range values {
			if v != "" && token.MatchGlob(p, v) {
				return true
			}
		}
	}
	return false
}

// text caches per-call views of the prompt shared by all rules.
type text struct {
	s        string
	folded   string
	foldedOK bool
	ascii    bool // folded has the same byte offsets as s
	// offsets maps a byte offset in folded (at a rune start, or its end)
	// to the offset in s; built only for non-ASCII text that needs it.
	offsets []int
}

// fold returns the case-folded text (see fold).
func (t *text) fold() string {
	if !t.foldedOK {
		t.folded, t.ascii = foldString(t.s)
		t.foldedOK = true
	}
	return t.folded
}

// original maps a byte offset in the folded text back to s.
func (t *text) original(i int) int {
	if t.fold(); t.ascii {
		return i
	}
	if t.offsets == nil {
		t.offsets = make([]int, len(t.folded)+1)
		o := 0
		for j, r := range t.s {
			t.offsets[o] = j
			o += utf8.RuneLen(foldRune(r))
		}
		t.offsets[o] = len(t.s)
	}
	return t.offsets[i]
}

// mayMatch reports whether re can match: the folded text holds its
// required literal, or it has none.
func (c *compiled) mayMatch(t *text) bool {
	return c.re != nil && (c.reLit == "" || strings.Contains(t.fold(), c.reLit))
}

func (c *compiled) match(t *text) bool {
	if c.mayMatch(t) && c.re.MatchString(t.s) {
		return true
	}
	return c.litIndex(t) >= 0
}

// litIndex returns the index in c.lits of a literal the text contains, or -1.
func (c *compiled) litIndex(t *text) int {
	if len(c.lits) == 0 {
		return -1
	}
	folded := t.fold()
	for i, lit := range c.lits {
		if strings.Contains(folded, lit) {
			return i
		}
	}
	return -1
}

type span struct{ start, end, rule int }

func (c *compiled) findAll(t *text, rule int) []span {
	var out []span
	if c.mayMatch(t) {
		for _, l := range c.re.FindAllStringIndex(t.s, -1) {
			if l[1] > l[0] {
				out = append(out, span{l[0], l[1], rule})
			}
		}
	}
	first := c.litIndex(t)
	if first < 0 {
		return out
	}
	// Folding maps rune to rune, so a match in the folded text starts and
	// ends on rune boundaries that map back to the original text.
	for _, lit := range c.lits[first:] {
		for off := 0; ; {
			i := strings.Index(t.folded[off:], lit)
			if i < 0 {
				break
			}
			start, end := off+i, off+i+len(lit)
			out = append(out, span{t.original(start), t.original(end), rule})
			off = end
		}
	}
	return out
}

// redact replaces the union of spans; overlapping spans merge into one
// replacement, labelled by the rule whose span starts first.
func (e *Engine) redact(s string, spans []span) (string, int) {
	return redactSpans(s, spans, func(rule int) string { return e.rules[rule].replace })
}

// redactSpans replaces the union of spans by their rule's replacement.
func redactSpans(s string, spans []span, replace func(rule int) string) (string, int) {
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end > spans[j].end
	})
	var b strings.Builder
	b.Grow(len(s))
	n, last := 0, 0
	for i := 0; i < len(spans); {
		cur := spans[i]
		for i++; i < len(spans) && spans[i].start < cur.end; i++ {
			cur.end = max(cur.end, spans[i].end)
		}
		b.WriteString(s[last:cur.start])
		b.WriteString(replace(cur.rule))
		last = cur.end
		n++
	}
	b.WriteString(s[last:])
	return b.String(), n
}

// fold maps s to a canonical case-folded form: every rune becomes the
// smallest rune of its Unicode simple-fold orbit (the equivalence (?i) uses
// in Go regexps), so k, K and the Kelvin sign all become K. A (?i) literal
// matches in s exactly when fold(literal) is a substring of fold(s). Invalid
// UTF-8 bytes become U+FFFD, as the regexp engine reads them.
func fold(s string) string {
	f, _ := foldString(s)
	return f
}

// foldString folds s and reports whether s was ASCII, in which case folding
// is ASCII upper-casing and keeps every byte offset.
func foldString(s string) (string, bool) {
	ascii, lower := true, false
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := word(s, i)
		if x&highs != 0 {
			ascii = false
			break
		}
		lower = lower || lowerMask(x) != 0
	}
	for ; ascii && i < len(s); i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			ascii = false
		case 'a' <= c && c <= 'z':
			lower = true
		}
	}
	if ascii {
		if !lower {
			return s, true
		}
		b := make([]byte, len(s))
		i := 0
		for ; i+8 <= len(s); i += 8 {
			x := word(s, i)
			binary.LittleEndian.PutUint64(b[i:], x-lowerMask(x)>>2) // 0x80>>2: 'a'-'A'
		}
		for ; i < len(s); i++ {
			c := s[i]
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			b[i] = c
		}
		// b is never written again: the string shares its bytes (one
		// allocation of the prompt's size, not two).
		return unsafe.String(unsafe.SliceData(b), len(b)), true
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s { // invalid bytes arrive as utf8.RuneError
		b.WriteRune(foldRune(r))
	}
	return b.String(), false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// word is the eight bytes of s at i, the first in the lowest byte.
func word(s string, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
}

// lowerMask has the high bit set in each byte of x, an ASCII word (no high
// bits), that is a lower-case letter: it is at least 'a' and at most 'z'.
// Adding to bytes under 0x80 never carries into the next byte.
func lowerMask(x uint64) uint64 {
	geA := x + (0x80-'a')*ones   // high bit: byte >= 'a'
	gtZ := x + (0x80-'z'-1)*ones // high bit: byte > 'z'
	return geA &^ gtZ & highs
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			return r - ('a' - 'A')
		}
		return r
	}
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// requiredLiteral returns the folded form of the longest literal that every
// match of pattern must contain, or "" when there is none (or the pattern
// does not parse). It serves as a cheap prefilter: a regexp whose required
// literal is absent from the folded text cannot match and is not run.
func requiredLiteral(pattern string) string {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return ""
	}
	return fold(string(required(re.Simplify())))
}

func required(re *syntax.Regexp) []rune {
	switch re.Op {
	case syntax.OpLiteral:
		return re.Rune
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
	case syntax.OpConcat:
		var best, run []rune
		keep := func(c []rune) {
			if len(c) > len(best) {
				best = c
			}
		}
		for _, sub := range re.Sub {
			if sub.Op == syntax.OpLiteral {
				run = append(run, sub.Rune...)
				continue
			}
			keep(run)
			run = nil
			keep(required(sub))
		}
		keep(run)
		return best
	}
	return nil
}
