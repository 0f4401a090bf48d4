package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/policy"
)

// Hold is a proxied call that a require_approval prompt rule stopped.
type Hold struct {
	Caller    Identity
	GrantID   string
	TokenID   string
	Rule      string
	Approvers policy.Subjects
	// AlsoApprovedBy: approvers of the other matching rules, AlsoRules their
	// names (see PromptHold).
	AlsoApprovedBy []policy.Subjects
	AlsoRules      []string
	Model          string
	Method         string // the HTTP method; empty when the proxy did not say (PromptHold.Method)
	Endpoint       string
	Excerpt        string // masked
	Matches        []HeldMatch
	MatchSummary   string
	SHA256         string // of the whole prompt as it would go upstream
	CallSHA256     string // of the method, query string, body headers and whole body as they would go upstream (PromptHold)
	// Tool and Arguments (masked) describe a held tool call (see
	// PromptHold); both empty for a held prompt.
	Tool      string
	Arguments string
}

// HoldPrompt records a pending review of kind "prompt" and blocks until an
// approver decides or ctx ends (the client's hold timeout). It returns the
// review as it then is: approved (release the call), denied, or still
// pending (the caller stopped waiting). An approval given after the caller
// stopped waiting lets the same subject retry the identical call (the same
// digests of its prompt and of the call, model, endpoint and tool, and no
// rule the approvers did not approve; see sameCall) once within the retry
// window; such a retry
// returns approved at once without a new review.
func (s *Service) HoldPrompt(ctx context.Context, h Hold) (*Request, error) {
	if (h.Caller.IssuerURL == "" || h.Caller.ActFor == "") && h.GrantID != "" {
		// The caller comes from an access token, which names its issuer
		// but not the URL, and its act but not the person the issuer's
		// act_people maps it to: the grant it was minted for records
		// both, and the review guard needs the person.
		if g, err := s.store.GetRequest(ctx, h.GrantID); err == nil && g.Requester.Same(h.Caller) {
			if h.Caller.IssuerURL == "" {
				h.Caller.IssuerURL = g.Requester.IssuerURL
			}
			if h.Caller.ActFor == "" && h.Caller.Act == g.Requester.Act {
				h.Caller.ActFor = g.Requester.ActFor
			}
		}
	}
	if err := holdBounds(h); err != nil {
		return nil, err
	}
	if r, err := s.useRetry(ctx, h); err != nil || r != nil {
		return r, err
	}
	if r, err := s.refuseOnEndedGrant(ctx, h); err != nil || r != nil {
		return r, err
	}
	now := s.now().UTC()
	r := &Request{
		ID: newRequestID(), Kind: KindPrompt, Requester: h.Caller, State: StatePending, CreatedAt: now, TTL: s.retryWindow,
		PendingUntil: now.Add(s.retryWindow),
		Approval:     policy.Terms{Required: true, Approvers: h.Approvers, Count: 1},
		Prompt:       &PromptHold{Rule: h.Rule, Model: h.Model, Method: h.Method, Endpoint: h.Endpoint, Excerpt: h.Excerpt, Matches: h.Matches, MatchSummary: h.MatchSummary, SHA256: h.SHA256, CallSHA256: h.CallSHA256, GrantID: h.GrantID, TokenID: h.TokenID, AlsoApprovedBy: h.AlsoApprovedBy, AlsoRules: h.AlsoRules, Tool: h.Tool, Arguments: h.Arguments},
	}
	a := heldCaller(r)
	// The endpoint as proxy.call events write it, "POST /v1/chat/completions";
	// the path alone when the proxy did not say which method.
	endpoint := h.Endpoint
	if h.Method != "" {
		endpoint = h.Method + " " + h.Endpoint
	}
	held := heldEvent(&audit.Event{Type: audit.TypePromptHeld, Actor: a, Endpoint: endpoint, Decision: "hold", Reasons: []string{h.Rule}, Prompt: h.Excerpt, PromptSHA256: h.SHA256}, r)
	if h.Tool != "" {
		held.Target = h.Tool
		held.Details = map[string]string{"tool": h.Tool}
	}
	// The trail first: a call nobody can find in it is not offered for
	// approval (the caller is refused, as when the broker is down). Once
	// begun, the records are made whole whatever the caller's deadline:
	// it bounds the wait for a decision below, and a deadline ending
	// between the two had left a prompt.held for a call no approver could
	// find (a late approval still releases the call's retry).
	rec := context.WithoutCancel(ctx)
	if s.audit != nil {
		if err := s.audit.Append(rec, held); err != nil {
			return nil, &Error{Code: CodeInternal, Message: "could not record the held call in the audit trail", Err: err}
		}
	}
	if err := s.store.CreateRequest(rec, r); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "could not record the held call", Err: err}
	}
	s.notify(rec, r, "prompt.held")

	// The call waits for a decision, or for its grant to end: a call
	// nobody can release then ends at once (endHeld), not at the hold
	// timeout.
	got, err := s.wait(ctx, h.Caller, r.ID, h.GrantID, func(r *Request) (*Request, error) {
		return s.endHeld(context.WithoutCancel(ctx), r, a)
	})
	if err != nil {
		return nil, err
	}
	switch got.State {
	case StateApproved:
		// Released in time: the call goes through now and the approval is
		// spent, unless the grant it runs under ended while it waited.
		if ended, err := s.endIfGrantEnded(context.WithoutCancel(ctx), got, a); ended != nil || err != nil {
			return ended, err
		}
		return s.spend(context.WithoutCancel(ctx), got.ID, a)
	case StatePending:
		s.emit(context.WithoutCancel(ctx), heldEvent(&audit.Event{Type: audit.TypePromptRefused, Actor: a, Decision: "timeout", Reasons: []string{h.Rule}}, r))
	}
	return got, nil
}

