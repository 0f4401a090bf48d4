package broker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/token"
)

// IDTokenVerifier verifies an OIDC ID token from a trusted issuer
// (broker/oidc.Verifier implements it).
type IDTokenVerifier interface {
	Verify(ctx context.Context, rawIDToken, nonce string) (oidc.Identity, error)
}

// LoginVerifier is an IDTokenVerifier that can also use the access token of
// an interactive login (issuers whose groups come from userinfo).
type LoginVerifier interface {
	VerifyLogin(ctx context.Context, rawIDToken, nonce, accessToken string) (oidc.Identity, error)
}

var _ LoginVerifier = (*oidc.Verifier)(nil)

// IssuerTrust is an IDTokenVerifier that names the issuers it trusts.
// Sessions and grants of identities from any other issuer no longer stand:
// an issuer removed from the config, one whose name now points at another
// URL, or the dev issuer of a data dir that was once served with --dev. A
// verifier without it trusts every issuer.
type IssuerTrust interface {
	// Trusts reports whether an issuer named name is configured at url.
	Trusts(name, url string) bool
}

var _ IssuerTrust = (*oidc.Verifier)(nil)

// distrust says why identities of id's issuer no longer count ("" when
// they do): the admin socket's always do; an issuer's only while one of
// that name is configured at the URL that vouched. Identities recorded
// before pamctl kept the URL (none) no longer count: nothing says which
// issuer of that name vouched for them.
func (s *Service) distrust(id Identity) string {
	if id.Same(AdminIdentity) && id.IssuerURL == "" {
		return ""
	}
	t, ok := s.idTokens.(IssuerTrust)
	switch {
	case !ok || t.Trusts(id.Issuer, id.IssuerURL):
		return ""
	case id.IssuerURL == "":
		return fmt.Sprintf("identity provider %q (a login recorded without its URL, before this pamctl) is no longer trusted", id.Issuer)
	default:
		return fmt.Sprintf("identity provider %q at %s is no longer trusted", id.Issuer, id.IssuerURL)
	}
}

// Notifier is told about new requests and decisions (a webhook). It must not block.
type Notifier interface {
	Notify(ctx context.Context, r *Request, event string)
}

// RuleApprovers says who may release calls held by a require_approval
// prompt rule, as the rules are configured now. The proxy's rules are
// swapped on reload; the broker asks this at review time, so removing an
// approver (or the rule) takes effect on calls already held.
type RuleApprovers interface {
	// RuleApprovers returns the approvers of the require_approval rule
	// name; ok is false when no such rule is configured (any more).
	RuleApprovers(name string) (approvers policy.Subjects, ok bool)
}

// RuleApproverMap is a RuleApprovers built from a config's rules: rule
// name -> approvers, require_approval rules only.
type RuleApproverMap map[string]policy.Subjects

// RuleApprovers implements RuleApprovers.
func (m RuleApproverMap) RuleApprovers(name string) (policy.Subjects, bool) {
	a, ok := m[name]
	return a, ok
}

// Config wires a Service.
type Config struct {
	Store    Store
	IDTokens IDTokenVerifier
	Keys     *token.Keyring
	Issuer   string // iss of minted tokens: the broker's URL
	Audit    audit.Sink
	Policies policy.Set
	// Rules says who may release held calls now; without it no held call
	// can be released (fail closed).
	Rules    RuleApprovers
	Notifier Notifier // optional
	Logger   *slog.Logger
	Now      func() time.Time
	// SessionTTL is a broker session's absolute lifetime (default and cap
	// 8h): sessions.max_lifetime in the config.
	SessionTTL time.Duration
	// IdleTimeout ends a session unused for this long (sessions.idle_timeout);
	// zero means DefaultIdleTimeout, negative means none.
	IdleTimeout time.Duration
	// PromptRetryWindow is how long an approval that came after the held
	// caller gave up lets the identical prompt through once (default 10m).
	PromptRetryWindow time.Duration
	// ReauthAfter is approvals.reauth_after: how recent an IdP
	// authentication approving, denying, revoking another person's grant
	// and reading the audit trail need (zero: DefaultReauthAfter).
	ReauthAfter time.Duration
	// RequestRetention is how long a request that is over (denied,
	// expired, revoked) stays in the store; PruneRequests deletes older
	// ones. Zero keeps them forever.
	RequestRetention time.Duration
}

// Service is the broker. It is safe for concurrent use.
type Service struct {
	store    Store
	idTokens IDTokenVerifier
	keys     *token.Keyring
	minter   *token.Minter
	sessions *token.Verifier
	audit    audit.Sink
	notifier Notifier
	log      *slog.Logger
	now      func() time.Time

	sessionTTL   time.Duration
	idleTimeout  time.Duration // <= 0: none
	liveSessions sync.Map      // session id -> *liveSession (see Authenticate)
	retryWindow  time.Duration
	retention    time.Duration
	policies     atomic.Pointer[policy.Set]
	rules        atomic.Pointer[RuleApprovers]
	reauthAfter  atomic.Int64 // time.Duration; see StepUp

	revoked sync.Map // grant id -> until (time.Time)

	mu      sync.Mutex
	waiters map[string][]chan struct{} // request id -> closed on any change

	stopping     chan struct{} // closed by Stop: waits return at once
	stoppingOnce sync.Once

	stranded strandedScan // when endStrandedHeld next looks

	// refusals bounds review.refused events (reviewRefused).
	refusals refusalLimiter
}

// strandedScan paces endStrandedHeld: it looks at every pending held call
// on the first sweep, then every strandedEvery, and on the next tick
// after ending the calls of an ended grant failed (dirty), until a look
// succeeds.
type strandedScan struct {
	mu    sync.Mutex
	next  time.Time
	dirty bool
	marks uint64 // markStranded calls: one during a look keeps dirty set
}

