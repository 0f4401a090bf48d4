package token

// Scope strings and glob patterns.
//
// A scope is "kind:value": model:gpt-4o, model:azure/gpt-4o (a model reached
// through the upstream named azure), endpoint:/v1/audio/speech, audit:read,
// upstream:openai, tool:shell, tool:mcp:github/search_* (docs/tools.md).
// The kind is always literal; only the value may contain '*' globs, and a
// '*' matches any run of bytes, including '/' and ':' and the empty run.
// So:
//
//	model:gpt-4o    covers model:gpt-4o only (not model:gpt-4o-mini, not model:azure/gpt-4o)
//	model:gpt-4o*   covers model:gpt-4o, model:gpt-4o-mini, model:gpt-4o-2024-08-06
//	model:*/gpt-4o  covers model:gpt-4o through any named upstream
//	model:*         covers every model, qualified or not
//
// Matching is case-sensitive: model names and paths are case-sensitive upstream.
// A scope being checked may itself be a pattern (someone may ask for
// model:gpt-4o*); it is covered only when every scope it could stand for is
// covered, which MatchScope checks conservatively: a '*' in the checked scope
// must be absorbed by a '*' in the pattern.

import (
	"errors"
	"fmt"
	"strings"
)

// Scope kinds understood by the broker and the proxy.
const (
	KindModel    = "model"    // model:NAME or model:UPSTREAM/NAME
	KindEndpoint = "endpoint" // endpoint:/v1/PATH, for endpoints beyond the default set
	KindAudit    = "audit"    // audit:read, audit:export
	KindUpstream = "upstream" // upstream:NAME, every model of one upstream
	KindTraces   = "traces"   // traces:write, storing agent traces through the proxy
	KindSessions = "sessions" // sessions:admin, list and end anyone's broker sessions
	KindProxy    = "proxy"    // proxy:serve, a local proxy's workload identity may enroll (and gets every provider key); never a person
	KindTool     = "tool"     // tool:GLOB, the tools a grant may declare and the model may call
)

// ScopeKinds lists the kinds ValidScope accepts, in documentation order.
var ScopeKinds = []string{KindModel, KindEndpoint, KindAudit, KindUpstream, KindTool, KindTraces, KindSessions, KindProxy}

// MaxScopeLen bounds the length of one scope string.
const MaxScopeLen = 256

// ErrInvalidScope is wrapped by every error ValidScope returns.
var ErrInvalidScope = errors.New("invalid scope")

// MatchGlob reports whether s matches pattern, where '*' in pattern matches
// any run of bytes (including none, '/' and ':') and every other byte matches
// itself. It runs in O(len(pattern)*len(s)) time at worst, without recursion.
// A '*' in s is matched only by a '*' in pattern, so MatchGlob(p, q) for two
// patterns reports (conservatively) whether p covers everything q does.
func MatchGlob(pattern, s string) bool {
	px, sx := 0, 0
	// Where to resume after the most recent '*': pattern index of the star
	// and the next s index the star should try to absorb up to.
	starPx, starSx := -1, 0
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			c := pattern[px]
			if c == '*' {
				starPx, starSx = px, sx+1
				px++
				continue
			}
			if sx < len(s) && s[sx] == c {
				px++
				sx++
				continue
			}
		}
		if starPx >= 0 && starSx <= len(s) {
			px, sx = starPx+1, starSx
			starSx++
			continue
		}
		return false
	}
	return true
}

// SplitScope splits a scope into its kind and value. ok is false when there
// is no ':' or either side is empty.
func SplitScope(s string) (kind, value string, ok bool) {
	kind, value, found := strings.Cut(s, ":")
	if !found || kind == "" || value == "" {
		return "", "", false
	}
	return kind, value, true
}

