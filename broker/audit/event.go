package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Event is one audit record. The JSON field order below is part of the
// chain format: Seq must stay first and PrevHash, Hash last (see Draft.Seal).
// Add new fields between them, always with omitempty, never reorder.
type Event struct {
	// Seq is assigned by the log: 1, 2, 3, ... without gaps.
	Seq uint64 `json:"seq"`
	// Time is when the event happened, UTC with nanoseconds. The log fills
	// it when zero.
	Time time.Time `json:"time"`
	// Type is a stable dotted name, e.g. "proxy.call" (see Types).
	Type Type `json:"type"`
	// Code is the stable short code of Type for SIEM rules, e.g. "PAM-P001".
	// The log fills it; a caller-set code must match the table.
	Code string `json:"code"`
	// Actor is who did it (nil for pamctl itself).
	Actor *Actor `json:"actor,omitempty"`
	// Grant, Request and Review are the ids the event is about.
	Grant   string `json:"grant,omitempty"`
	Request string `json:"request,omitempty"`
	Review  string `json:"review,omitempty"`
	// Target names the object acted on: a vault entry, a key id, a model, a
	// config file, a user.
	Target string `json:"target,omitempty"`
	// Decision is the outcome ("allow", "deny", "approved", "denied",
	// "pending", "hold", ...) and Reasons the policy or rule names behind it.
	Decision string   `json:"decision,omitempty"`
	Reasons  []string `json:"reasons,omitempty"`
	// Model and Endpoint describe a proxied call.
	Model    string `json:"model,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	// Prompt is the prompt as forwarded upstream (after prompt masking),
	// truncated to MaxTextBytes; PromptSHA256 is the hex SHA-256 of the whole
	// forwarded prompt, computed before truncation.
	Prompt       string `json:"prompt,omitempty"`
	PromptSHA256 string `json:"prompt_sha256,omitempty"`
	// Response is a masked summary of the response, truncated to
	// MaxTextBytes.
	Response string `json:"response,omitempty"`
	// Usage is the upstream's token accounting.
	Usage *Usage `json:"usage,omitempty"`
	// Masked counts masked spans per detector, e.g. {"EMAIL": 2}.
	Masked map[string]int `json:"masked,omitempty"`
	// Unscanned lists content of a proxied call that pamctl could not read
	// as text (rules and masking did not see it), by JSON path and kind,
	// e.g. "messages[1].content[0] (image_url)".
	Unscanned []string `json:"unscanned,omitempty"`
	// Status is the HTTP status returned to the client.
	Status int `json:"status,omitempty"`
	// LatencyMS is the wall time of the operation in milliseconds.
	LatencyMS int64 `json:"latency_ms,omitempty"`
	// Client is the network peer.
	Client *Client `json:"client,omitempty"`
	// Error is a message safe to show to users; never a raw upstream error.
	Error string `json:"error,omitempty"`
	// Details holds anything else, e.g. {"ttl": "30m"}.
	Details map[string]string `json:"details,omitempty"`
	// PrevHash is the previous event's Hash (GenesisHash or the anchor's
	// hash for the first event). Set by the log.
	PrevHash string `json:"prev_hash"`
	// Hash is hex(SHA-256(raw(PrevHash) || canonical bytes)). Set by the log.
	Hash string `json:"hash,omitempty"`
}

// Actor is the identity behind an event.
type Actor struct {
	Subject string    `json:"subject,omitempty"`
	Display string    `json:"display,omitempty"` // the name people know the subject by
	Email   string    `json:"email,omitempty"`
	Groups  []string  `json:"groups,omitempty"`
	Issuer  string    `json:"issuer,omitempty"`
	Kind    ActorKind `json:"kind,omitempty"`
	// TokenID is the jti of the access token used, if any.
	TokenID string `json:"token_id,omitempty"`
	// Act is the person a workload acted for (the token's act claim).
	Act string `json:"act,omitempty"`
}

// ActorKind says whether an actor is a person or a workload.
type ActorKind string

// Actor kinds.
const (
	KindUser    ActorKind = "user"
	KindService ActorKind = "service"
)

// Usage is token accounting reported by the upstream.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

// Client describes the network peer of a request.
type Client struct {
	RemoteAddr string `json:"remote_addr,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
}

// MaxTextBytes bounds Prompt and Response in a stored event.
const MaxTextBytes = 16 << 10

// truncMarker ends a truncated Prompt or Response.
const truncMarker = "…[truncated]"

// Type is a stable dotted event name.
type Type string

