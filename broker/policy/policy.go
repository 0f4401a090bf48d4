// Package policy decides who may request which scopes, for how long, under
// whose approval and within which limits. It is pure: no I/O, no clock, no
// globals. Evaluate turns a subject and an access request into a Decision
// that carries human-readable Reasons for every denial, clamp and approval
// requirement, so the broker can show them to the user and write them to the
// audit trail unchanged. CanReview and Satisfied decide reviews.
//
// Policies come from the "policies:" list of the config file; the struct
// tags serve both viper (mapstructure) and go.yaml.in/yaml/v3, and durations
// are written as Go durations ("15m", "1h").
package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// TTL bounds applied when a policy leaves them unset, and the absolute floor.
const (
	// DefaultTTL is the grant lifetime when the request names none.
	DefaultTTL = 15 * time.Minute
	// DefaultMaxTTL is the ceiling when a policy sets no max_ttl.
	DefaultMaxTTL = time.Hour
	// DefaultPendingTTL is how long a request may wait for approval.
	DefaultPendingTTL = time.Hour
	// MinTTL is the shortest grant anyone may ask for.
	MinTTL = time.Minute
	// MaxReasonLen bounds the reason a requester gives (it goes to the audit trail).
	MaxReasonLen = 1024
)

// Subject kinds, as set by the broker from the login method.
const (
	KindUser    = "user"    // a person, from an interactive OIDC login
	KindService = "service" // a workload: CI job, Kubernetes service account
)

// Policy grants the subjects it names the right to request its scopes.
type Policy struct {
	// Name identifies the policy in decisions, reasons and the audit trail.
	Name string `mapstructure:"name" yaml:"name"`
	// Subjects says to whom the policy applies.
	Subjects Subjects `mapstructure:"subjects" yaml:"subjects"`
	// Scopes are the scope patterns the subjects may request (see token.MatchScope).
	Scopes []string `mapstructure:"scopes" yaml:"scopes"`
	// MaxTTL caps a grant's lifetime; 0 means DefaultMaxTTL.
	MaxTTL time.Duration `mapstructure:"max_ttl" yaml:"max_ttl"`
	// DefaultTTL is used when the request names no TTL; 0 means DefaultTTL
	// (or MaxTTL when that is shorter).
	DefaultTTL time.Duration `mapstructure:"default_ttl" yaml:"default_ttl"`
	// RequireReason makes requests without a reason fail.
	RequireReason bool `mapstructure:"require_reason" yaml:"require_reason"`
	// PendingTTL is how long a request may wait for approval; 0 means DefaultPendingTTL.
	PendingTTL time.Duration `mapstructure:"pending_ttl" yaml:"pending_ttl"`
	// Approval says whether and by whom grants must be approved.
	Approval Approval `mapstructure:"approval" yaml:"approval"`
	// Limits bound the use of a grant made under this policy.
	Limits Limits `mapstructure:"limits" yaml:"limits"`
}

// Subjects names identities. Users match a subject's sub or (case-insensitively)
// its email; service accounts are named by sub, e.g.
// "repo:acme/app:ref:refs/heads/main" or "system:serviceaccount:ml:agent".
// Users and groups may use '*' globs ("*@example.com", "repo:acme/*").
// Issuers name trusted issuers (their config name, as the broker reports it)
// and match exactly.
//
// A subject matches when its issuer is listed (if Issuers is set) and it
// matches one of Users or one of Groups (if either is set). Subjects with
// only Issuers match everyone from those issuers; empty Subjects match nobody.
type Subjects struct {
	Users   []string `mapstructure:"users" yaml:"users" json:"users,omitempty"`
	Groups  []string `mapstructure:"groups" yaml:"groups" json:"groups,omitempty"`
	Issuers []string `mapstructure:"issuers" yaml:"issuers" json:"issuers,omitempty"`
}

// Approval configures human approval of requests.
type Approval struct {
	// Required makes every grant under the policy wait for approval.
	Required bool `mapstructure:"required" yaml:"required" json:"required"`
	// Approvers may approve or deny; the requester never may.
	Approvers Subjects `mapstructure:"approvers" yaml:"approvers" json:"approvers"`
	// Count is the number of distinct approvers needed; 0 means 1.
	Count int `mapstructure:"count" yaml:"count" json:"count"`
	// BreakGlass subjects approve alone, whatever Count says. Their use is
	// called out in the decision reason and so in the audit trail.
	BreakGlass Subjects `mapstructure:"break_glass" yaml:"break_glass" json:"break_glass"`
}

// Limits bound the use of one grant; zero means unlimited.
type Limits struct {
	// RPM is the number of proxied requests per minute.
	RPM int `mapstructure:"rpm" yaml:"rpm" json:"rpm,omitempty"`
	// Tokens is the total model-token budget (prompt + completion) of the grant.
	Tokens int64 `mapstructure:"tokens" yaml:"tokens" json:"tokens,omitempty"`
}

// Set is the ordered list of configured policies.
type Set []Policy

