package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/token"
)

// Session defaults and bounds.
const (
	// MaxSessionTTL caps a session's absolute lifetime.
	MaxSessionTTL = 8 * time.Hour
	// DefaultIdleTimeout ends a session unused for this long.
	DefaultIdleTimeout = time.Hour
	// TouchEvery coalesces "last used" writes: a session's LastUsedAt is
	// written at most once per TouchEvery (in memory it is exact), so an
	// API call costs a store write only when its session's stored
	// LastUsedAt is older than this. After a restart the idle clock
	// therefore restarts from a LastUsedAt up to TouchEvery old: a session
	// may end up to TouchEvery early, never late.
	TouchEvery = time.Minute
	// SessionKeep is how long an ended or expired session stays listed
	// before the sweep deletes its record.
	SessionKeep = 24 * time.Hour
)

// SessionsAdminScope lets a subject list and end anyone's sessions (as the
// admin socket may).
const SessionsAdminScope = "sessions:admin"

// Session states.
const (
	SessionActive    = "active"
	SessionLoggedOut = "logged_out" // ended by its owner (pamctl logout)
	SessionRevoked   = "revoked"    // ended by an admin or its owner (pamctl sessions revoke)
	SessionExpired   = "expired"    // past its absolute lifetime (shown, never stored)
	SessionIdle      = "idle"       // unused for longer than the idle timeout (shown, never stored)
	SessionUntrusted = "untrusted"  // its identity provider is no longer trusted here (shown, never stored)
)

// SessionRecord is a broker session as the broker records it. The session
// token the CLI holds carries its ID as jti; every authenticated call looks
// the record up, so ending it here ends the token.
type SessionRecord struct {
	ID string `json:"id"`
	// Kind is "" for a CLI session (a session token names it) and
	// SessionKindWeb for the web approval page's (a cookie names it).
	Kind       string    `json:"kind,omitempty"`
	Identity   Identity  `json:"identity"`
	ClientAddr string    `json:"client_addr,omitempty"` // at login
	UserAgent  string    `json:"user_agent,omitempty"`  // at login
	CreatedAt  time.Time `json:"created_at"`
	// AuthTime is when the person last authenticated at the IdP for this
	// session: the ID token's auth_time (never later than the login; the
	// login itself for issuers with step_up_without_auth_time and
	// workload issuers). Nothing but a new login changes it; step-up (see
	// Service.StepUp) compares it with approvals.reauth_after. Zero in
	// records written before it existed: CreatedAt stands in.
	AuthTime time.Time `json:"auth_time,omitempty"`
	// AuthTimeUnknown is set when the login's ID token had no auth_time:
	// the session cannot pass step-up (the IdP may have reused its own
	// session without seeing the person). AuthTime is then
	// authTimeUnknownMark, never zero.
	AuthTimeUnknown bool `json:"auth_time_unknown,omitempty"`
	// AgentSince is when `pamctl exec` started an agent under this session
	// (see MarkAgentStarted): from then on the session cannot step up, so a
	// copy the agent reads cannot approve or read the audit trail even
	// within approvals.reauth_after of the login.
	AgentSince *time.Time `json:"agent_since,omitempty"`
	// LastUsedAt is written at most once per TouchEvery (see TouchEvery).
	LastUsedAt time.Time `json:"last_used_at"`
	// ExpiresAt is the absolute end: login + max lifetime (or the expiry
	// of a workload's ID token, whichever is sooner).
	ExpiresAt time.Time `json:"expires_at"`
	// State is active, logged_out or revoked; listings also show expired,
	// idle and untrusted.
	State     string     `json:"state"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndedBy   *Identity  `json:"ended_by,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`
	// IdleExpiresAt is when the session ends unless used (listings only).
	IdleExpiresAt *time.Time `json:"idle_expires_at,omitempty"`
}