// strandedEvery is how often endStrandedHeld looks when nothing failed:
// it is for calls a failure or a stop left behind, which the sweep's own
// failures (dirty) otherwise bring it to.
const strandedEvery = 30 * time.Second

// Stop makes every Wait (long-polls, held prompts) return now, so a
// graceful shutdown is not held up by people who have not decided yet.
func (s *Service) Stop() { s.stoppingOnce.Do(func() { close(s.stopping) }) }

// New builds a Service and loads the persisted revocations.
func New(ctx context.Context, c Config) (*Service, error) {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SessionTTL <= 0 || c.SessionTTL > MaxSessionTTL {
		c.SessionTTL = MaxSessionTTL
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.PromptRetryWindow <= 0 {
		c.PromptRetryWindow = 10 * time.Minute
	}
	s := &Service{
		store: c.Store, idTokens: c.IDTokens, keys: c.Keys, audit: c.Audit, notifier: c.Notifier,
		log: c.Logger, now: c.Now, sessionTTL: c.SessionTTL, idleTimeout: c.IdleTimeout, retryWindow: c.PromptRetryWindow, retention: c.RequestRetention,
		minter:   &token.Minter{Keys: c.Keys, Issuer: c.Issuer, Now: c.Now},
		sessions: &token.Verifier{Keys: c.Keys, Issuer: c.Issuer, Audience: token.AudienceBroker, Use: token.UseSession, Now: c.Now},
		waiters:  map[string][]chan struct{}{},
		stopping: make(chan struct{}),
	}
	s.policies.Store(&c.Policies)
	s.SetRuleApprovers(c.Rules)
	s.SetReauthAfter(c.ReauthAfter)
	// Grants that ended early (revoked, or ended by a policy change) keep
	// their tokens refused until those tokens would have expired anyway.
	grants, err := c.Store.GrantsExpiringAfter(ctx, s.now().Add(-time.Minute))
	if err != nil {
		return nil, fmt.Errorf("broker: load revocations: %w", err)
	}
	for _, r := range grants {
		if r.Kind == KindAccess && r.State != StateApproved {
			s.revoked.Store(r.ID, *r.ExpiresAt)
		}
	}
	// The config may have changed while the server was down.
	if err := s.endOrphanedGrants(ctx, "start"); err != nil {
		return nil, fmt.Errorf("broker: check grants against policy: %w", err)
	}
	return s, nil
}

// SetPolicies swaps the policy set (config reload). Pending requests keep
// the approval terms they were created with and are re-checked against the
// new set on review. Live grants that the new set no longer grants end at
// once: they mint no more tokens, the proxy refuses their tokens, and the
// end is audited as an expiry (see docs/policy.md). Should that fail (a
// storage error), the sweep retries within seconds and Token refuses such
// grants meanwhile.
func (s *Service) SetPolicies(p policy.Set) {
	s.policies.Store(&p)
	if err := s.endOrphanedGrants(context.Background(), "config reload"); err != nil {
		s.log.Error("ending grants the new policies no longer allow failed; the sweep will retry", "err", err)
	}
}

// SetRuleApprovers swaps who may release held calls (config reload).
func (s *Service) SetRuleApprovers(r RuleApprovers) {
	if r == nil {
		r = RuleApproverMap(nil)
	}
	s.rules.Store(&r)
}

func (s *Service) ruleApprovers(name string) (policy.Subjects, bool) {
	return (*s.rules.Load()).RuleApprovers(name)
}

// stillGranted reports whether the live grant r still stands under the
// current policies.
// StillGranted reports whether the approved grant r still counts: today's
// policies give its scopes to its requester, and its requester and
// approvers come from trusted issuers; why says what ended it. Token
// asks it of every grant it mints for; whatever else admits on a grant
// (proxy enrollment) must ask it too.
func (s *Service) StillGranted(r *Request) (ok bool, why string) { return s.stillGranted(r) }

func (s *Service) stillGranted(r *Request) (bool, string) {
	if why := s.untrusted(r); why != "" {
		return false, why
	}
	return s.policySet().StillGrants(r.Policies, r.Requester.policySubject(), r.Scopes)
}

// untrusted says why r's requester or an approver no longer counts: their
// issuer is not trusted; "" when all are.
func (s *Service) untrusted(r *Request) string {
	if why := s.distrust(r.Requester); why != "" {
		return "the requester's " + why
	}
	for _, rv := range r.Reviews {
		if why := s.distrust(rv.Reviewer); rv.Approve && why != "" {
			return fmt.Sprintf("approver %s's %s", rv.Reviewer.Subject, why)
		}
	}
	return ""
}

// endOrphanedGrants ends every live grant the current policies no longer
// grant: state expired (so no token is minted), its id in the revocation
// set (so the proxy refuses tokens already out), one request.expired event
// each with the reason.
func (s *Service) endOrphanedGrants(ctx context.Context, why string) error {
	now := s.now().UTC()
	live, err := s.store.RequestsInState(ctx, StateApproved, nil)
	if err != nil {
		return err
	}
	orphans := slices.DeleteFunc(live, func(r *Request) bool {
		if r.Kind != KindAccess || r.ExpiresAt == nil || !now.Before(*r.ExpiresAt) {
			return true
		}
		ok, _ := s.stillGranted(r)
		return ok
	})
	var errs []error
	for _, o := range orphans {
		// Refuse its tokens first: if recording the end fails, the proxy
		// refuses them anyway and the sweep records it later.
		s.revoked.Store(o.ID, *o.ExpiresAt)
		var reason, cause string
		stands := false
		r, err := s.store.UpdateRequest(ctx, o.ID, func(r *Request) error {
			if r.State != StateApproved {
				return errRaced
			}
			ok, why := s.stillGranted(r)
			if ok { // another reload restored it meanwhile
				stands = true
				return errRaced
			}
			reason, cause = why, "policy"
			if s.untrusted(r) != "" {
				cause = "issuer"
			}
			r.State = StateExpired
			r.EndedAt = &now
			r.EndReason = why
			return nil
		})
		if stands {
			s.revoked.Delete(o.ID)
		}
		if errors.Is(err, errRaced) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.emit(ctx, &audit.Event{Type: audit.TypeRequestExpired, Target: r.Requester.Subject, Request: r.ID, Grant: r.ID, Decision: "expired",
			Reasons: []string{reason}, Details: map[string]string{"what": "grant", "cause": cause, "trigger": why}})
		s.wake(r.ID)
		s.notify(ctx, r, "request.expired")
		s.endHeldCalls(ctx, r)
	}
	return errors.Join(errs...)
}

func (s *Service) policySet() policy.Set { return *s.policies.Load() }

// IsRevoked reports whether a grant's tokens must be refused. The proxy calls
// it on every request; it is an in-memory lookup.
func (s *Service) IsRevoked(grantID string) bool {
	_, ok := s.revoked.Load(grantID)
	return ok
}

// Session is a broker session handed to the CLI after login: the token
// names the session the broker records (see SessionRecord).
type Session struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	Identity  Identity  `json:"identity"`
	ExpiresAt time.Time `json:"expires_at"`
	// IdleTimeout ends the session earlier when it goes unused this long
	// (zero: no idle timeout).
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
}

