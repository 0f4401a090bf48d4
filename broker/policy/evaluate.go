package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// Ask is an access request as the requester phrased it.
type Ask struct {
	Scopes []string      // scopes or scope patterns wanted
	TTL    time.Duration // 0 asks for the policy default
	Reason string        // why; required by policies with require_reason
}

// Decision is the outcome of Evaluate.
//
// Allow means the request may proceed: at once when NeedsApproval is false,
// otherwise once Count distinct Approvers (or one BreakGlass subject) approve
// within PendingTTL. When Allow is false, Reasons say why, one line per
// problem, and Requestable says what the subject could ask for instead.
type Decision struct {
	Allow bool `json:"allow"`
	// Scopes are the scopes to grant (normalised: trimmed, de-duplicated).
	Scopes []string `json:"scopes,omitempty"`
	// TTL is the grant lifetime: the asked TTL, or the default, capped at MaxTTL.
	TTL time.Duration `json:"ttl,omitempty"`
	// MaxTTL is the ceiling that applied.
	MaxTTL time.Duration `json:"max_ttl,omitempty"`
	// Clamped is set when the asked TTL exceeded MaxTTL and was cut down.
	Clamped bool `json:"clamped,omitempty"`

	NeedsApproval bool          `json:"needs_approval,omitempty"`
	Approvers     Subjects      `json:"approvers"`
	Count         int           `json:"count,omitempty"`
	BreakGlass    Subjects      `json:"break_glass"`
	PendingTTL    time.Duration `json:"pending_ttl,omitempty"`

	Limits Limits `json:"limits"`

	// Policies are the names of the policies that grant Scopes (on allow),
	// or of every policy that applies to the subject (on denial).
	Policies []string `json:"policies,omitempty"`
	// Reasons explain the decision in words fit for the user and the audit
	// trail: every denial, clamp and approval requirement.
	Reasons []string `json:"reasons,omitempty"`
	// Requestable lists every scope pattern some policy lets the subject request.
	Requestable []string `json:"requestable,omitempty"`
}

// Terms are the approval terms of a pending request: what the broker stores
// with it so that reviews can be checked later with CanReview and Satisfied.
type Terms struct {
	Required   bool     `json:"required"`
	Approvers  Subjects `json:"approvers"`
	Count      int      `json:"count"`
	BreakGlass Subjects `json:"break_glass"`
	Policies   []string `json:"policies"`
}

// Terms returns the approval terms of d.
func (d Decision) Terms() Terms {
	return Terms{
		Required:   d.NeedsApproval,
		Approvers:  d.Approvers,
		Count:      d.Count,
		BreakGlass: d.BreakGlass,
		Policies:   append([]string(nil), d.Policies...),
	}
}

// Evaluate decides whether who may have the scopes asked for, and on what
// terms. Every requested scope must be covered by a policy that applies to
// who. When a scope is covered by several such policies, one already used
// for another scope of the request is preferred, then the most lenient (no
// approval before approval, fewer approvers, longer max_ttl, no reason
// needed), then config order. The policies used for the
// scopes then combine strictly: the smallest max_ttl, default_ttl and
// pending_ttl; approval if any needs it, with the largest count; a reason if
// any needs one; the smallest non-zero limits. Scopes whose policies name
// different approvers cannot be granted together, because no single set of
// approvers may approve the other's scopes; the decision says to request
// them separately. Break-glass applies only if all those policies name the
// same break-glass subjects.
func Evaluate(set Set, who Subject, ask Ask) Decision {
	e := evaluation{set: set, who: who}
	e.run(ask)
	e.finish()
	return e.d
}

type evaluation struct {
	set    Set
	who    Subject
	d      Decision
	denied bool
}

func (e *evaluation) deny(format string, args ...any) {
	e.denied = true
	e.d.Reasons = append(e.d.Reasons, fmt.Sprintf(format, args...))
}

func (e *evaluation) note(format string, args ...any) {
	e.d.Reasons = append(e.d.Reasons, fmt.Sprintf(format, args...))
}

