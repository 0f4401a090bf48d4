// Package broker is pamctl's control plane: who you are (OIDC login into a
// broker session), what you may ask for (just-in-time access requests under
// policy), who must agree (reviews by distinct approvers, never the
// requester), and the short-lived scoped token that results. It owns the
// domain types (Identity, Request, Review) and the Service; storage, HTTP and
// the CLI sit outside and talk to it through small interfaces.
package broker

import (
	"context"
	"errors"
	"time"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/policy"
)

// Identity is a verified principal: a person or a workload.
type Identity struct {
	Subject string   `json:"subject"`
	Display string   `json:"display,omitempty"` // name shown to people (display_claims); never used for decisions
	Email   string   `json:"email,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	Issuer  string   `json:"issuer"` // name of the trusted issuer ("unix-socket" for the admin socket)
	// IssuerURL is the URL of the issuer that vouched, as configured at
	// login: the identity counts only while an issuer of the same name
	// and URL is configured (a dev data dir's "dev" sessions must not
	// revive under a production issuer that happens to be named dev).
	IssuerURL string `json:"issuer_url,omitempty"`
	Kind      string `json:"kind,omitempty"`    // user | service
	Act       string `json:"act,omitempty"`     // the person a workload acts for
	ActFor    string `json:"act_for,omitempty"` // who Act is at a person issuer (the issuer's act_people)
	// AuthTime is when this person last authenticated at the IdP (the ID
	// token's auth_time, or the time of the login that made the session).
	// It is set per call by whoever authenticated the caller (API session,
	// web UI session) and never stored with requests: step-up before
	// sensitive actions compares it with approvals.reauth_after.
	AuthTime time.Time `json:"-"`
	// NoAuthTime says why AuthTime is zero for a session that cannot
	// step up (NoAuthTimeAgent, NoAuthTimeIdP; "" when unknown), for the
	// step-up error's advice. Set per call like AuthTime, never stored.
	NoAuthTime string `json:"-"`
	// Session is the id of the broker session the call came with (ses_…
	// for the API, web_… for the web page; "" for the admin socket and
	// in-process callers), and Via how it reached the broker: ViaCLI,
	// ViaWeb or ViaSocket. Set per call like AuthTime, never stored; the
	// audit events of what the caller does carry them (sessionDetails),
	// so an approval or a minted token traces to the session behind it.
	Session string `json:"-"`
	Via     string `json:"-"`
}

// How a person's call reached the broker (Identity.Via, details.via in the
// audit trail); the admin socket's is ViaSocket.
const (
	ViaCLI = "cli" // the API, with a session token (pamctl login)
	ViaWeb = "web" // the web approval page, with its cookie
)

// sessionDetails adds who's session id and channel to an event's details
// (d may be nil): key is "session", or "actor_session" on events whose
// "session" names the session acted on (session.revoked).
func sessionDetails(d map[string]string, who Identity, key string) map[string]string {
	if who.Session == "" && who.Via == "" {
		return d
	}
	if d == nil {
		d = map[string]string{}
	}
	if who.Session != "" {
		d[key] = who.Session
	}
	if who.Via != "" {
		d["via"] = who.Via
	}
	return d
}

// VerifiedIdentity is the identity a verified ID token carries.
func VerifiedIdentity(id oidc.Identity) Identity {
	return Identity{Subject: id.Subject, Display: id.Display, Email: id.Email, Groups: id.Groups,
		Issuer: id.Issuer, IssuerURL: id.IssuerURL, Kind: id.Kind, Act: id.Act, ActFor: id.ActFor}
}

// Same reports whether two identities are the same principal: the same
// subject from the same issuer, named alike and, when both record it, at
// the same URL (an issuer name repointed to another IdP vouches for other
// people under the same subjects). An identity without the URL matches by
// name: one read from an access token's claims (which name the issuer
// only; the token works only while its grant's issuer is trusted), or a
// record from before URLs were kept (untrusted: Service.distrust).
func (i Identity) Same(o Identity) bool {
	return i.Subject == o.Subject && i.Issuer == o.Issuer &&
		(i.IssuerURL == "" || o.IssuerURL == "" || i.IssuerURL == o.IssuerURL)
}

func (i Identity) policySubject() policy.Subject {
	return policy.Subject{ID: i.Subject, Email: i.Email, Groups: i.Groups, Issuer: i.Issuer, Kind: i.Kind, Act: i.Act, ActFor: i.ActFor}
}

// State is where a request is in its life.
type State string

// Request states: pending -> approved | denied | expired; approved -> revoked | expired.
const (
	StatePending  State = "pending"
	StateApproved State = "approved"
	StateDenied   State = "denied"
	StateExpired  State = "expired"
	StateRevoked  State = "revoked"
)

// Request kinds.
const (
	KindAccess = "access" // a JIT grant of scopes
	KindPrompt = "prompt" // a proxied call held by a require_approval rule
)

// Review is one approver's decision.
type Review struct {
	Reviewer Identity  `json:"reviewer"`
	Approve  bool      `json:"approve"`
	Reason   string    `json:"reason,omitempty"`
	Scopes   []string  `json:"scopes,omitempty"` // narrowed scopes, if the approver narrowed them
	At       time.Time `json:"at"`
}

// PromptHold describes a proxied call waiting for a human.
type PromptHold struct {
	Rule     string `json:"rule"`
	Model    string `json:"model"`
	Method   string `json:"method,omitempty"` // HTTP; empty when the proxy did not say (see Call)
	Endpoint string `json:"endpoint"`
	Excerpt  string `json:"excerpt"` // masked
	// Matches are the pieces of the Excerpt with the places in the call
	// the rule matched in each (the Excerpt's text names them too, on
	// lines a prompt could imitate: shown apart from the text, these
	// cannot be), and MatchSummary its count line when it has one
	// (proxy.HoldRequest). Empty for a tool call, an unscanned rule, and
	// a hold from a proxy older than these fields.
	Matches      []HeldMatch `json:"matches,omitempty"`
	MatchSummary string      `json:"match_summary,omitempty"`
	SHA256       string      `json:"prompt_sha256"`
	// CallSHA256 is the digest of the call as it would go upstream (its
	// method, query string, the headers its body is read by, and whole
	// body, after redaction and masking): a late
	// approval's retry must match it too. The prompt's digest is of its
	// words in order only, so it took the same words sent as a system
	// message, split into a forged assistant turn, or with other tools or
	// parameters, for the call the approvers released. Empty for a held
	// tool call (the model proposes the same call in another exchange).
	CallSHA256 string `json:"call_sha256,omitempty"`
	GrantID    string `json:"grant"`
	// TokenID is the jti of the access token the held call was made with
	// (Hold.TokenID): every prompt.* event of the call names it as
	// actor.token_id, whichever path writes it (the waiting caller, a
	// revoke, the sweep, a reload). Empty in a hold recorded by a build
	// older than this field.
	TokenID string `json:"token_id,omitempty"`
	// Tool and Arguments are set when a tool_call rule held a tool call
	// the model proposed: the tool's name and its arguments, masked and
	// cut to about 1 KiB (docs/tools.md).
	Tool      string `json:"tool,omitempty"`
	Arguments string `json:"arguments,omitempty"`
	// AlsoApprovedBy lists the approvers of every other require_approval
	// rule that matched: whoever releases the call must be one of each.
	AlsoApprovedBy []policy.Subjects `json:"also_approved_by,omitempty"`
	// AlsoRules names those other rules, so that a review is checked
	// against their approvers as configured at review time.
	AlsoRules []string `json:"also_rules,omitempty"`
	// Used marks the one retry an approval given after the caller stopped
	// waiting allows (until the request's ExpiresAt: approval + TTL, and a
	// prompt review's TTL is the retry window).
	Used bool `json:"used,omitempty"`
}

// HeldMatch is a piece of a held prompt's excerpt: Text, the masked prompt
// around one or more matches of the rule, and Where, the places in the
// call they are in ("messages[2] (system)", "tools[1].function.description").
type HeldMatch struct {
	Where []string `json:"where"`
	Text  string   `json:"text"`
}

// MethodNotReported is how a held call whose proxy did not send its
// method (PromptHold.Method empty) shows it.
const MethodNotReported = "(method not reported)"

// Call is the held call as approvers are shown it: its method and path,
// "POST /v1/chat/completions", or the path after MethodNotReported when
// the proxy that held it did not say which method (one older than the
// method field): never a guessed one. A late approval is bound to the
// method all the same, by CallSHA256.
func (p *PromptHold) Call() string {
	if p.Method == "" {
		return MethodNotReported + " " + p.Endpoint
	}
	return p.Method + " " + p.Endpoint
}

// Request is a just-in-time access request and, once approved, the grant.
type Request struct {
	ID           string        `json:"id"`
	Kind         string        `json:"kind"`
	Requester    Identity      `json:"requester"`
	Scopes       []string      `json:"scopes"`
	TTL          time.Duration `json:"ttl"`
	Clamped      bool          `json:"clamped,omitempty"`
	Reason       string        `json:"reason,omitempty"`
	State        State         `json:"state"`
	Policies     []string      `json:"policies,omitempty"`
	Approval     policy.Terms  `json:"approval"` // fixed at creation; re-checked against the current policies on review
	Limits       policy.Limits `json:"limits"`
	Reviews      []Review      `json:"reviews,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	PendingUntil time.Time     `json:"pending_until"`
	ApprovedAt   *time.Time    `json:"approved_at,omitempty"`
	ExpiresAt    *time.Time    `json:"expires_at,omitempty"` // grant expiry: approval + TTL
	EndedAt      *time.Time    `json:"ended_at,omitempty"`   // denied, expired or revoked
	EndedBy      *Identity     `json:"ended_by,omitempty"`
	// EndReason says why a grant ended before its time without anyone
	// ending it: the policies no longer grant it, or an issuer no longer
	// vouches for its requester or an approver.
	EndReason string      `json:"end_reason,omitempty"`
	Prompt    *PromptHold `json:"prompt,omitempty"`
}