// Login verifies an ID token from a trusted issuer, people's and workloads'
// alike, and opens a broker session recorded with the client's address and
// user agent.
func (s *Service) Login(ctx context.Context, rawIDToken, nonce string, client audit.Client) (*Session, error) {
	return s.LoginWithAccessToken(ctx, rawIDToken, nonce, "", client)
}

// LoginWithAccessToken is Login with the login's access token, which the
// verifier uses for issuers whose groups come from the userinfo endpoint.
func (s *Service) LoginWithAccessToken(ctx context.Context, rawIDToken, nonce, accessToken string, client audit.Client) (*Session, error) {
	var id oidc.Identity
	var err error
	if lv, ok := s.idTokens.(LoginVerifier); ok {
		id, err = lv.VerifyLogin(ctx, rawIDToken, nonce, accessToken)
	} else {
		id, err = s.idTokens.Verify(ctx, rawIDToken, nonce)
	}
	if err != nil {
		msg := oidcReason(err)
		s.emit(ctx, &audit.Event{Type: audit.TypeLoginFailed, Decision: "deny", Reasons: []string{oidcReason(err)}, Client: &client})
		return nil, &Error{Code: CodeUnauthenticated, Message: msg, Err: err}
	}
	who := VerifiedIdentity(id)
	now := s.now().UTC().Truncate(time.Second)
	if err := s.RedeemIDToken(ctx, rawIDToken, id, client); err != nil {
		return nil, err
	}
	exp := now.Add(s.sessionTTL)
	if who.Kind == oidc.KindService && !id.Expiry.IsZero() && id.Expiry.Before(exp) {
		// A workload's short-lived token (CI job, Kubernetes) must not
		// become a long broker session.
		exp = id.Expiry.UTC().Truncate(time.Second)
	}
	rec, err := s.openSession(ctx, who, client, now, loginAuthTime(id.AuthTime, now), exp)
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "could not open a session", Err: err}
	}
	raw, err := s.minter.Mint(token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{ID: rec.ID, Subject: who.Subject, Audience: jwt.ClaimStrings{token.AudienceBroker}, ExpiresAt: jwt.NewNumericDate(exp)},
		Use:              token.UseSession, Email: who.Email, Name: who.Display, Groups: who.Groups, Kind: who.Kind, IdP: who.Issuer, Act: actClaim(who),
	})
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "could not open a session", Err: err}
	}
	s.emit(ctx, &audit.Event{Type: audit.TypeLogin, Actor: actor(who), Decision: "allow", Client: &client, Details: map[string]string{"session": rec.ID, "expires": exp.Format(time.RFC3339)}})
	return &Session{ID: rec.ID, Token: raw, Identity: who, ExpiresAt: exp, IdleTimeout: max(s.idleTimeout, 0)}, nil
}

// RedeemIDToken records that the verified ID token raw (whose identity is
// id) opened a session, and refuses it, audited, when it already has: a
// person's ID token opens one session, in the CLI or the web UI. Its
// nonce is in it, so the nonce check alone would let a captured token (a
// proxy log, a shared terminal) open sessions until it expires.
// Workloads' tokens are bearer credentials their platform hands every
// step of a job, and may log in again.
func (s *Service) RedeemIDToken(ctx context.Context, raw string, id oidc.Identity, client audit.Client) error {
	if id.Kind != oidc.KindUser {
		return nil
	}
	now := s.now().UTC().Truncate(time.Second)
	first, err := s.store.RedeemLogin(ctx, idTokenDigest(raw), now, cmp.Or(id.Expiry, now.Add(24*time.Hour)).Add(redeemSkew))
	if err != nil {
		return &Error{Code: CodeInternal, Message: "could not open a session", Err: err}
	}
	if !first {
		const why = "this ID token has already opened a session; an ID token logs in once"
		s.emit(ctx, &audit.Event{Type: audit.TypeLoginFailed, Actor: actor(VerifiedIdentity(id)), Decision: "deny", Reasons: []string{why}, Client: &client})
		return loginAgain(why)
	}
	return nil
}

// redeemSkew keeps a redeemed ID token on record past its expiry, for
// replicas whose clocks run behind.
const redeemSkew = 5 * time.Minute