func (e *evaluation) run(ask Ask) {
	d := &e.d
	if e.who.ID == "" {
		e.deny("your identity has no subject; sign in again with pamctl login")
		return
	}

	// Policies that apply to the subject, and what they let it request.
	var applicable []int
	for i := range e.set {
		if e.set[i].Subjects.Match(e.who) {
			applicable = append(applicable, i)
			d.Requestable = appendNew(d.Requestable, e.set[i].Scopes...)
			d.Policies = append(d.Policies, e.set[i].Name)
		}
	}
	mayRequest := "you may request: " + strings.Join(d.Requestable, ", ")

	scopes := normalize(ask.Scopes)
	if len(scopes) == 0 {
		if len(applicable) == 0 {
			e.deny("no scopes requested, and no policy grants any scope to %s", e.who)
		} else {
			e.deny("no scopes requested; %s", mayRequest)
		}
		return
	}
	var valid []string
	for _, s := range scopes {
		if err := token.ValidScope(s); err != nil {
			e.deny("%v", err)
			continue
		}
		valid = append(valid, s)
	}
	if len(applicable) == 0 {
		e.deny("no policy grants any scope to %s; ask an administrator to add you to a policy", e.who)
		return
	}

	// Candidate policies per scope; pick per scope, fewest candidates first,
	// so a scope with a choice prefers a policy already needed by another.
	candidates := make(map[string][]int, len(valid))
	for _, s := range valid {
		for _, i := range applicable {
			if token.Covers(e.set[i].Scopes, s) {
				candidates[s] = append(candidates[s], i)
			}
		}
		if len(candidates[s]) == 0 {
			e.deny("scope %s is not granted to you; %s", s, mayRequest)
		}
	}
	order := append([]string(nil), valid...)
	sort.SliceStable(order, func(a, b int) bool { return len(candidates[order[a]]) < len(candidates[order[b]]) })
	used := map[int]bool{}
	for _, s := range order {
		best := -1
		for _, i := range candidates[s] {
			if best < 0 || e.better(i, best, used) {
				best = i
			}
		}
		if best >= 0 {
			used[best] = true
		}
	}
	var chosen []*Policy
	for i := range e.set {
		if used[i] {
			chosen = append(chosen, &e.set[i])
		}
	}
	if len(chosen) == 0 {
		return
	}
	e.combine(chosen, ask)
	if !e.denied {
		d.Allow = true
		d.Scopes = scopes
		d.Policies = names(chosen)
	}
}

// better reports whether policy a is a better choice than b for a scope. A
// policy already used for another scope costs nothing (combining is
// monotone: another policy can only make terms stricter), so it comes first;
// then the more lenient one.
func (e *evaluation) better(a, b int, used map[int]bool) bool {
	if used[a] != used[b] {
		return used[a]
	}
	pa, pb := &e.set[a], &e.set[b]
	if pa.Approval.Required != pb.Approval.Required {
		return !pa.Approval.Required
	}
	if pa.Approval.Required && pa.Approval.count() != pb.Approval.count() {
		return pa.Approval.count() < pb.Approval.count()
	}
	if pa.maxTTL() != pb.maxTTL() {
		return pa.maxTTL() > pb.maxTTL()
	}
	if pa.RequireReason != pb.RequireReason {
		return !pa.RequireReason
	}
	return a < b
}