// useRetry finds an approved, unspent prompt review of the same subject and
// prompt within its retry window and spends it.
func (s *Service) useRetry(ctx context.Context, h Hold) (*Request, error) {
	now := s.now()
	rs, err := s.store.RequestsInState(ctx, StateApproved, &h.Caller)
	if err != nil {
		return nil, s.storeErr(err)
	}
	for _, r := range rs {
		if r.State != StateApproved || r.Kind != KindPrompt || !r.Requester.Same(h.Caller) || r.Prompt == nil || r.Prompt.Used ||
			r.Prompt.SHA256 != h.SHA256 || r.Prompt.CallSHA256 != h.CallSHA256 || r.Prompt.GrantID != h.GrantID || !sameCall(r.Prompt, h) ||
			r.ExpiresAt == nil || !now.Before(*r.ExpiresAt) || !s.approvalStands(r) {
			continue
		}
		if why, _, err := s.heldGrantEnded(ctx, r); err != nil {
			return nil, err
		} else if why != "" {
			continue // held again, and refused there
		}
		// Released by this retry: the event names the token it was
		// made with (the one the upstream call carries).
		a := heldCaller(r)
		a.TokenID = h.TokenID
		got, err := s.spend(ctx, r.ID, a)
		if errors.Is(err, errSpent) {
			continue // another retry won the race
		}
		return got, err
	}
	return nil, nil
}

// Bounds of what a held call carries: what an approver is shown (and the
// trail records), never megabytes a model or a proxy chose.
const (
	maxHoldName     = 256      // a tool's or a model's name
	maxHoldMethod   = 32       // the HTTP method (the proxy holds no call with a longer one)
	maxHoldEndpoint = 2 << 10  // the path
	maxHoldExcerpt  = 16 << 10 // the excerpt, the masked arguments; the excerpt's pieces and their places, together
	maxHoldPieces   = 16       // pieces of an excerpt (the proxy shows at most 6)
	maxHoldPlaces   = 16       // places of one piece (the proxy names at most 6 and how many more)
)