// idTokenDigest names an ID token for RedeemLogin: the SHA-256 of its
// signed part (header and payload), whose text is one per token because
// the verifier admits only canonical base64url. The signature is left
// out: an ECDSA signature's s and n-s both verify, so a digest over it
// would let one token pass for two.
func idTokenDigest(raw string) string {
	if i := strings.LastIndexByte(raw, '.'); i >= 0 {
		raw = raw[:i]
	}
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// loginAuthTime is the authentication time a login records: the ID token's
// auth_time, but never later than the login itself (an auth_time in the
// future, from a broken or hostile IdP clock, cannot make a session look
// freshly authenticated for longer than it is). None stays none (zero):
// nothing shows the IdP authenticated the person rather than reusing its
// own session, so the session cannot pass step-up (the verifier fills it
// in for issuers with step_up_without_auth_time).
func loginAuthTime(authTime, now time.Time) time.Time {
	switch {
	case authTime.IsZero():
		return time.Time{}
	case authTime.After(now):
		return now
	}
	return authTime.UTC().Truncate(time.Second)
}

// oidcReason is the user-safe account of why an ID token was refused.
func oidcReason(err error) string {
	var ve *oidc.VerifyError
	if errors.As(err, &ve) {
		return ve.Error()
	}
	return "the identity token could not be verified"
}

// Ask is what a requester asks for.
type Ask = policy.Ask

// CreateRequest evaluates policy and records a request: refused at once when
// a scope is outside the caller's policy, approved at once when no approval
// is needed, pending otherwise.
func (s *Service) CreateRequest(ctx context.Context, who Identity, ask Ask) (*Request, error) {
	if len(ask.Scopes) == 0 {
		return nil, errorf(CodeInvalid, "name at least one scope, e.g. --scope model:gpt-4o")
	}
	for _, sc := range ask.Scopes {
		if err := token.ValidScope(sc); err != nil {
			return nil, &Error{Code: CodeInvalid, Message: err.Error()}
		}
	}
	if ask.TTL < 0 {
		return nil, errorf(CodeInvalid, "--ttl must be positive")
	}
	d := policy.Evaluate(s.policySet(), who.policySubject(), ask)
	if !d.Allow {
		s.emit(ctx, &audit.Event{Type: audit.TypeRequestCreated, Actor: actor(who), Target: strings.Join(ask.Scopes, " "), Decision: "deny", Reasons: d.Reasons})
		return nil, &Error{Code: CodeForbidden, Message: strings.Join(d.Reasons, "; ")}
	}
	now := s.now().UTC()
	r := &Request{
		ID: newRequestID(), Kind: KindAccess, Requester: who, Scopes: d.Scopes, TTL: d.TTL, Clamped: d.Clamped,
		Reason: ask.Reason, State: StatePending, Policies: d.Policies, Limits: d.Limits, CreatedAt: now,
		PendingUntil: now.Add(d.PendingTTL),
		Approval:     d.Terms(),
	}
	if !d.NeedsApproval {
		approve(r, now)
	}
	if err := s.store.CreateRequest(ctx, r); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "could not record the request", Err: err}
	}
	s.emit(ctx, &audit.Event{Type: audit.TypeRequestCreated, Actor: actor(who), Request: r.ID, Target: strings.Join(r.Scopes, " "), Decision: string(r.State), Reasons: d.Reasons, Details: map[string]string{"ttl": r.TTL.String(), "reason": r.Reason}})
	if r.State == StateApproved {
		// The actor is the requester: details.auto says no one reviewed
		// it, and the session and channel are the requester's.
		s.emit(ctx, &audit.Event{Type: audit.TypeRequestApproved, Actor: actor(who), Request: r.ID, Grant: r.ID, Decision: "approved", Reasons: []string{"policy " + strings.Join(d.Policies, ",") + " needs no approval"},
			Details: sessionDetails(map[string]string{"auto": "true"}, who, "session")})
	}
	s.notify(ctx, r, "request.created")
	return r, nil
}

func approve(r *Request, now time.Time) {
	r.State = StateApproved
	t := now
	exp := now.Add(r.TTL)
	r.ApprovedAt, r.ExpiresAt = &t, &exp
}

// canReview reports whether reviewer may review r, and why not: never the
// requester (same subject, same email, or the person a service account acts
// for), and only approvers of the request's terms and of its policies as
// they are configured now.
func (s *Service) canReview(r *Request, reviewer Identity) (bool, string) {
	ok, why := policy.CanReview(s.policySet(), r.Approval, r.Requester.policySubject(), reviewer.policySubject())
	if ok && r.Prompt != nil {
		for _, also := range r.Prompt.AlsoApprovedBy {
			if !also.Match(reviewer.policySubject()) {
				return false, "several rules hold this call; you are not an approver of all of them (also needed: " + also.String() + ")"
			}
		}
		// As for access requests, the rules in force now decide: an
		// approver or a rule removed by a reload can release nothing.
		for _, rule := range append([]string{r.Prompt.Rule}, r.Prompt.AlsoRules...) {
			now, found := s.ruleApprovers(rule)
			if !found {
				return false, fmt.Sprintf("rule %s, which held this call, is no longer configured to hold calls; the call cannot be released (the caller may retry it)", rule)
			}
			if !now.Match(reviewer.policySubject()) {
				return false, fmt.Sprintf("you are not an approver of rule %s as configured now (approvers: %s)", rule, now)
			}
		}
	}
	return ok, why
}

// visible reports whether who may see r: the requester, or an approver.
func (s *Service) visible(r *Request, who Identity) bool {
	if r.Requester.Same(who) {
		return true
	}
	ok, _ := s.canReview(r, who)
	return ok
}