// combine merges the terms of the chosen policies into the decision.
func (e *evaluation) combine(chosen []*Policy, ask Ask) {
	d := &e.d

	// TTL: the smallest ceiling and default win.
	ceiling := chosen[0]
	def := chosen[0].defaultTTL()
	d.PendingTTL = chosen[0].pendingTTL()
	for _, p := range chosen[1:] {
		if p.maxTTL() < ceiling.maxTTL() {
			ceiling = p
		}
		def = min(def, p.defaultTTL())
		d.PendingTTL = min(d.PendingTTL, p.pendingTTL())
	}
	d.MaxTTL = ceiling.maxTTL()
	switch {
	case ask.TTL < 0:
		e.deny("ttl %s is negative; ask for a duration such as 30m", fmtDuration(ask.TTL))
	case ask.TTL == 0:
		d.TTL = def
	case ask.TTL < MinTTL:
		e.deny("ttl %s is shorter than the minimum %s", fmtDuration(ask.TTL), fmtDuration(MinTTL))
	case ask.TTL > d.MaxTTL:
		d.TTL = d.MaxTTL
		d.Clamped = true
		e.note("requested ttl %s exceeds max_ttl %s of policy %s; the grant lasts %s",
			fmtDuration(ask.TTL), fmtDuration(d.MaxTTL), ceiling.Name, fmtDuration(d.MaxTTL))
	default:
		d.TTL = ask.TTL
	}

	// Reason.
	reason := strings.TrimSpace(ask.Reason)
	for _, p := range chosen {
		if p.RequireReason && reason == "" {
			e.deny("policy %s requires a reason; say why you need access (--reason)", p.Name)
		}
	}
	if len(reason) > MaxReasonLen {
		e.deny("reason is %d bytes long; keep it under %d", len(reason), MaxReasonLen)
	}

	// Limits: the smallest non-zero value of each.
	for _, p := range chosen {
		d.Limits.RPM = minNonZero(d.Limits.RPM, p.Limits.RPM)
		d.Limits.Tokens = minNonZero(d.Limits.Tokens, p.Limits.Tokens)
	}

	// Approval: needed if any policy needs it, from one agreed set of approvers.
	var strict []*Policy
	for _, p := range chosen {
		if p.Approval.Required {
			strict = append(strict, p)
		}
	}
	if len(strict) == 0 {
		if !e.denied {
			e.note("granted by %s without approval", policyList(chosen))
		}
		return
	}
	first := strict[0]
	for _, p := range strict[1:] {
		if !p.Approval.Approvers.equal(first.Approval.Approvers) {
			e.deny("these scopes need approval from different approvers (policy %s: %s; policy %s: %s); request them separately",
				first.Name, first.Approval.Approvers, p.Name, p.Approval.Approvers)
			return
		}
	}
	d.NeedsApproval = true
	d.Approvers = first.Approval.Approvers.clone()
	d.Count = 0
	for _, p := range strict {
		d.Count = max(d.Count, p.Approval.count())
	}
	d.BreakGlass = first.Approval.BreakGlass.clone()
	for _, p := range strict[1:] {
		if !p.Approval.BreakGlass.equal(d.BreakGlass) {
			d.BreakGlass = Subjects{}
			e.note("break-glass approval is unavailable because policies %s name different break-glass approvers",
				strings.Join(names(strict), ", "))
			break
		}
	}
	approvals := "1 approval"
	if d.Count > 1 {
		approvals = fmt.Sprintf("%d distinct approvals", d.Count)
	}
	msg := fmt.Sprintf("%s %s %s from %s", policyList(strict), verb(strict, "requires", "require"), approvals, d.Approvers)
	if !d.BreakGlass.Empty() {
		msg += fmt.Sprintf(", or one break-glass approval from %s", d.BreakGlass)
	}
	if !e.denied {
		e.note("%s, within %s", msg, fmtDuration(d.PendingTTL))
	}
}

// finish clears the grant fields of a denial so they cannot be misused. On
// denial Policies keeps every policy that applies to the subject, as run set it.
func (e *evaluation) finish() {
	if !e.denied {
		return
	}
	e.d = Decision{Reasons: e.d.Reasons, Requestable: e.d.Requestable, Policies: e.d.Policies}
}

func normalize(in []string) []string {
	var out []string
	for _, s := range in {
		out = appendNew(out, strings.TrimSpace(s))
	}
	return out
}

// appendNew appends the non-empty values not already in list.
func appendNew(list []string, values ...string) []string {
	for _, v := range values {
		if v != "" && !contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}

// policyList names policies for reasons: "policy a" or "policies a, b".
func policyList(ps []*Policy) string {
	if len(ps) == 1 {
		return "policy " + ps[0].Name
	}
	return "policies " + strings.Join(names(ps), ", ")
}

func verb(ps []*Policy, one, many string) string {
	if len(ps) == 1 {
		return one
	}
	return many
}

func names(ps []*Policy) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

func minNonZero[T int | int64](a, b T) T {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	default:
		return min(a, b)
	}
}