// SessionStore persists sessions. UpdateSession is a compare-and-swap like
// UpdateRequest; DeleteSessions removes the records drop accepts.
type SessionStore interface {
	CreateSession(ctx context.Context, s *SessionRecord) error
	GetSession(ctx context.Context, id string) (*SessionRecord, error)
	UpdateSession(ctx context.Context, id string, fn func(*SessionRecord) error) (*SessionRecord, error)
	ListSessions(ctx context.Context, keep func(*SessionRecord) bool) ([]*SessionRecord, error)
	DeleteSessions(ctx context.Context, drop func(*SessionRecord) bool) (int, error)
	// RedeemLogin records that the ID token with digest key opened a
	// session, keeping the record at least until expires, and reports
	// whether it was the first time: false (recording nothing) when key
	// is recorded and not past its expiry at now. Two replicas redeeming
	// the same key at once: one gets true.
	RedeemLogin(ctx context.Context, key string, now, expires time.Time) (bool, error)
}

// ErrSessionNotFound means there is no session with that id.
var ErrSessionNotFound = errors.New("broker: no such session")

// liveSession caches a session record for Authenticate: the record as
// stored, and the exact last use, of which only every TouchEvery-th is
// written.
type liveSession struct {
	mu        sync.Mutex
	rec       SessionRecord
	lastUsed  time.Time // exact, in memory
	persisted time.Time // LastUsedAt as stored
}

func newLive(r *SessionRecord) *liveSession {
	return &liveSession{rec: *r, lastUsed: r.LastUsedAt, persisted: r.LastUsedAt}
}

// SessionInfo is what Authenticate tells the API about the session in use.
type SessionInfo struct {
	ID string
	// ExpiresAt is the absolute end; IdleExpiresAt the end unless used again.
	ExpiresAt     time.Time
	IdleExpiresAt time.Time
}

func loginAgain(format string, args ...any) *Error {
	return &Error{Code: CodeUnauthenticated, Message: fmt.Sprintf(format, args...) + ": log in again with `pamctl login`"}
}

// idleEnd is when r ends unless used after lastUsed (zero: no idle timeout).
func (s *Service) idleEnd(lastUsed time.Time) time.Time {
	if s.idleTimeout <= 0 {
		return time.Time{}
	}
	return lastUsed.Add(s.idleTimeout)
}

// refusal says why the session rec, last used at lastUsed, may not be used
// at now (nil: it may). Once it refuses, it refuses for every later now.
func (s *Service) refusal(rec *SessionRecord, lastUsed, now time.Time) error {
	switch rec.State {
	case SessionActive:
	case SessionLoggedOut:
		return loginAgain("this session was logged out")
	default:
		by := ""
		if rec.EndedBy != nil {
			by = " by " + rec.EndedBy.Subject
		}
		return loginAgain("this session was revoked%s", by)
	}
	if why := s.distrust(rec.Identity); why != "" {
		return loginAgain("the %s: it vouched for this session", why)
	}
	if !now.Before(rec.ExpiresAt) {
		return loginAgain("your session has expired (sessions last at most %s)", s.sessionTTL)
	}
	if end := s.idleEnd(lastUsed); !end.IsZero() && !now.Before(end) {
		return loginAgain("your session has expired after %s without use", s.idleTimeout)
	}
	return nil
}

// live returns the cached session id, loading it from the store on a miss.
func (s *Service) live(ctx context.Context, id string) (*liveSession, error) {
	if v, ok := s.liveSessions.Load(id); ok {
		return v.(*liveSession), nil
	}
	r, err := s.store.GetSession(ctx, id)
	if err != nil {
		return nil, err
	}
	v, _ := s.liveSessions.LoadOrStore(id, newLive(r))
	return v.(*liveSession), nil
}

// cache puts r (just written) into the cache, so this process sees the
// change at once, whether or not the session was cached before.
func (s *Service) cache(r *SessionRecord) {
	v, loaded := s.liveSessions.LoadOrStore(r.ID, newLive(r))
	if !loaded {
		return
	}
	ls := v.(*liveSession)
	ls.mu.Lock()
	ls.rec = *r
	if r.LastUsedAt.After(ls.lastUsed) {
		ls.lastUsed = r.LastUsedAt
	}
	ls.persisted = r.LastUsedAt
	ls.mu.Unlock()
}