// List returns, newest first, the live requests (pending or approved) who
// made or may review and, unless pendingOnly, every request who made,
// reviewed or ended that retention has kept. Requests that are over and
// that who took no part in are not listed: the audit trail has their story.
// Each part is read through an index, so a listing does not decode the
// whole history.
func (s *Service) List(ctx context.Context, who Identity, pendingOnly bool) ([]*Request, error) {
	now := s.now()
	states := []State{StatePending}
	if !pendingOnly {
		states = append(states, StateApproved)
	}
	var found []*Request
	for _, st := range states {
		rs, err := s.store.RequestsInState(ctx, st, nil)
		if err != nil {
			return nil, &Error{Code: CodeInternal, Message: "could not list requests", Err: err}
		}
		found = append(found, rs...)
	}
	if !pendingOnly {
		rs, err := s.store.RequestsOf(ctx, who)
		if err != nil {
			return nil, &Error{Code: CodeInternal, Message: "could not list requests", Err: err}
		}
		found = append(found, rs...)
	}
	seen := make(map[string]bool, len(found))
	var out []*Request
	for _, r := range found {
		if seen[r.ID] || !s.visible(r, who) || (pendingOnly && !now.Before(r.PendingUntil)) {
			continue
		}
		seen[r.ID] = true
		s.expireView(r, now)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// due reports whether r has run out of time as of now: a pending request
// past its pending TTL, or a grant past approval + TTL.
func due(r *Request, now time.Time) bool {
	return (r.State == StatePending && !now.Before(r.PendingUntil)) ||
		(r.State == StateApproved && r.ExpiresAt != nil && !now.Before(*r.ExpiresAt))
}

// expireView shows a request's state as of now even before the sweeper has
// recorded the expiry.
func (s *Service) expireView(r *Request, now time.Time) {
	if due(r, now) {
		r.State = StateExpired
	}
}

// Get returns one request visible to who.
func (s *Service) Get(ctx context.Context, who Identity, id string) (*Request, error) {
	r, err := s.store.GetRequest(ctx, id)
	if err != nil {
		return nil, s.storeErr(err)
	}
	if !s.visible(r, who) {
		return nil, ErrNotFound
	}
	s.expireView(r, s.now())
	return r, nil
}

// Stored reports whether the store holds request id, whoever may see
// it: the web UI waits for a held call's record, which follows its trail
// event (Hold writes the trail first), before telling pages to refresh.
func (s *Service) Stored(ctx context.Context, id string) (bool, error) {
	if _, err := s.store.GetRequest(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, s.storeErr(err)
	}
	return true, nil
}

func (s *Service) storeErr(err error) error {
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	var be *Error
	var su *StepUpError
	if errors.As(err, &be) || errors.As(err, &su) {
		return err
	}
	return &Error{Code: CodeInternal, Message: "storage error", Err: err}
}

// Wait blocks until request id leaves pending, ctx ends, or its pending time
// runs out, and returns it as it then is.
func (s *Service) Wait(ctx context.Context, who Identity, id string) (*Request, error) {
	return s.wait(ctx, who, id, "", nil)
}

// wait is Wait that also wakes when request also changes (a held call's
// grant; "" for none) and, each time it looks at the pending request,
// lets check end it: check returns the request as it then is, or nil to
// keep waiting.
func (s *Service) wait(ctx context.Context, who Identity, id, also string, check func(*Request) (*Request, error)) (*Request, error) {
	for {
		ch := s.subscribe(id)
		var ach chan struct{} // nil (never ready) without also
		if also != "" {
			ach = s.subscribe(also)
		}
		done := func() {
			s.unsubscribe(id, ch)
			if also != "" {
				s.unsubscribe(also, ach)
			}
		}
		r, err := s.Get(ctx, who, id)
		if err == nil && r.State == StatePending && check != nil {
			var cur *Request
			if cur, err = check(r); cur != nil {
				r = cur
			}
		}
		if err != nil || r.State != StatePending {
			done()
			return r, err
		}
		wait := r.PendingUntil.Sub(s.now())
		timer := time.NewTimer(wait)
		select {
		case <-ch:
		case <-ach:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			done()
			return r, nil
		case <-s.stopping:
			timer.Stop()
			done()
			return r, nil
		}
		timer.Stop()
		done()
	}
}

func (s *Service) subscribe(id string) chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	s.waiters[id] = append(s.waiters[id], ch)
	s.mu.Unlock()
	return ch
}

func (s *Service) unsubscribe(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, w := range ws {
		if w == ch {
			s.waiters[id] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(s.waiters[id]) == 0 {
		delete(s.waiters, id)
	}
}

func (s *Service) wake(id string) {
	s.mu.Lock()
	ws := s.waiters[id]
	delete(s.waiters, id)
	s.mu.Unlock()
	for _, ch := range ws {
		close(ch)
	}
}

// Review records reviewer's decision on request id. One deny ends the
// request; Count distinct approvals (or one break-glass approval) approve
// it. An approver may narrow the scopes, never widen them.
func (s *Service) Review(ctx context.Context, reviewer Identity, id string, approveIt bool, reason string, narrow []string) (*Request, error) {
	now := s.now().UTC()
	if approveIt {
		if err := s.heldGrantStands(ctx, reviewer, id); err != nil {
			return nil, err
		}
	}
	var decided bool
	var progress string  // what the approvals met, or what is still missing
	var refused *Request // the request a refusal below is about (audited)
	var cause string     // why: refusalSelf, refusalNotApprover, refusalStepUp
	r, err := s.store.UpdateRequest(ctx, id, func(r *Request) error {
		decided, progress, refused, cause = false, "", nil, "" // fn may run again on a newer record (see RequestStore)
		if !s.visible(r, reviewer) && !r.Requester.Same(reviewer) {
			refused, cause = r, refusalNotApprover
			return ErrNotFound
		}
		if ok, why := s.canReview(r, reviewer); !ok {
			refused, cause = r, refusalNotApprover
			if r.Requester.Same(reviewer) {
				cause = refusalSelf
			}
			return &Error{Code: CodeForbidden, Message: why}
		}
		s.expireView(r, now)
		if r.State != StatePending {
			if r.Kind == KindPrompt && r.EndReason != "" { // a held call that ended with its grant
				return errorf(CodeConflict, "held call %s is %s: %s; only pending requests can be reviewed", r.ID, r.State, r.EndReason)
			}
			return errorf(CodeConflict, "request %s is %s; only pending requests can be reviewed", r.ID, r.State)
		}
		if !r.Approval.Required {
			return errorf(CodeConflict, "request %s needs no approval", r.ID)
		}
		for _, prev := range r.Reviews {
			if prev.Reviewer.Same(reviewer) {
				return errorf(CodeConflict, "you already reviewed request %s; another approver must review it", r.ID)
			}
		}
		// Only someone whose review could count is asked to log in again.
		action := ActionApprove
		if !approveIt {
			action = ActionDeny
		}
		if err := s.StepUp(reviewer, action); err != nil {
			refused, cause = r, refusalStepUp
			return err
		}
		rv := Review{Reviewer: reviewer, Approve: approveIt, Reason: reason, At: now}
		if len(narrow) > 0 {
			if !approveIt {
				return errorf(CodeInvalid, "--scope narrows an approval; a deny takes no scope")
			}
			if !token.Subset(narrow, r.Scopes) {
				return errorf(CodeForbidden, "an approver may narrow scopes, never widen them: %s is not within %s", strings.Join(narrow, " "), strings.Join(r.Scopes, " "))
			}
			rv.Scopes = narrow
		}
		r.Reviews = append(r.Reviews, rv)
		if !approveIt {
			r.State = StateDenied
			r.EndedAt, r.EndedBy = &now, &reviewer
			decided = true
			return nil
		}
		if rv.Scopes != nil {
			r.Scopes = rv.Scopes
		}
		// A reload may have raised the count: the request shows, and
		// needs, the stricter (policy.Satisfied).
		r.Approval.Count = r.Approval.Needed(s.policySet())
		var approvers []policy.Subject
		for _, rv := range r.Reviews {
			if rv.Approve {
				approvers = append(approvers, rv.Reviewer.policySubject())
			}
		}
		ok, why := policy.Satisfied(s.policySet(), r.Approval, r.Requester.policySubject(), approvers)
		progress = why
		if ok {
			approve(r, now)
			decided = true
		}
		return nil
	})
	if err != nil {
		if refused != nil {
			s.reviewRefused(ctx, reviewer, refused, approveIt, cause, err)
		}
		return nil, s.storeErr(err)
	}
	typ, dec := audit.TypeRequestApproved, "pending"
	switch r.State {
	case StateApproved:
		dec = "approved"
	case StateDenied:
		typ, dec = audit.TypeRequestDenied, "denied"
	}
	s.emit(ctx, heldEvent(&audit.Event{Type: typ, Actor: actor(reviewer), Request: r.ID, Grant: grantOf(r), Target: r.Requester.Subject, Decision: dec, Reasons: nonEmpty(reason), Details: sessionDetails(map[string]string{"approvals": fmt.Sprintf("%d/%d", r.Approvals(), max(r.Approval.Count, 1)), "progress": progress}, reviewer, "session")}, r))
	s.wake(r.ID)
	if decided {
		s.notify(ctx, r, string(typ))
	}
	return r, nil
}

// heldGrantStands refuses approving the held call id when the grant it
// runs under has ended (heldGrantEnded): releasing it would send a call
// upstream on a grant that was revoked, expired or ended by policy while
// the call waited. Only someone who may review the call is told; a deny
// is always possible. A grant the store does not have is refused too. The
// release checks again (HoldPrompt): a grant that ends after this check
// releases nothing either.
func (s *Service) heldGrantStands(ctx context.Context, reviewer Identity, id string) error {
	r, err := s.store.GetRequest(ctx, id)
	if err != nil || r.Kind != KindPrompt || r.Prompt == nil || r.State != StatePending {
		return nil // Review says why, if anything is wrong
	}
	if ok, _ := s.canReview(r, reviewer); !ok {
		return nil
	}
	why, unknown, err := s.heldGrantEnded(ctx, r)
	if err != nil {
		return err
	}
	switch {
	case why == "":
		return nil
	case unknown:
		// Pruned, or never issued by this deployment: nothing would
		// release the call (HoldPrompt), so no approval is taken.
		return errorf(CodeConflict, "held call %s cannot be released: %s (the broker does not know it); deny it (pamctl deny %s) or let it expire", r.ID, why, r.ID)
	}
	return errorf(CodeConflict, "held call %s cannot be released: %s while it waited; deny it (pamctl deny %s) or let it expire, and the caller asks for a new grant", r.ID, why, r.ID)
}

func grantOf(r *Request) string {
	if r.State == StateApproved {
		return r.ID
	}
	return ""
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// Token mints an access token for an approved grant of who. id "" picks the
// newest live grant. The token expires with the grant.
func (s *Service) Token(ctx context.Context, who Identity, id string) (string, *Request, error) {
	r, err := s.grant(ctx, who, id)
	if err != nil {
		return "", nil, err
	}
	c := token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: who.Subject, Audience: jwt.ClaimStrings{token.AudienceProxy}, ExpiresAt: jwt.NewNumericDate(*r.ExpiresAt)},
		Use:              token.UseAccess, Scope: token.JoinScopes(r.Scopes), Req: r.ID, Email: who.Email, Groups: who.Groups, Kind: who.Kind, IdP: who.Issuer,
		Act: actClaim(who),
	}
	if r.Limits.RPM > 0 || r.Limits.Tokens > 0 {
		c.Limits = &token.Limits{RPM: r.Limits.RPM, Tokens: r.Limits.Tokens}
	}
	// The jti is chosen here so token.issued names it (details.token_id):
	// a proxy.call's actor.token_id then traces to the session that
	// minted the token.
	c.ID = token.NewID()
	raw, err := s.minter.Mint(c)
	if err != nil {
		return "", nil, &Error{Code: CodeInternal, Message: "could not mint a token", Err: err}
	}
	s.emit(ctx, &audit.Event{Type: audit.TypeTokenIssued, Actor: actor(who), Request: r.ID, Grant: r.ID, Target: c.Scope, Decision: "allow",
		Details: sessionDetails(map[string]string{"expires": r.ExpiresAt.Format(time.RFC3339), "token_id": c.ID}, who, "session")})
	return raw, r, nil
}

func (s *Service) grant(ctx context.Context, who Identity, id string) (*Request, error) {
	now := s.now()
	if id != "" {
		r, err := s.Get(ctx, who, id)
		if err != nil {
			return nil, err
		}
		if !r.Requester.Same(who) {
			return nil, errorf(CodeForbidden, "request %s belongs to %s; only the requester can use its token", r.ID, r.Requester.Subject)
		}
		if r.Kind != KindAccess {
			return nil, errorf(CodeInvalid, "%s is a held prompt, not an access grant; retry the call through the proxy", r.ID)
		}
		switch r.State {
		case StateApproved:
			if ok, why := s.stillGranted(r); !ok {
				return nil, errorf(CodeConflict, "grant %s has ended: %s; make a new request with: pamctl request --scope %s", r.ID, why, strings.Join(r.Scopes, " --scope "))
			}
			return r, nil
		case StatePending:
			return nil, &Error{Code: CodePending, Message: fmt.Sprintf("request %s is still pending approval (wait with: pamctl request --wait ... or ask an approver to run: pamctl approve %s)", r.ID, r.ID)}
		default:
			return nil, errorf(CodeConflict, "request %s is %s; make a new one with: pamctl request --scope %s", r.ID, r.State, strings.Join(r.Scopes, " --scope "))
		}
	}
	rs, err := s.store.RequestsInState(ctx, StateApproved, &who)
	if err != nil {
		return nil, s.storeErr(err)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].CreatedAt.After(rs[j].CreatedAt) })
	for _, r := range rs {
		if r.State == StateApproved && r.Kind == KindAccess && r.Requester.Same(who) && r.ExpiresAt != nil && now.Before(*r.ExpiresAt) {
			if ok, _ := s.stillGranted(r); ok {
				return r, nil
			}
		}
	}
	return nil, errorf(CodeNotFound, "you have no approved grant; ask for one with: pamctl request --scope model:gpt-4o")
}