// Event types. Names and codes are stable: never rename or reuse one.
const (
	TypeLogin           Type = "login"
	TypeLoginFailed     Type = "login.failed"
	TypeLogout          Type = "logout"
	TypeRequestCreated  Type = "request.created"
	TypeRequestApproved Type = "request.approved"
	TypeRequestDenied   Type = "request.denied"
	TypeReviewRefused   Type = "review.refused"
	TypeRequestExpired  Type = "request.expired"
	TypeRequestsPruned  Type = "requests.pruned"
	TypeTokenIssued     Type = "token.issued"
	TypeGrantRevoked    Type = "grant.revoked"
	TypeVaultSet        Type = "vault.set"
	TypeVaultRemoved    Type = "vault.removed"
	TypeKeyRotated      Type = "key.rotated"
	TypeStoreBackup     Type = "store.backup"
	TypeConfigReloaded  Type = "config.reloaded"
	TypeNotifyFailed    Type = "notify.failed"
	TypeProxyCall       Type = "proxy.call"
	TypePromptHeld      Type = "prompt.held"
	TypePromptReleased  Type = "prompt.released"
	TypePromptRefused   Type = "prompt.refused"
	TypeTraceSpan       Type = "trace.span"
	TypeProxyRefused    Type = "proxy.refused"
	TypeProxyEnrolled   Type = "proxy.enrolled"
	TypeProxyRevoked    Type = "proxy.revoked"
	TypeToolCall        Type = "tool.call"
	TypeAuditRead       Type = "audit.read"
	TypeAuditExport     Type = "audit.export"
	TypeAuditAnchor     Type = "audit.anchor"
	TypeAuditCursor     Type = "audit.cursor"
	TypeSessionRevoked  Type = "session.revoked"
)

// TypeInfo is one row of the event type table.
type TypeInfo struct {
	Type        Type   `json:"type"`
	Code        string `json:"code"`
	Description string `json:"description"`
}

// types is the table of known event types; docs/audit.md mirrors it and a
// test keeps the two in step.
var types = []TypeInfo{
	{TypeLogin, "PAM-A001", "a person or workload logged in"},
	{TypeLoginFailed, "PAM-A002", "a login was refused (bad or untrusted ID token)"},
	{TypeLogout, "PAM-A003", "a session ended"},
	{TypeSessionRevoked, "PAM-A004", "a session was revoked (by an admin, or by its owner from elsewhere); its token is refused from then on"},
	{TypeRequestCreated, "PAM-R001", "a just-in-time access request was created (decision says auto-approved or pending)"},
	{TypeRequestApproved, "PAM-R002", "an approver approved a request (decision: approved, or pending while more approvals are needed)"},
	{TypeRequestDenied, "PAM-R003", "an approver denied a request"},
	{TypeRequestExpired, "PAM-R004", "a pending request or a grant expired"},
	{TypeReviewRefused, "PAM-R006", "an approve or deny was refused before it counted (details.cause: self_review, not_approver or step_up); at most one per reviewer, request and cause a minute, 8 a minute per reviewer and 128 in all (details.suppressed counts the reviewer's own not written, details.suppressed_others those of reviewers not kept by name)"},
	{TypeRequestsPruned, "PAM-R005", "requests that ended longer ago than requests.retention were deleted from the store (details: count)"},
	{TypeTokenIssued, "PAM-T001", "a scoped access token was minted"},
	{TypeGrantRevoked, "PAM-T002", "a grant and its tokens were revoked"},
	{TypeVaultSet, "PAM-V001", "a provider key was stored or replaced in the vault"},
	{TypeVaultRemoved, "PAM-V002", "a provider key was removed from the vault"},
	{TypeKeyRotated, "PAM-V003", "a token signing key was rotated (details.retire_now true: every other key was withdrawn at once, listed in details.withdrawn)"},
	{TypeStoreBackup, "PAM-V004", "a copy of the data file was taken (pamctl store backup); the copy holds this event"},
	{TypeConfigReloaded, "PAM-C001", "the configuration was reloaded"},
	{TypeNotifyFailed, "PAM-C002", "a webhook notification could not be delivered"},
	{TypeProxyCall, "PAM-P001", "a call went through the proxy (or was refused by it)"},
	{TypePromptHeld, "PAM-P002", "a prompt rule held a call for approval (or a tool_call rule a proposed tool call: target and details.tool name the tool)"},
	{TypePromptReleased, "PAM-P003", "an approver released a held call"},
	{TypePromptRefused, "PAM-P004", "a held call was refused or timed out"},
	{TypeTraceSpan, "PAM-P005", "a trace span of an agent run, recorded by the proxy"},
	{TypeProxyRefused, "PAM-P006", "calls the proxy refused before authentication, counted per source network (IPv4 /24, IPv6 /64) and minute, at most 32 events a minute"},
	{TypeProxyEnrolled, "PAM-P007", "a local proxy enrolled (or renewed) with a proxy:serve grant, or was refused"},
	{TypeProxyRevoked, "PAM-P008", "an admin revoked a local proxy's enrollment; it is cut off at once"},
	{TypeToolCall, "PAM-P009", "the model proposed a tool call in an answer and the proxy judged it (decision allow, redact or deny; details: tool, masked arguments)"},
	{TypeAuditRead, "PAM-L001", "someone read the audit trail"},
	{TypeAuditExport, "PAM-L002", "someone exported the audit trail"},
	{TypeAuditAnchor, "PAM-L003", "old events were pruned; details carry the retention anchor"},
	{TypeAuditCursor, "PAM-L004", "a sink's (or the anchor's) stored delivery cursor was not trusted at start and delivery restarted at the first retained event (decision rejected), or one without an authenticator was taken for one written before cursors were authenticated (decision legacy); target: the sink; error: why"},
}