var errSessionEnded = errors.New("broker: session ended")

// Authenticate verifies a broker session token and the session it names:
// active, within its lifetime, used within the idle timeout. It records the
// use in memory and writes it at most once per TouchEvery (see TouchEvery).
func (s *Service) Authenticate(ctx context.Context, raw string) (Identity, SessionInfo, error) {
	c, err := s.sessions.Verify(raw)
	if err != nil {
		if errors.Is(err, token.ErrExpired) {
			return Identity{}, SessionInfo{}, &Error{Code: CodeUnauthenticated, Message: "your session has expired: log in again with `pamctl login`", Err: err}
		}
		return Identity{}, SessionInfo{}, &Error{Code: CodeUnauthenticated, Message: "your session is not valid: log in again with `pamctl login`", Err: err}
	}
	ls, err := s.live(ctx, c.ID)
	if errors.Is(err, ErrSessionNotFound) {
		return Identity{}, SessionInfo{}, loginAgain("this broker has no record of your session (it ended and was removed, or predates server-side sessions)")
	}
	if err != nil {
		return Identity{}, SessionInfo{}, &Error{Code: CodeInternal, Message: "could not check your session", Err: err}
	}
	now := s.now().UTC()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.rec.Kind != "" || ls.rec.Identity.Subject != c.Subject || ls.rec.Identity.Issuer != c.IdP {
		return Identity{}, SessionInfo{}, loginAgain("your session does not match its record")
	}
	if err := s.refusal(&ls.rec, ls.lastUsed, now); err != nil {
		return Identity{}, SessionInfo{}, err
	}
	ls.lastUsed = now
	if now.Sub(ls.persisted) >= TouchEvery {
		r, err := s.store.UpdateSession(ctx, c.ID, func(r *SessionRecord) error {
			if r.State != SessionActive {
				return errSessionEnded
			}
			if now.After(r.LastUsedAt) {
				r.LastUsedAt = now
			}
			return nil
		})
		switch {
		case err == nil:
			ls.rec, ls.persisted = *r, r.LastUsedAt
		case errors.Is(err, errSessionEnded), errors.Is(err, ErrSessionNotFound):
			// Ended elsewhere (another process on the same data): fail closed.
			if r2, gerr := s.store.GetSession(ctx, c.ID); gerr == nil {
				ls.rec = *r2
				if rerr := s.refusal(r2, ls.lastUsed, now); rerr != nil {
					return Identity{}, SessionInfo{}, rerr
				}
			}
			return Identity{}, SessionInfo{}, loginAgain("this session has ended")
		default:
			// The session is valid; only the coalesced last-use write
			// failed. It is retried on the next call.
			s.log.Warn("could not record a session's last use", "session", c.ID, "err", err)
		}
	}
	who := ls.rec.Identity
	who.AuthTime, who.NoAuthTime = ls.rec.stepUpAuth()
	who.Session, who.Via = ls.rec.ID, ViaCLI
	info := SessionInfo{ID: ls.rec.ID, ExpiresAt: ls.rec.ExpiresAt, IdleExpiresAt: s.idleEnd(now)}
	return who, info, nil
}

// stepUpAuth is what the session shows step-up: its last IdP
// authentication (see AuthTime), or zero and why there is none
// (NoAuthTimeAgent, NoAuthTimeIdP).
func (r *SessionRecord) stepUpAuth() (time.Time, string) {
	switch {
	case r.AgentSince != nil:
		return time.Time{}, NoAuthTimeAgent
	case r.AuthTimeUnknown, r.AuthTime.Equal(authTimeUnknownMark):
		// The mark alone: a build without AuthTimeUnknown rewrote the
		// record (and dropped the field).
		return time.Time{}, NoAuthTimeIdP
	}
	return r.authTime(), ""
}