// Revoke ends a grant: its tokens are refused by the proxy at once, and
// the calls held on it end (endHeldCalls). The
// requester, any approver of the request, or an admin may revoke; revoking
// another person's grant needs a recent login (StepUp) unless admin (the
// admin socket, or a caller that checked it already).
func (s *Service) Revoke(ctx context.Context, who Identity, id string, admin bool) (*Request, error) {
	now := s.now().UTC()
	r, err := s.store.UpdateRequest(ctx, id, func(r *Request) error {
		if !admin && !s.visible(r, who) {
			return ErrNotFound
		}
		if !admin && !r.Requester.Same(who) {
			if err := s.StepUp(who, ActionRevokeOther); err != nil {
				return err
			}
		}
		s.expireView(r, now)
		if r.Kind != KindAccess {
			return errorf(CodeInvalid, "%s is a held prompt, not a grant; deny it with: pamctl deny %s", r.ID, r.ID)
		}
		if r.State != StateApproved {
			return errorf(CodeConflict, "request %s is %s; only approved grants can be revoked", r.ID, r.State)
		}
		r.State = StateRevoked
		r.EndedAt, r.EndedBy = &now, &who
		return nil
	})
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.revoked.Store(r.ID, *r.ExpiresAt)
	s.emit(ctx, &audit.Event{Type: audit.TypeGrantRevoked, Actor: actor(who), Request: r.ID, Grant: r.ID, Target: r.Requester.Subject, Decision: "revoked", Details: sessionDetails(nil, who, "session")})
	s.wake(r.ID)
	s.notify(ctx, r, "grant.revoked")
	s.endHeldCalls(context.WithoutCancel(ctx), r)
	return r, nil
}