// MatchScope reports whether scope is covered by pattern: the kinds are equal
// (kinds are never globs) and the value matches the pattern's value glob.
func MatchScope(pattern, scope string) bool {
	pk, pv, ok := SplitScope(pattern)
	if !ok {
		return false
	}
	sk, sv, ok := SplitScope(scope)
	if !ok || pk != sk {
		return false
	}
	return MatchGlob(pv, sv)
}

// Covers reports whether any granted pattern covers want.
func Covers(granted []string, want string) bool {
	for _, g := range granted {
		if MatchScope(g, want) {
			return true
		}
	}
	return false
}

// CoversModel reports whether granted lets a caller use model on the upstream
// named upstream: either the unqualified scope model:MODEL or the qualified
// model:UPSTREAM/MODEL is covered. model is the name sent upstream, without
// any upstream prefix; upstream may be empty when there is only one.
func CoversModel(granted []string, upstream, model string) bool {
	if model == "" {
		return false
	}
	if Covers(granted, KindModel+":"+model) {
		return true
	}
	if upstream != "" && Covers(granted, KindModel+":"+upstream+"/"+model) {
		return true
	}
	return upstream != "" && Covers(granted, KindUpstream+":"+upstream)
}

// Uncovered returns the requested scopes that no allowed pattern covers, in
// request order. It is empty when requested is a subset of allowed.
func Uncovered(requested, allowed []string) []string {
	var out []string
	for _, r := range requested {
		if !Covers(allowed, r) {
			out = append(out, r)
		}
	}
	return out
}

// Subset reports whether every requested scope (or pattern) is covered by
// allowed. An approver may narrow a request but never widen it: the broker
// checks Subset(approved, requested). An empty requested list is a subset of
// anything; callers that need at least one scope check that separately.
func Subset(requested, allowed []string) bool {
	return len(Uncovered(requested, allowed)) == 0
}

// ParseScopes splits a space-separated scope claim into its scopes, dropping
// empty fields and duplicates and keeping the first-seen order.
func ParseScopes(s string) []string {
	return dedupe(strings.Fields(s))
}

// JoinScopes renders scopes as a space-separated claim, dropping duplicates
// and keeping order. It is the inverse of ParseScopes for valid scopes.
func JoinScopes(scopes []string) string {
	return strings.Join(dedupe(scopes), " ")
}

func dedupe(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	seen := make(map[string]struct{}, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s == "" {
			continue
		}
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	return out
}

// ValidScope checks the syntax of a scope or scope pattern: a known kind, a
// ':' and a non-empty value made of letters, digits and . _ - : / @ + = ~ *
// (no spaces or quotes). Endpoint values are paths starting with '/' (or a
// bare '*'). The error wraps ErrInvalidScope and says what is wrong.
func ValidScope(s string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("scope %q: %w: %s", s, ErrInvalidScope, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fmt.Errorf("scope is empty: %w", ErrInvalidScope)
	}
	if len(s) > MaxScopeLen {
		return fail("longer than %d bytes", MaxScopeLen)
	}
	kind, value, found := strings.Cut(s, ":")
	if !found {
		return fail("want kind:value, e.g. model:gpt-4o")
	}
	if !knownKind(kind) {
		return fail("unknown kind %q; want one of %s", kind, strings.Join(ScopeKinds, ", "))
	}
	if value == "" {
		return fail("empty value after %q", kind+":")
	}
	for i := 0; i < len(value); i++ {
		if !scopeByte(value[i]) {
			return fail("character %q is not allowed in a scope value", rune(value[i]))
		}
	}
	if kind == KindEndpoint && value != "*" && !strings.HasPrefix(value, "/") {
		return fail("endpoint value must be a path starting with '/', e.g. endpoint:/v1/audio/*")
	}
	if strings.Contains(value, "**") {
		return fail("'**' is redundant; '*' already matches across '/'")
	}
	return nil
}

func knownKind(k string) bool {
	for _, known := range ScopeKinds {
		if k == known {
			return true
		}
	}
	return false
}

func scopeByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._-:/@+=~*", c) >= 0
}