// Subject is the identity being evaluated, as established by the broker from
// a verified ID token or session.
type Subject struct {
	// ID is the OIDC sub; required.
	ID string `json:"id"`
	// Email is set only when the issuer vouches for it (email_verified).
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// Issuer is the config name of the issuer that authenticated the subject.
	Issuer string `json:"issuer,omitempty"`
	// Kind is KindUser or KindService.
	Kind string `json:"kind,omitempty"`
	// Act is the sub of the person a service account acts for (the act
	// claim), if any; that person may not review the service account's
	// requests, nor the service account that person's (see SamePerson).
	Act string `json:"act,omitempty"`
	// ActFor is the person the issuer's act_people map says Act is (an
	// email or a sub at a person issuer), for platform logins that match
	// none of that person's names (a GitHub login); "" when unmapped.
	ActFor string `json:"act_for,omitempty"`
}

// String names the subject for reasons: email when known, else sub.
func (s Subject) String() string {
	name := s.ID
	if s.Email != "" {
		name = s.Email
	}
	if s.Issuer != "" {
		name += " (issuer " + s.Issuer + ")"
	}
	return name
}

// Empty reports whether s names nobody.
func (s Subjects) Empty() bool {
	return len(s.Users) == 0 && len(s.Groups) == 0 && len(s.Issuers) == 0
}

// Match reports whether who is one of the subjects s names.
func (s Subjects) Match(who Subject) bool {
	if who.ID == "" || s.Empty() {
		return false
	}
	if len(s.Issuers) > 0 && !contains(s.Issuers, who.Issuer) {
		return false
	}
	if len(s.Users) == 0 && len(s.Groups) == 0 {
		return true
	}
	for _, u := range s.Users {
		if token.MatchGlob(u, who.ID) {
			return true
		}
		if who.Email != "" && token.MatchGlob(LowerASCII(u), LowerASCII(who.Email)) {
			return true
		}
	}
	for _, g := range s.Groups {
		for _, have := range who.Groups {
			if have != "" && token.MatchGlob(g, have) {
				return true
			}
		}
	}
	return false
}

// LowerASCII is s with the ASCII letters A–Z lowered and every other byte
// kept: how an approver's or subject's email is compared with an identity's
// (case-insensitive in ASCII, exact otherwise). Unicode case mapping would
// make another address match: the Kelvin sign K (U+212A) lowers to k, the
// capital I with dot above (U+0130) to i.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// String renders s for reasons, e.g. "groups [security] or users [bob@example.com]".
func (s Subjects) String() string {
	if s.Empty() {
		return "nobody"
	}
	var who []string
	if len(s.Users) > 0 {
		who = append(who, "users ["+strings.Join(s.Users, ", ")+"]")
	}
	if len(s.Groups) > 0 {
		who = append(who, "groups ["+strings.Join(s.Groups, ", ")+"]")
	}
	out := strings.Join(who, " or ")
	if len(s.Issuers) > 0 {
		if out == "" {
			out = "anyone"
		}
		out += " from issuers [" + strings.Join(s.Issuers, ", ") + "]"
	}
	return out
}

// clone returns a deep copy, so decisions never alias the policy set.
func (s Subjects) clone() Subjects {
	return Subjects{
		Users:   append([]string(nil), s.Users...),
		Groups:  append([]string(nil), s.Groups...),
		Issuers: append([]string(nil), s.Issuers...),
	}
}

// equal reports whether s and o name the same patterns, ignoring order.
func (s Subjects) equal(o Subjects) bool {
	return sameSet(s.Users, o.Users) && sameSet(s.Groups, o.Groups) && sameSet(s.Issuers, o.Issuers)
}

// Find returns the policy named name, or nil.
func (set Set) Find(name string) *Policy {
	for i := range set {
		if set[i].Name == name {
			return &set[i]
		}
	}
	return nil
}

// maxTTL is the effective ceiling of p.
func (p *Policy) maxTTL() time.Duration {
	if p.MaxTTL > 0 {
		return p.MaxTTL
	}
	return DefaultMaxTTL
}

// defaultTTL is the effective default of p, never above its ceiling.
func (p *Policy) defaultTTL() time.Duration {
	d := DefaultTTL
	if p.DefaultTTL > 0 {
		d = p.DefaultTTL
	}
	return min(d, p.maxTTL())
}

func (p *Policy) pendingTTL() time.Duration {
	if p.PendingTTL > 0 {
		return p.PendingTTL
	}
	return DefaultPendingTTL
}

func (a Approval) count() int {
	return max(a.Count, 1)
}

// FieldError is one problem found by Set.Validate.
type FieldError struct {
	Index  int    // position in the policies list
	Policy string // policy name, may be empty
	Field  string // key path within the policy, e.g. "approval.approvers"
	Msg    string
}

func (e *FieldError) Error() string {
	where := fmt.Sprintf("policies[%d]", e.Index)
	if e.Policy != "" {
		where += fmt.Sprintf(" %q", e.Policy)
	}
	return fmt.Sprintf("policy: %s: %s: %s", where, e.Field, e.Msg)
}