// Sweep records expiries: pending requests past their pending TTL and
// grants past approval + TTL, and ends the calls still held on grants that
// have ended (endStrandedHeld). serve runs it every few seconds.
func (s *Service) Sweep(ctx context.Context) error {
	err := s.sweepDue(ctx)
	return errors.Join(err, s.endStrandedHeld(ctx))
}

// endStrandedHeld ends the pending held calls whose grant has ended
// (endHeld) that ending them with the grant missed: the store failed then
// (endHeldCalls logs it), or the broker stopped in between. Such a call
// would otherwise stay in the approvers' queue, unapprovable, until its
// pending time ran out. The sweep runs it on every tick, so the call ends
// within a tick of the store answering again; until then the sweep fails
// (serve's expiry_sweep check, whose log names the held calls).
func (s *Service) endStrandedHeld(ctx context.Context) (err error) {
	now := s.now()
	marks, due := s.stranded.begin(now)
	if !due {
		return nil
	}
	defer func() { s.stranded.end(now, err != nil, marks) }()
	pending, err := s.store.RequestsInState(ctx, StatePending, nil)
	if err != nil {
		return fmt.Errorf("ending the calls held on ended grants: listing the pending requests: %w", err)
	}
	// One look at each grant: an agent may hold many calls on one.
	looked := map[string]heldVerdict{}
	var errs []error
	for _, r := range pending {
		if r.Kind != KindPrompt || r.Prompt == nil {
			continue
		}
		key := strings.Join([]string{r.Prompt.GrantID, r.Requester.Issuer, r.Requester.IssuerURL, r.Requester.Subject}, "\x00")
		v, ok := looked[key]
		if !ok {
			v.why, v.unknown, v.err = s.heldGrantEnded(ctx, r)
			looked[key] = v
		}
		if _, err := s.endHeldAs(ctx, r, nil, v); err != nil {
			errs = append(errs, fmt.Errorf("ending held call %s (grant %s): %w", r.ID, r.Prompt.GrantID, err))
		}
	}
	return errors.Join(errs...)
}