// holdBounds refuses a hold that carries more than an approver is shown,
// or a method that is not one (an HTTP token).
func holdBounds(h Hold) error {
	if !validMethod(h.Method) {
		return &Error{Code: CodeInvalid, Message: fmt.Sprintf("a held call's method must be an HTTP method of at most %d bytes (letters, digits and the punctuation a token allows), or absent", maxHoldMethod)}
	}
	shown := len(h.MatchSummary) // the pieces and their places, together
	for _, m := range h.Matches {
		shown += len(m.Text)
		for _, w := range m.Where {
			shown += len(w)
		}
		for _, w := range m.Where {
			if !audit.OnePlace(w) {
				return &Error{Code: CodeInvalid, Message: "a place of a held call's excerpt is not one place on one line (it holds a line break raw: a line feed, a carriage return, NEL, U+2028, U+2029, a vertical tab, a form feed, U+001C, U+001D or U+001E; or a \"; \" outside quotes): the proxy that sent it is not one this broker reads; upgrade it"}
			}
		}
		if len(m.Where) > maxHoldPlaces {
			return &Error{Code: CodeInvalid, Message: fmt.Sprintf("a piece of a held call's excerpt names %d places, more than the %d a hold carries", len(m.Where), maxHoldPlaces)}
		}
	}
	if len(h.Matches) > maxHoldPieces || shown > maxHoldExcerpt {
		return &Error{Code: CodeInvalid, Message: fmt.Sprintf("a held call's excerpt has %d pieces of %d bytes, more than the %d (of %d bytes) a hold carries", len(h.Matches), shown, maxHoldPieces, maxHoldExcerpt)}
	}
	// The page shows the pieces; the trail, chat and the CLI show the
	// excerpt: they must be one text, or an approver would decide on words
	// no record holds.
	if len(h.Matches) > 0 || h.MatchSummary != "" {
		if !excerptIsPieces(h) {
			return &Error{Code: CodeInvalid, Message: "a held call's excerpt pieces are not its excerpt: each piece names its places and the excerpt is the pieces, each after its \"[found in …]\" line"}
		}
	}
	for _, f := range []struct {
		what   string
		n, max int
	}{{"tool name", len(h.Tool), maxHoldName}, {"model name", len(h.Model), maxHoldName}, {"endpoint", len(h.Endpoint), maxHoldEndpoint},
		{"excerpt", len(h.Excerpt), maxHoldExcerpt}, {"arguments", len(h.Arguments), maxHoldExcerpt}, {"rule name", len(h.Rule), maxHoldName},
		{"grant id", len(h.GrantID), maxHoldName}, {"token id", len(h.TokenID), maxHoldName}} {
		if f.n > f.max {
			return &Error{Code: CodeInvalid, Message: fmt.Sprintf("a held call's %s is %d bytes, more than the %d a hold carries", f.what, f.n, f.max)}
		}
	}
	return nil
}

// excerptIsPieces reports whether every piece of h's excerpt names its
// places and the excerpt is the text a proxy writes for them and their
// count line (audit.HeldExcerpt).
func excerptIsPieces(h Hold) bool {
	pieces := make([]audit.HeldPiece, len(h.Matches))
	for i, m := range h.Matches {
		if len(m.Where) == 0 {
			return false
		}
		pieces[i] = audit.HeldPiece(m)
	}
	return audit.HeldExcerpt(h.MatchSummary, pieces) == h.Excerpt
}