// Validate reports every problem in the set at once, in config order; an
// empty result means the set is usable.
func (set Set) Validate() []error {
	var errs []error
	seen := map[string]int{}
	for i := range set {
		p := &set[i]
		bad := func(field, format string, args ...any) {
			errs = append(errs, &FieldError{Index: i, Policy: p.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		switch first, dup := seen[p.Name]; {
		case strings.TrimSpace(p.Name) == "":
			bad("name", "is required")
		case p.Name != strings.TrimSpace(p.Name):
			bad("name", "has leading or trailing spaces")
		case dup:
			bad("name", "duplicates policies[%d]; names must be unique", first)
		default:
			seen[p.Name] = i
		}

		if p.Subjects.Empty() {
			bad("subjects", `is empty, so the policy applies to nobody (use users: ["*"] for everyone)`)
		}
		validateSubjects("subjects", p.Subjects, bad)

		if len(p.Scopes) == 0 {
			bad("scopes", "at least one scope is required")
		}
		for j, s := range p.Scopes {
			if err := token.ValidScope(s); err != nil {
				bad(fmt.Sprintf("scopes[%d]", j), "%v", err)
			}
		}

		checkTTL := func(field string, d time.Duration) {
			switch {
			case d < 0:
				bad(field, "must not be negative (got %s)", fmtDuration(d))
			case d > 0 && d < MinTTL:
				bad(field, "is shorter than the minimum %s (got %s)", fmtDuration(MinTTL), fmtDuration(d))
			}
		}
		checkTTL("max_ttl", p.MaxTTL)
		checkTTL("default_ttl", p.DefaultTTL)
		if p.MaxTTL > 0 && p.DefaultTTL > p.MaxTTL {
			bad("default_ttl", "%s is longer than max_ttl %s", fmtDuration(p.DefaultTTL), fmtDuration(p.MaxTTL))
		}
		if p.PendingTTL < 0 {
			bad("pending_ttl", "must not be negative (got %s)", fmtDuration(p.PendingTTL))
		}

		a := p.Approval
		validateSubjects("approval.approvers", a.Approvers, bad)
		validateSubjects("approval.break_glass", a.BreakGlass, bad)
		if a.Count < 0 {
			bad("approval.count", "must not be negative (got %d)", a.Count)
		}
		if a.Required {
			if a.Approvers.Empty() {
				bad("approval.approvers", "required when approval.required is true")
			} else if n := countable(a.Approvers); n >= 0 && a.count() > n {
				bad("approval.count", "needs %d distinct approvers but approvers names only %s", a.count(), plural(n, "user"))
			}
		} else if !a.Approvers.Empty() || !a.BreakGlass.Empty() || a.Count != 0 {
			// Approvers without required: true would auto-approve; say so.
			bad("approval.required", "is false but approvers, count or break_glass are set; set required: true or remove them")
		}

		if p.Limits.RPM < 0 {
			bad("limits.rpm", "must not be negative (got %d)", p.Limits.RPM)
		}
		if p.Limits.Tokens < 0 {
			bad("limits.tokens", "must not be negative (got %d)", p.Limits.Tokens)
		}
	}
	return errs
}

func validateSubjects(field string, s Subjects, bad func(field, format string, args ...any)) {
	lists := []struct {
		name string
		list []string
	}{{"users", s.Users}, {"groups", s.Groups}, {"issuers", s.Issuers}}
	for _, l := range lists {
		for j, v := range l.list {
			if strings.TrimSpace(v) == "" {
				bad(fmt.Sprintf("%s.%s[%d]", field, l.name, j), "is empty")
			}
			// An email (a user entry with @) is matched in ASCII case only
			// (LowerASCII): one with a capital outside ASCII never matches.
			if l.name == "users" && strings.Contains(v, "@") {
				if r := token.CapitalOutsideASCII(v); r != 0 {
					bad(fmt.Sprintf("%s.%s[%d]", field, l.name, j), "%s", token.EmailCaseError(v, r))
				}
			}
		}
	}
}

// countable returns how many distinct people s can possibly name, or -1 when
// unbounded (groups, issuers or globs).
func countable(s Subjects) int {
	if len(s.Groups) > 0 || len(s.Issuers) > 0 {
		return -1
	}
	seen := map[string]bool{}
	for _, u := range s.Users {
		if strings.Contains(u, "*") {
			return -1
		}
		seen[strings.ToLower(u)] = true
	}
	return len(seen)
}

// DevPolicy is the permissive policy of `pamctl serve --dev`: everyone may
// request any model and read the audit trail, for up to an hour, without
// approval, so the walk-through works for one person alone. It is never used
// unless --dev is given.
func DevPolicy() Policy {
	return Policy{
		Name:       "dev",
		Subjects:   Subjects{Users: []string{"*"}},
		Scopes:     []string{"model:*", "audit:read"},
		MaxTTL:     time.Hour,
		DefaultTTL: DefaultTTL,
		PendingTTL: DefaultPendingTTL,
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	for _, v := range a {
		if !contains(b, v) {
			return false
		}
	}
	for _, v := range b {
		if !contains(a, v) {
			return false
		}
	}
	return true
}

// fmtDuration prints durations the way they are written in config: 1h, 1h30m, 15m, 90s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