// markStranded brings endStrandedHeld to the next sweep: ending the calls
// held on an ended grant failed.
func (s *Service) markStranded() { s.stranded.mark() }

// begin says whether a look is due at now, and the marks it starts from.
func (st *strandedScan) begin(now time.Time) (marks uint64, due bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.marks, st.dirty || !now.Before(st.next)
}

// end records a look begun at now: the next is due strandedEvery on, or
// at the next tick when it failed or a failure was marked while it ran
// (that failure may be after what it read).
func (st *strandedScan) end(now time.Time, failed bool, marks uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.next, st.dirty = now.Add(strandedEvery), failed || st.marks != marks
}

// mark makes the next look due at the next tick.
func (st *strandedScan) mark() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.dirty = true
	st.marks++
}

// sweepDue records the expiries of Sweep.
func (s *Service) sweepDue(ctx context.Context) error {
	now := s.now().UTC()
	expired, err := s.store.DueRequests(ctx, now)
	if err != nil {
		return err
	}
	expired = slices.DeleteFunc(expired, func(r *Request) bool { return !due(r, now) })
	for _, d := range expired {
		was := d.State
		r, err := s.store.UpdateRequest(ctx, d.ID, func(r *Request) error {
			if r.State != was {
				return errRaced
			}
			r.State = StateExpired
			r.EndedAt = &now
			return nil
		})
		if errors.Is(err, errRaced) {
			continue
		}
		if err != nil {
			return err
		}
		what := "pending request"
		if was == StateApproved {
			what = "grant"
		}
		s.emit(ctx, heldEvent(&audit.Event{Type: audit.TypeRequestExpired, Target: r.Requester.Subject, Request: r.ID, Grant: grantOf(d), Decision: "expired", Details: map[string]string{"what": what}}, r))
		s.wake(r.ID)
		if was == StatePending {
			s.notify(ctx, r, "request.expired")
		} else {
			s.endHeldCalls(ctx, r)
		}
	}
	// Grants a reload ended but SetPolicies could not record (a storage
	// error) are ended here.
	if err := s.endOrphanedGrants(ctx, "sweep"); err != nil {
		return err
	}
	// Drop revocations whose grants have expired anyway.
	s.revoked.Range(func(k, v any) bool {
		if until, ok := v.(time.Time); ok && now.After(until.Add(time.Minute)) {
			s.revoked.Delete(k)
		}
		return true
	})
	return nil
}

var errRaced = errors.New("broker: request changed during sweep")

// PruneRequests deletes the requests that ended more than the retention
// ago (a grant ended early is kept until its tokens would have expired
// anyway) and records one requests.pruned event with how many, when there
// were any. The audit trail keeps each request's story. It does nothing
// without a retention; serve runs it at start and hourly.
func (s *Service) PruneRequests(ctx context.Context) (int, error) {
	if s.retention <= 0 {
		return 0, nil
	}
	before := s.now().UTC().Add(-s.retention)
	n, err := s.store.PruneRequests(ctx, before)
	if n > 0 {
		s.emit(context.WithoutCancel(ctx), &audit.Event{Type: audit.TypeRequestsPruned, Actor: &audit.Actor{Subject: "pamctl", Kind: audit.KindService},
			Decision: "pruned", Details: map[string]string{"count": strconv.Itoa(n), "before": before.Format(time.RFC3339), "retention": s.retention.String()}})
	}
	if err != nil {
		return n, &Error{Code: CodeInternal, Message: "could not prune old requests", Err: err}
	}
	return n, nil
}

func (s *Service) notify(ctx context.Context, r *Request, event string) {
	if s.notifier != nil {
		s.notifier.Notify(ctx, r, event)
	}
}

func (s *Service) emit(ctx context.Context, e *audit.Event) {
	if s.audit == nil {
		return
	}
	// The audit log reports an outage once (with what to do) and turns
	// /readyz red; one line per lost event would flood the log.
	if err := s.audit.Append(ctx, e); err != nil {
		s.log.Debug("audit append failed", "type", e.Type, "err", err)
	}
}

func actor(i Identity) *audit.Actor {
	return &audit.Actor{Subject: i.Subject, Display: i.Display, Email: i.Email, Groups: i.Groups, Issuer: i.Issuer, Kind: audit.ActorKind(i.Kind), Act: i.Act}
}

// actClaim is the RFC 8693 act claim for a workload acting for a person.
func actClaim(who Identity) *token.Actor {
	if who.Act == "" {
		return nil
	}
	return &token.Actor{Sub: who.Act, Iss: who.Issuer}
}

func newRequestID() string { return "req_" + token.NewID()[:20] }

// AuditScope is the scope that lets a subject read the audit trail.
const AuditScope = "audit:read"

// CanReadAudit reports whether who may start reading or exporting the
// audit trail: policy grants them audit:read without approval, or they hold
// a live grant covering it, and they logged in at the IdP within
// approvals.reauth_after (StepUp). The admin socket does not ask.
func (s *Service) CanReadAudit(ctx context.Context, who Identity) error {
	if err := s.holdsScope(ctx, who, AuditScope, "reading the audit trail", "read the audit trail"); err != nil {
		return err
	}
	return s.StepUp(who, ActionReadAudit)
}

// CanKeepReadingAudit is CanReadAudit without the step-up: a follower
// (audit tail -f) checked at its start keeps reading while its session and
// its audit:read right last.
func (s *Service) CanKeepReadingAudit(ctx context.Context, who Identity) error {
	return s.holdsScope(ctx, who, AuditScope, "reading the audit trail", "read the audit trail")
}