var typeIndex = func() map[Type]TypeInfo {
	m := make(map[Type]TypeInfo, len(types))
	for _, t := range types {
		m[t.Type] = t
	}
	return m
}()

// Types returns the event type table in code order.
func Types() []TypeInfo {
	out := slices.Clone(types)
	slices.SortFunc(out, func(a, b TypeInfo) int { return strings.Compare(a.Code, b.Code) })
	return out
}

// CodeOf returns the stable code of t.
func CodeOf(t Type) (string, bool) {
	info, ok := typeIndex[t]
	return info.Code, ok
}

// PromptDigest is the hex SHA-256 of a prompt, for Event.PromptSHA256.
func PromptDigest(prompt string) string {
	// Sum256 only reads its input: hash the string's bytes in place (a
	// []byte conversion copied every prompt once more).
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(prompt), len(prompt)))
	return hex.EncodeToString(sum[:])
}

// Normalize prepares e for appending: it fills Time (from now, when zero)
// and Code, converts Time to UTC, computes PromptSHA256 when missing,
// truncates Prompt and Response to MaxTextBytes, replaces invalid UTF-8 in
// every string with U+FFFD and clears the chain fields the log assigns. It
// reports events the log must refuse.
func (e *Event) Normalize(now time.Time) error {
	info, ok := typeIndex[e.Type]
	if !ok {
		return fmt.Errorf("audit: unknown event type %q", e.Type)
	}
	if e.Code != "" && e.Code != info.Code {
		return fmt.Errorf("audit: event type %q has code %s, not %s", e.Type, info.Code, e.Code)
	}
	e.Code = info.Code
	if e.Actor != nil && e.Actor.Kind != "" && e.Actor.Kind != KindUser && e.Actor.Kind != KindService {
		return fmt.Errorf("audit: unknown actor kind %q", e.Actor.Kind)
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	if e.Prompt != "" && e.PromptSHA256 == "" {
		e.PromptSHA256 = PromptDigest(e.Prompt)
	}
	e.Prompt = truncate(e.Prompt, MaxTextBytes)
	e.Response = truncate(e.Response, MaxTextBytes)
	e.Seq, e.PrevHash, e.Hash = 0, "", ""
	e.replaceInvalidUTF8()
	return nil
}

// replaceInvalidUTF8 replaces invalid UTF-8 in every string of e with U+FFFD.
// encoding/json writes an invalid byte as the escape \ufffd, which decodes
// to U+FFFD and encodes again as the character itself: a verifier that
// re-encodes a stored line would get other bytes and see tampering. The
// strings are checked only: valid ones (all but a hostile few) are kept,
// and an actor, client, slice or map is copied before it changes, since
// the caller may still hold or share it. Type, Code and Actor.Kind are
// checked against their tables before.
func (e *Event) replaceInvalidUTF8() {
	for _, s := range []*string{&e.Grant, &e.Request, &e.Review, &e.Target, &e.Decision,
		&e.Model, &e.Endpoint, &e.PromptSHA256, &e.Error} {
		*s = validString(*s)
	}
	// U+FFFD may be longer than the bytes it replaces.
	e.Prompt = truncate(validString(e.Prompt), MaxTextBytes)
	e.Response = truncate(validString(e.Response), MaxTextBytes)
	if a := e.Actor; a != nil && !(allValid(a.Subject, a.Display, a.Email, a.Issuer, a.TokenID, a.Act) && allValid(a.Groups...)) {
		c := *a
		for _, s := range []*string{&c.Subject, &c.Display, &c.Email, &c.Issuer, &c.TokenID, &c.Act} {
			*s = validString(*s)
		}
		c.Groups = validStrings(a.Groups)
		e.Actor = &c
	}
	if cl := e.Client; cl != nil && !allValid(cl.RemoteAddr, cl.UserAgent) {
		e.Client = &Client{RemoteAddr: validString(cl.RemoteAddr), UserAgent: validString(cl.UserAgent)}
	}
	e.Reasons = validStrings(e.Reasons)
	e.Unscanned = validStrings(e.Unscanned)
	e.Masked = validMap(e.Masked, func(n int) int { return n })
	e.Details = validMap(e.Details, validString)
}

// validString returns s with each run of invalid UTF-8 replaced by U+FFFD;
// a valid s itself.
func validString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func allValid(v ...string) bool {
	for _, s := range v {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// validStrings is validString for each element: v itself when all are
// valid, else a copy.
func validStrings(v []string) []string {
	if allValid(v...) {
		return v
	}
	c := make([]string, len(v))
	for i, s := range v {
		c[i] = validString(s)
	}
	return c
}

// validMap is validString for each key of m and value for each value
// (which must return a valid value unchanged): m itself when nothing
// changes, else a copy. Keys that become equal keep the value of the valid
// one, or else of the least in byte order, so the event is the same
// whatever the map's order.
func validMap[V comparable](m map[string]V, value func(V) V) map[string]V {
	ok := true
	for k, v := range m {
		if !utf8.ValidString(k) || value(v) != v {
			ok = false
			break
		}
	}
	if ok {
		return m
	}
	c := make(map[string]V, len(m))
	var invalid []string
	for k, v := range m {
		if utf8.ValidString(k) {
			c[k] = value(v)
		} else {
			invalid = append(invalid, k)
		}
	}
	slices.Sort(invalid)
	for _, k := range invalid {
		vk := validString(k)
		if _, dup := c[vk]; !dup {
			c[vk] = value(m[k])
		}
	}
	return c
}

// truncate cuts s to at most max bytes on a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(truncMarker)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncMarker
}

// Clone returns a deep copy of e, so a copy handed to subscribers never
// shares maps or slices with the caller's event.
func (e *Event) Clone() Event {
	c := *e
	if e.Actor != nil {
		a := *e.Actor
		a.Groups = slices.Clone(e.Actor.Groups)
		c.Actor = &a
	}
	c.Reasons = slices.Clone(e.Reasons)
	if e.Usage != nil {
		u := *e.Usage
		c.Usage = &u
	}
	if e.Client != nil {
		cl := *e.Client
		c.Client = &cl
	}
	c.Masked = maps.Clone(e.Masked)
	c.Unscanned = slices.Clone(e.Unscanned)
	c.Details = maps.Clone(e.Details)
	return c
}

// Filter selects events for tail, follow and export views. Zero fields
// match everything.
type Filter struct {
	// Types matches any of the listed types; "request.*" matches every
	// type starting with "request.".
	Types []Type
	// Actor matches the actor's subject or email, under any issuer.
	Actor string
	// Issuer matches the actor's issuer (its configured name, exactly):
	// with Actor, one person, as two IdPs may each have an "alice".
	Issuer string
	// Grant and Request match the event's grant or request id.
	Grant   string
	Request string
	// Since matches events at or after this time.
	Since time.Time
}

// Match reports whether e passes every set field of f.
func (f Filter) Match(e Event) bool {
	if len(f.Types) > 0 && !slices.ContainsFunc(f.Types, func(t Type) bool { return t.matches(e.Type) }) {
		return false
	}
	if f.Actor != "" && (e.Actor == nil || (e.Actor.Subject != f.Actor && e.Actor.Email != f.Actor)) {
		return false
	}
	if f.Issuer != "" && (e.Actor == nil || e.Actor.Issuer != f.Issuer) {
		return false
	}
	if f.Grant != "" && e.Grant != f.Grant {
		return false
	}
	if f.Request != "" && e.Request != f.Request {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	return true
}

// matches reports whether the pattern t ("proxy.call" or "request.*")
// matches the type got.
func (t Type) matches(got Type) bool {
	if prefix, ok := strings.CutSuffix(string(t), "*"); ok {
		return strings.HasPrefix(string(got), prefix)
	}
	return t == got
}