// Approvals counts the distinct people who approved, as policy.Satisfied
// counts them: two accounts with one email (or a workload and the person
// it acts for) are one.
func (r *Request) Approvals() int {
	n := 0
	for i, rv := range r.Reviews {
		if !rv.Approve {
			continue
		}
		dup := false
		for _, prev := range r.Reviews[:i] {
			if prev.Approve && policy.SamePerson(prev.Reviewer.policySubject(), rv.Reviewer.policySubject()) {
				dup = true
				break
			}
		}
		if !dup {
			n++
		}
	}
	return n
}

// RequestStore persists requests. Update runs fn on the stored request inside
// one transaction (compare-and-swap): fn may refuse by returning an error, in
// which case nothing changes. A store shared by replicas (etcd) runs fn again
// on the newer record when another replica wrote it meanwhile, so fn decides
// from r alone and sets what it reports outside on every path.
type RequestStore interface {
	CreateRequest(ctx context.Context, r *Request) error
	GetRequest(ctx context.Context, id string) (*Request, error)
	UpdateRequest(ctx context.Context, id string, fn func(*Request) error) (*Request, error)
}

// RequestIndex answers the Service's hot-path lookups. A backend keeps an
// index for each, written with the record in one transaction, so a lookup
// touches the requests it returns and not the history around them: its
// cost does not grow with the number of requests ever made. Results come
// in no particular order.
type RequestIndex interface {
	// RequestsInState returns the requests in state; with by set, only
	// those by made. Callers ask for live states (pending, approved).
	RequestsInState(ctx context.Context, state State, by *Identity) ([]*Request, error)
	// RequestsOf returns every stored request who made, reviewed or ended.
	RequestsOf(ctx context.Context, who Identity) ([]*Request, error)
	// DueRequests returns the requests whose time ran out at or before t:
	// pending ones by PendingUntil, approved ones by ExpiresAt.
	DueRequests(ctx context.Context, t time.Time) ([]*Request, error)
	// GrantsExpiringAfter returns the requests that were ever approved
	// (ApprovedAt set) and whose ExpiresAt is after t, in any state.
	GrantsExpiringAfter(ctx context.Context, t time.Time) ([]*Request, error)
}

// RequestPruner deletes requests that have ended.
type RequestPruner interface {
	// PruneRequests deletes the requests that are over (any state but
	// pending and approved) and settled before t: ended (EndedAt) and, for
	// a grant, past its ExpiresAt too, so a revoked grant is kept while
	// its tokens could still be presented. It returns how many it deleted.
	PruneRequests(ctx context.Context, before time.Time) (int, error)
}

// Store is everything the Service persists. A revocation is the request's
// state (revoked), written in the same transaction as the rest of it, so
// it survives restarts with nothing else to keep in step.
type Store interface {
	RequestStore
	RequestIndex
	RequestPruner
	SessionStore
}

// ErrNotFound means there is no request with that id.
var ErrNotFound = errors.New("broker: no such request")