// validMethod reports whether m is empty (not reported) or an HTTP
// method: an RFC 9110 token of at most maxHoldMethod bytes.
func validMethod(m string) bool {
	if len(m) > maxHoldMethod {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// sameCall reports whether the retry h is the call the approvers of p were
// shown: the same model, method, endpoint and tool, and no rule holding it
// that they did not approve (a reload may have added one). The prompt's
// digest alone would let an approval of a prompt to one model release it
// to another, or on another endpoint; the call's digest covers the
// method, but only as the proxy that computed it says, so the method the
// approvers saw is compared too (a hold recorded without one, from an
// older proxy, releases no retry that reports one: it is held again).
func sameCall(p *PromptHold, h Hold) bool {
	if p.Model != h.Model || p.Method != h.Method || p.Endpoint != h.Endpoint || p.Tool != h.Tool {
		return false
	}
	approved := append([]string{p.Rule}, p.AlsoRules...)
	for _, rule := range append([]string{h.Rule}, h.AlsoRules...) {
		if !slices.Contains(approved, rule) {
			return false
		}
	}
	return true
}

// approvalStands reports whether every approval of the held call r would
// still be allowed under the rules in force now: an approval given before a
// reload removed its approver (or the rule), or by someone whose issuer no
// longer vouches for them, lets no retry through.
func (s *Service) approvalStands(r *Request) bool {
	if s.untrusted(r) != "" { // the caller's or an approver's issuer no longer vouches
		return false
	}
	for _, rv := range r.Reviews {
		if ok, _ := s.canReview(r, rv.Reviewer); rv.Approve && !ok {
			return false
		}
	}
	return true
}

var errSpent = errors.New("broker: prompt approval already used")

// spend marks an approved prompt review used, once (compare-and-swap),
// and records its release by a (the caller, with the token it called with).
func (s *Service) spend(ctx context.Context, id string, a *audit.Actor) (*Request, error) {
	r, err := s.store.UpdateRequest(ctx, id, func(r *Request) error {
		if r.Prompt == nil || r.Prompt.Used || r.State != StateApproved {
			return errSpent
		}
		r.Prompt.Used = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.emit(ctx, heldEvent(&audit.Event{Type: audit.TypePromptReleased, Actor: a, Decision: "released", Reasons: []string{r.Prompt.Rule}}, r))
	return r, nil
}

// heldGrantEnded says why the grant the held call r runs under no longer
// stands ("" while it does): revoked or ended early, past its TTL, no
// longer granted by policy or trusted issuers, not the caller's, or a
// record the store can never read (ErrRecordUnreadable).
// unknown reports that the store has no such grant. The proxy checked the
// grant's token when it held the call, but a call waits for minutes
// (proxy.hold_timeout) and its grant can end meanwhile: then the call is
// neither approved nor released.
func (s *Service) heldGrantEnded(ctx context.Context, r *Request) (why string, unknown bool, err error) {
	id := r.Prompt.GrantID
	if id == "" {
		return "the held call names no grant", true, nil
	}
	if s.IsRevoked(id) {
		return fmt.Sprintf("grant %s was revoked or ended early", id), false, nil
	}
	g, err := s.store.GetRequest(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return fmt.Sprintf("grant %s no longer exists", id), true, nil
	}
	if errors.Is(err, ErrRecordUnreadable) {
		// Fail closed, once: a grant that can never be read cannot be shown
		// to stand, and the call would otherwise wait (and the sweep fail)
		// until the store is restored. The store's error, which says what
		// to do, goes to the log; the caller reads that the grant is gone.
		s.log.Error("the grant of a held call cannot be read from the store; the call is ended as if the grant had ended", "grant", id, "held", r.ID, "err", err)
		return fmt.Sprintf("grant %s cannot be read from the store (its record fails its authenticator or is not a record; the server log says more)", id), false, nil
	}
	if err != nil {
		return "", false, s.storeErr(err)
	}
	switch {
	case g.Kind != KindAccess || !g.Requester.Same(r.Requester):
		return fmt.Sprintf("grant %s is not the caller's", id), false, nil
	case g.State != StateApproved:
		return fmt.Sprintf("grant %s is %s", id, g.State), false, nil
	case g.ExpiresAt == nil || !s.now().Before(*g.ExpiresAt):
		return fmt.Sprintf("grant %s has expired", id), false, nil
	}
	if ok, why := s.stillGranted(g); !ok {
		return fmt.Sprintf("grant %s has ended: %s", id, why), false, nil
	}
	return "", false, nil
}

// refuseOnEndedGrant refuses at once to hold a call whose grant the store
// has and which has ended (heldGrantEnded): nobody could approve it, and
// the caller would wait the whole hold timeout for nothing (a retry after
// a late approval, or a proxy whose revocations lag). It returns the
// refusal, expired with the reason and no ID, or nil to hold the call.
func (s *Service) refuseOnEndedGrant(ctx context.Context, h Hold) (*Request, error) {
	p := &PromptHold{Rule: h.Rule, Model: h.Model, Method: h.Method, Endpoint: h.Endpoint, GrantID: h.GrantID, Tool: h.Tool}
	r := &Request{Kind: KindPrompt, Requester: h.Caller, Prompt: p}
	why, unknown, err := s.heldGrantEnded(ctx, r)
	if err != nil || why == "" || unknown {
		return nil, err
	}
	a := actor(h.Caller)
	a.TokenID = h.TokenID
	s.emit(ctx, &audit.Event{Type: audit.TypePromptRefused, Actor: a, Grant: h.GrantID, Model: h.Model, Decision: "grant_ended", Reasons: []string{h.Rule, why}})
	r.State, r.EndReason = StateExpired, why
	return r, nil
}

// endHeld ends the pending held call r when its grant has ended
// (heldGrantEnded; not when the store does not know the grant): nobody can
// release it, so it leaves the approvers' queue and whoever waits on it is
// told at once. It is recorded as expired with the reason, one
// prompt.refused event (decision grant_ended; actor a, or the caller when
// a is nil) says why, and approvers are notified as for any held call
// that ends unreleased. It returns the ended call, or nil when the grant stands,
// is unknown, or someone decided the call first (compare-and-swap: a
// racing approval or deny wins or loses whole).
func (s *Service) endHeld(ctx context.Context, r *Request, a *audit.Actor) (*Request, error) {
	if r.Kind != KindPrompt || r.Prompt == nil || r.State != StatePending {
		return nil, nil
	}
	var v heldVerdict
	v.why, v.unknown, v.err = s.heldGrantEnded(ctx, r)
	return s.endHeldAs(ctx, r, a, v)
}

// heldVerdict is what heldGrantEnded said of a held call's grant.
type heldVerdict struct {
	why     string
	unknown bool
	err     error
}

// endHeldAs is endHeld with its grant already judged (v).
func (s *Service) endHeldAs(ctx context.Context, r *Request, a *audit.Actor, v heldVerdict) (*Request, error) {
	if r.Kind != KindPrompt || r.Prompt == nil || r.State != StatePending {
		return nil, nil
	}
	why, unknown, err := v.why, v.unknown, v.err
	if err != nil || why == "" || unknown {
		return nil, err
	}
	now := s.now().UTC()
	ended, err := s.store.UpdateRequest(ctx, r.ID, func(r *Request) error {
		if r.Kind != KindPrompt || r.Prompt == nil || r.State != StatePending {
			return errRaced
		}
		r.State, r.EndedAt, r.EndReason = StateExpired, &now, why
		return nil
	})
	if errors.Is(err, errRaced) || errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	if a == nil {
		a = heldCaller(ended)
	}
	s.emit(ctx, heldEvent(&audit.Event{Type: audit.TypePromptRefused, Actor: a, Decision: "grant_ended", Reasons: []string{ended.Prompt.Rule, why}}, ended))
	s.wake(ended.ID)
	s.notify(ctx, ended, "request.expired")
	return ended, nil
}

// endHeldCalls ends the calls held on grant g, which has just ended
// (revoked, past its TTL, ended by policy), that still wait for a
// decision: those whose caller waits, and those a late approval would
// still let through once (endHeld). A failure is logged, and the sweep's
// next tick ends the calls (endStrandedHeld); meanwhile whoever waits on
// such a call ends it when woken, and no approval of it is taken
// (heldGrantStands).
func (s *Service) endHeldCalls(ctx context.Context, g *Request) {
	if g.Kind != KindAccess {
		return
	}
	held, err := s.store.RequestsInState(ctx, StatePending, &g.Requester)
	if err != nil {
		s.markStranded()
		s.log.Error("ending the calls held on an ended grant failed; the sweep ends them once the store answers (until then they cannot be approved)", "grant", g.ID, "err", err)
		return
	}
	for _, r := range held {
		if r.Kind != KindPrompt || r.Prompt == nil || r.Prompt.GrantID != g.ID {
			continue
		}
		if _, err := s.endHeld(ctx, r, nil); err != nil {
			s.markStranded()
			s.log.Error("ending a call held on an ended grant failed; the sweep ends it once the store answers (until then it cannot be approved)", "grant", g.ID, "held", r.ID, "err", err)
		}
	}
}

// endIfGrantEnded ends the approved held call r, unspent, when its grant
// has ended (heldGrantEnded): it is recorded as expired with the reason,
// and a prompt.refused event (decision grant_ended) says why the call was
// not released. It returns the ended call, or nil when the grant stands.
func (s *Service) endIfGrantEnded(ctx context.Context, r *Request, a *audit.Actor) (*Request, error) {
	why, _, err := s.heldGrantEnded(ctx, r)
	if err != nil || why == "" {
		return nil, err
	}
	now := s.now().UTC()
	ended, err := s.store.UpdateRequest(ctx, r.ID, func(r *Request) error {
		if r.Prompt == nil || r.Prompt.Used || r.State != StateApproved {
			return errSpent
		}
		r.State, r.EndedAt, r.EndReason = StateExpired, &now, why
		return nil
	})
	if errors.Is(err, errSpent) {
		// Spent or ended meanwhile: nothing to release here.
		if cur, gerr := s.store.GetRequest(ctx, r.ID); gerr == nil && cur.State != StateApproved {
			return cur, nil
		}
		c := *r
		c.State, c.EndReason = StateExpired, why
		return &c, nil
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.emit(ctx, heldEvent(&audit.Event{Type: audit.TypePromptRefused, Actor: a, Decision: "grant_ended", Reasons: []string{ended.Prompt.Rule, why}}, ended))
	s.wake(ended.ID)
	return ended, nil
}

// heldCaller is the actor of the prompt.* events of the held call r: its
// caller, with the token the call was made with (PromptHold.TokenID).
func heldCaller(r *Request) *audit.Actor {
	a := actor(r.Requester)
	if r.Prompt != nil {
		a.TokenID = r.Prompt.TokenID
	}
	return a
}

// heldEvent names the held call r in e as prompt.held does, whichever path
// writes e: the call (review), the grant it runs under and its model. A
// request that is not a held call is left alone. It returns e.
func heldEvent(e *audit.Event, r *Request) *audit.Event {
	if r.Kind == KindPrompt && r.Prompt != nil {
		e.Review, e.Grant, e.Model = r.ID, r.Prompt.GrantID, r.Prompt.Model
	}
	return e
}