// authTimeUnknownMark is the AuthTime of a session whose login had no
// auth_time (AuthTimeUnknown). Not zero: a build from before
// AuthTimeUnknown reads a zero AuthTime as "the login itself" (CreatedAt),
// a fresh authentication, and would let the session step up during a
// rolling upgrade. Every build reads the Unix epoch as an authentication
// far older than approvals.reauth_after, so step-up refuses it.
var authTimeUnknownMark = time.Unix(0, 0).UTC()

// setAuthTime records a login's authentication time; zero means the IdP
// did not say (AuthTimeUnknown, with authTimeUnknownMark stored).
func (r *SessionRecord) setAuthTime(t time.Time) {
	if t.IsZero() {
		r.AuthTime, r.AuthTimeUnknown = authTimeUnknownMark, true
		return
	}
	r.AuthTime, r.AuthTimeUnknown = t, false
}

// authTime is the session's last IdP authentication (see AuthTime).
func (r *SessionRecord) authTime() time.Time {
	if r.AuthTime.IsZero() {
		return r.CreatedAt
	}
	return r.AuthTime
}

// MarkAgentStarted records that the caller started an agent (pamctl exec)
// under their session sessionID: the agent runs as the same OS user and can
// read the session file, so from now on this session cannot pass a step-up
// (approve, deny, revoke others' grants, read the trail); the person logs in
// again for those, which makes a new session. Other sessions are not
// touched. Marking twice keeps the first time.
func (s *Service) MarkAgentStarted(ctx context.Context, who Identity, sessionID string) error {
	now := s.now().UTC()
	r, err := s.store.UpdateSession(ctx, sessionID, func(r *SessionRecord) error {
		if !r.Identity.Same(who) {
			return ErrSessionNotFound
		}
		if r.State != SessionActive {
			return errSessionEnded
		}
		if r.AgentSince == nil {
			r.AgentSince = &now
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrSessionNotFound), errors.Is(err, errSessionEnded):
		return loginAgain("this session has ended")
	case err != nil:
		return s.storeErr(err)
	}
	s.cache(r)
	return nil
}

// SessionValid reports whether session id is still active and within its
// absolute lifetime. Long-lived streams (audit follow) call it while they
// run; it does not count as use, and a stream in progress is not idle.
func (s *Service) SessionValid(ctx context.Context, id string) error {
	ls, err := s.live(ctx, id)
	if errors.Is(err, ErrSessionNotFound) {
		return loginAgain("this broker has no record of your session")
	}
	if err != nil {
		return &Error{Code: CodeInternal, Message: "could not check your session", Err: err}
	}
	now := s.now().UTC()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return s.refusal(&ls.rec, now, now)
}

// openSession records a new session for who and returns its id.
func (s *Service) openSession(ctx context.Context, who Identity, client audit.Client, now, authTime, exp time.Time) (*SessionRecord, error) {
	who.AuthTime = time.Time{}                        // kept in the record's AuthTime, not in the identity
	who.NoAuthTime, who.Session, who.Via = "", "", "" // per call, never recorded
	r := &SessionRecord{
		ID: "ses_" + token.NewID()[:24], Identity: who, ClientAddr: client.RemoteAddr, UserAgent: client.UserAgent,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: exp, State: SessionActive,
	}
	r.setAuthTime(authTime)
	if err := s.store.CreateSession(ctx, r); err != nil {
		return nil, err
	}
	s.cache(r)
	return r, nil
}

// Logout ends the caller's session server-side: its token, and every copy
// of it, is refused from now on.
func (s *Service) Logout(ctx context.Context, who Identity, sessionID string, client audit.Client) error {
	now := s.now().UTC()
	r, err := s.endSession(ctx, sessionID, func(r *SessionRecord) error {
		if !r.Identity.Same(who) {
			return ErrSessionNotFound
		}
		r.State, r.EndedAt, r.EndedBy, r.EndReason = SessionLoggedOut, &now, &who, "logout"
		return nil
	})
	if err != nil {
		return err
	}
	s.emit(ctx, &audit.Event{Type: audit.TypeLogout, Actor: actor(who), Client: &client, Details: map[string]string{"session": r.ID}})
	return nil
}

// endSession marks a session ended in the store and in the cache.
func (s *Service) endSession(ctx context.Context, id string, fn func(*SessionRecord) error) (*SessionRecord, error) {
	r, err := s.store.UpdateSession(ctx, id, func(r *SessionRecord) error {
		if r.State != SessionActive {
			return errorf(CodeConflict, "session %s has already ended (%s)", r.ID, r.State)
		}
		return fn(r)
	})
	if errors.Is(err, ErrSessionNotFound) {
		return nil, errorf(CodeNotFound, "no session %s (list them with: pamctl sessions)", id)
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	s.cache(r)
	return r, nil
}

// CanAdminSessions reports whether who may list and end anyone's sessions:
// policy grants them sessions:admin without approval, or they hold a live
// grant covering it.
func (s *Service) CanAdminSessions(ctx context.Context, who Identity) error {
	return s.holdsScope(ctx, who, SessionsAdminScope, "managing other people's sessions", "manage other people's sessions")
}

// holdsScope reports whether policy grants who scope without approval, or
// who holds a live grant covering it.
// what names the action ("reading the audit trail"), verb says it ("read
// the audit trail").
func (s *Service) holdsScope(ctx context.Context, who Identity, scope, what, verb string) error {
	d := policy.Evaluate(s.policySet(), who.policySubject(), Ask{Scopes: []string{scope}})
	if d.Allow && !d.NeedsApproval {
		return nil
	}
	now := s.now()
	grants, err := s.store.RequestsInState(ctx, StateApproved, &who)
	if err != nil {
		return s.storeErr(err)
	}
	for _, r := range grants {
		if r.State != StateApproved || r.Kind != KindAccess || !r.Requester.Same(who) || r.ExpiresAt == nil || !now.Before(*r.ExpiresAt) || !token.Covers(r.Scopes, scope) {
			continue
		}
		if ok, _ := s.stillGranted(r); ok {
			return nil
		}
	}
	if d.Allow {
		return errorf(CodeForbidden, "%s needs an approved %s grant: pamctl request --scope %s", what, scope, scope)
	}
	return errorf(CodeForbidden, "you may not %s (it needs the %s scope, which policy does not grant you)", verb, scope)
}

// SessionQuery selects sessions to list.
type SessionQuery struct {
	// User limits the listing to one subject; All lists everyone's. Either
	// needs sessions:admin (or the admin socket) unless it names the caller.
	User string
	All  bool
	// Ended includes sessions that ended or expired (kept SessionKeep).
	Ended bool
}

// view fills the shown state of r as of now.
func (s *Service) view(r *SessionRecord, lastUsed, now time.Time) *SessionRecord {
	v := *r
	if lastUsed.After(v.LastUsedAt) {
		v.LastUsedAt = lastUsed
	}
	if v.State == SessionActive {
		if end := s.idleEnd(v.LastUsedAt); !end.IsZero() {
			if end.After(v.ExpiresAt) {
				end = v.ExpiresAt
			}
			v.IdleExpiresAt = &end
			if !now.Before(end) && now.Before(v.ExpiresAt) {
				v.State = SessionIdle
			}
		}
		switch {
		case !now.Before(v.ExpiresAt):
			v.State = SessionExpired
		case v.State == SessionActive && s.distrust(v.Identity) != "":
			// Not idle or expired: it would work again under its issuer.
			v.State = SessionUntrusted
		}
	}
	return &v
}

// Sessions lists sessions, newest first: the caller's own, or (admin, or
// with sessions:admin) anyone's.
func (s *Service) Sessions(ctx context.Context, who Identity, admin bool, q SessionQuery) ([]*SessionRecord, error) {
	mine := !q.All && (q.User == "" || (q.User == who.Subject && !admin))
	if !mine && !admin {
		if err := s.CanAdminSessions(ctx, who); err != nil {
			return nil, err
		}
	}
	now := s.now().UTC()
	rs, err := s.store.ListSessions(ctx, func(r *SessionRecord) bool {
		switch {
		case mine && !r.Identity.Same(who):
			return false
		case q.User != "" && r.Identity.Subject != q.User:
			return false
		}
		return true
	})
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "could not list sessions", Err: err}
	}
	out := make([]*SessionRecord, 0, len(rs))
	for _, r := range rs {
		lastUsed := r.LastUsedAt
		if v, ok := s.liveSessions.Load(r.ID); ok {
			ls := v.(*liveSession)
			ls.mu.Lock()
			lastUsed = ls.lastUsed
			ls.mu.Unlock()
		}
		v := s.view(r, lastUsed, now)
		// Untrusted sessions are listed with the active ones: they have
		// not ended, and work again should their issuer come back.
		if !q.Ended && v.State != SessionActive && v.State != SessionUntrusted {
			continue
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// RevokeSessions is what an admin ends: one session by ID, or every active
// session of User; with Grants, the live grants of their owners too.
type RevokeSessions struct {
	ID     string
	User   string
	Grants bool
	Reason string
}

// RevokeResult says what RevokeSessions ended.
type RevokeResult struct {
	Sessions []string `json:"sessions"`
	Grants   []string `json:"grants,omitempty"`
}

// RevokeSessions ends sessions at once (their tokens are refused from the
// next call) and, with Grants, revokes the live grants of the same
// identities, so the proxy refuses their access tokens too. The caller may
// end their own sessions; anyone else's needs the admin socket, or
// sessions:admin and a recent login (StepUp, ActionEndOtherSession). Every
// session and grant ended is one audit event.
func (s *Service) RevokeSessions(ctx context.Context, who Identity, admin bool, in RevokeSessions) (*RevokeResult, error) {
	if (in.ID == "") == (in.User == "") {
		return nil, errorf(CodeInvalid, "name one session ID or --user SUBJECT")
	}
	now := s.now().UTC()
	var targets []*SessionRecord
	if in.ID != "" {
		r, err := s.store.GetSession(ctx, in.ID)
		if errors.Is(err, ErrSessionNotFound) {
			return nil, errorf(CodeNotFound, "no session %s (list them with: pamctl sessions)", in.ID)
		}
		if err != nil {
			return nil, s.storeErr(err)
		}
		if !admin && !r.Identity.Same(who) {
			if err := s.CanAdminSessions(ctx, who); err != nil {
				if ErrorCode(err) == CodeForbidden {
					return nil, errorf(CodeNotFound, "no session %s (list them with: pamctl sessions)", in.ID)
				}
				return nil, err
			}
		}
		if r.State != SessionActive {
			return nil, errorf(CodeConflict, "session %s has already ended (%s)", r.ID, r.State)
		}
		targets = append(targets, r)
	} else {
		if !admin && in.User != who.Subject {
			if err := s.CanAdminSessions(ctx, who); err != nil {
				return nil, err
			}
		}
		rs, err := s.store.ListSessions(ctx, func(r *SessionRecord) bool {
			return r.Identity.Subject == in.User && r.State == SessionActive && now.Before(r.ExpiresAt)
		})
		if err != nil {
			return nil, s.storeErr(err)
		}
		if !admin && in.User == who.Subject {
			// Without admin rights, --user SELF means the sessions of
			// this identity, not of a namesake from another issuer.
			kept := rs[:0]
			for _, r := range rs {
				if r.Identity.Same(who) {
					kept = append(kept, r)
				}
			}
			rs = kept
		}
		targets = rs
	}
	if !admin {
		// Ending someone else's session (or grants) needs a recent login,
		// as approving does: a stale or copied session, or one that started
		// an agent, must not log out the approvers. One's own sessions (and
		// --user SELF, filtered to this identity above) need none.
		others := in.User != "" && in.User != who.Subject
		for _, t := range targets {
			if !t.Identity.Same(who) {
				others = true
				break
			}
		}
		if others {
			action := ActionEndOtherSession
			if in.Grants {
				action = ActionRevokeOther
			}
			if err := s.StepUp(who, action); err != nil {
				return nil, err
			}
		}
	}
	res := &RevokeResult{Sessions: []string{}}
	owners := map[string]Identity{}
	var errs []error
	for _, t := range targets {
		r, err := s.endSession(ctx, t.ID, func(r *SessionRecord) error {
			r.State, r.EndedAt, r.EndedBy, r.EndReason = SessionRevoked, &now, &who, in.Reason
			return nil
		})
		if ErrorCode(err) == CodeConflict { // ended meanwhile
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Sessions = append(res.Sessions, r.ID)
		owners[r.Identity.Issuer+"\x00"+r.Identity.IssuerURL+"\x00"+r.Identity.Subject] = r.Identity
		s.emit(ctx, &audit.Event{Type: audit.TypeSessionRevoked, Actor: actor(who), Target: r.Identity.Subject, Decision: "revoked",
			Reasons: nonEmpty(in.Reason), Details: sessionDetails(map[string]string{"session": r.ID, "issuer": r.Identity.Issuer, "grants": strconv.FormatBool(in.Grants)}, who, "actor_session")})
	}
	if in.Grants {
		switch {
		case in.User != "" && !admin && in.User == who.Subject:
			// --user SELF: this identity's grants, not a namesake's.
			owners = map[string]Identity{"self": who}
		case in.User != "":
			// --user SUBJECT ends the subject's sessions whatever their
			// issuer, and so its grants: every one, with or without a
			// live session (a stale session's identity, say from an
			// issuer URL since replaced, must not narrow the choice).
			owners = map[string]Identity{"": {Subject: in.User}}
		}
		for key, o := range owners {
			var by *Identity
			if key != "" {
				by = &o
			}
			// Approved requests only (an index read), then the live ones of
			// this owner; by subject alone when no session names the issuer.
			approved, err := s.store.RequestsInState(ctx, StateApproved, by)
			grants := approved[:0]
			for _, r := range approved {
				if r.Kind != KindAccess || r.ExpiresAt == nil || !now.Before(*r.ExpiresAt) {
					continue
				}
				if (key == "" && r.Requester.Subject == o.Subject) || (key != "" && r.Requester.Same(o)) {
					grants = append(grants, r)
				}
			}
			if err != nil {
				errs = append(errs, s.storeErr(err))
				continue
			}
			for _, g := range grants {
				if _, err := s.Revoke(ctx, who, g.ID, true); err != nil {
					if ErrorCode(err) != CodeConflict {
						errs = append(errs, err)
					}
					continue
				}
				res.Grants = append(res.Grants, g.ID)
			}
		}
	}
	if len(errs) > 0 {
		return res, &Error{Code: CodeInternal, Message: fmt.Sprintf("ended %d session(s) and %d grant(s), but some could not be ended; run the command again", len(res.Sessions), len(res.Grants)), Err: errors.Join(errs...)}
	}
	if len(res.Sessions) == 0 && len(res.Grants) == 0 && in.User != "" {
		if in.Grants {
			return res, errorf(CodeNotFound, "%s has no active session and no live grant", in.User)
		}
		return res, errorf(CodeNotFound, "%s has no active session", in.User)
	}
	return res, nil
}

// SweepSessions forgets sessions that ended or expired: the cache drops
// them at once, the store keeps them SessionKeep for listings. serve runs
// it with the expiry sweep.
func (s *Service) SweepSessions(ctx context.Context) error {
	now := s.now().UTC()
	s.liveSessions.Range(func(k, v any) bool {
		ls := v.(*liveSession)
		ls.mu.Lock()
		gone := s.refusal(&ls.rec, ls.lastUsed, now) != nil
		ls.mu.Unlock()
		if gone {
			s.liveSessions.Delete(k)
		}
		return true
	})
	_, err := s.store.DeleteSessions(ctx, func(r *SessionRecord) bool {
		end := r.ExpiresAt
		if r.EndedAt != nil && r.EndedAt.Before(end) {
			end = *r.EndedAt
		}
		if idle := s.idleEnd(r.LastUsedAt); !idle.IsZero() && idle.Before(end) {
			end = idle
		}
		return now.After(end.Add(SessionKeep))
	})
	return err
}
