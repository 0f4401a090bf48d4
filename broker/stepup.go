package broker

import (
	"errors"
	"fmt"
	"time"
)

// Step-up: approving, denying, revoking someone else's grant, ending someone
// else's session and reading the audit trail need an authentication at the IdP no older than
// approvals.reauth_after. A session token alone (say, one copied from a
// person's session file) is not enough once that time has passed: the IdP
// must see the person again.

// DefaultReauthAfter is approvals.reauth_after when unset.
const DefaultReauthAfter = 10 * time.Minute

// CodeStepUpRequired is the API error code of a *StepUpError (HTTP 401).
const CodeStepUpRequired Code = "step_up_required"

// ErrStepUpRequired is what a *StepUpError Is: errors.Is(err,
// ErrStepUpRequired) tells a caller to send the person through the IdP again
// (pamctl login, or prompt=login / max_age on the web).
var ErrStepUpRequired = errors.New("broker: a recent login is required")

// Step-up actions, as StepUpError.Action names them.
const (
	ActionApprove     = "approving"
	ActionDeny        = "denying"
	ActionRevokeOther = "revoking another person's grant"
	// ActionEndOtherSession: pamctl sessions revoke of a session that is
	// not the caller's, or --user naming someone else.
	ActionEndOtherSession = "ending another person's session"
	ActionReadAudit       = "reading the audit trail"
)

// Why a session cannot show a recent login (Identity.NoAuthTime,
// StepUpError.NoAuthTime).
const (
	// NoAuthTimeAgent: the session started an agent (pamctl exec).
	NoAuthTimeAgent = "agent_started"
	// NoAuthTimeIdP: the login's ID token had no auth_time, so nothing
	// shows the IdP authenticated the person (it may have reused its own
	// session: silent SSO).
	NoAuthTimeIdP = "no_auth_time"
)

// StepUpError refuses a sensitive action because the caller's last IdP
// authentication (AuthTime; zero when unknown) is older than MaxAge.
type StepUpError struct {
	Action   string        // what was refused, e.g. ActionApprove
	MaxAge   time.Duration // approvals.reauth_after
	AuthTime time.Time     // the caller's last authentication at the IdP
	// NoAuthTime says why AuthTime is zero: NoAuthTimeAgent,
	// NoAuthTimeIdP, or "" (nothing authenticated the caller).
	NoAuthTime string
	// Now is when the check was made (for the age in the message).
	Now time.Time
}

func (e *StepUpError) Error() string { return e.Message() }

// Is makes errors.Is(err, ErrStepUpRequired) true.
func (e *StepUpError) Is(target error) bool { return target == ErrStepUpRequired }

// Message is the user-safe explanation: what needs a recent login, how old
// the caller's is, and what to do.
func (e *StepUpError) Message() string {
	if e.AuthTime.IsZero() && e.NoAuthTime == NoAuthTimeIdP {
		return fmt.Sprintf("%s needs a login within the last %s; %s", e.Action, HumanAge(e.MaxAge), noAuthTimeAdvice)
	}
	return e.Reason() + ": log in again with `pamctl login` (or through the web page's login)"
}

// noAuthTimeAdvice explains a NoAuthTimeIdP refusal and what to do.
const noAuthTimeAdvice = "your identity provider did not report when you authenticated (the ID token of your login has no auth_time), so this session cannot show a recent login: " +
	"ask the identity provider's admin to include auth_time in ID tokens (OIDC Core requires it when the login sends max_age), " +
	"or, only if it never can, set step_up_without_auth_time: true on the issuer in the broker's config; then log in again with `pamctl login`"

// Reason says what needs a recent login and how old the caller's is, or
// why it cannot count, without what to do: "approving needs a login
// within the last 10m; your last was 2h ago".
func (e *StepUpError) Reason() string {
	last := NoAuthTimeReason(e.NoAuthTime)
	if !e.AuthTime.IsZero() {
		last = "your last was " + HumanAge(max(e.Now.Sub(e.AuthTime), 0)) + " ago"
	}
	return fmt.Sprintf("%s needs a login within the last %s; %s", e.Action, HumanAge(e.MaxAge), last)
}

// NoAuthTimeReason says why a session without a usable authentication
// time cannot show a recent login; why is its NoAuthTime (NoAuthTimeAgent,
// NoAuthTimeIdP, or "").
func NoAuthTimeReason(why string) string {
	switch why {
	case NoAuthTimeAgent:
		return "this session cannot show a recent login (it started an agent with `pamctl exec`, whose copy of it must not approve)"
	case NoAuthTimeIdP:
		return "your identity provider did not report when you authenticated (no auth_time in the login's ID token)"
	}
	return "this session cannot show a recent login"
}

// HumanAge prints a duration the way people say it: 45s, 10m, 2h, 2h5m, 3d.
func HumanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

// SetReauthAfter changes approvals.reauth_after (config reload); d <= 0
// means DefaultReauthAfter.
func (s *Service) SetReauthAfter(d time.Duration) {
	if d <= 0 {
		d = DefaultReauthAfter
	}
	s.reauthAfter.Store(int64(d))
}

// ReauthAfter is the maximum age of an authentication for sensitive actions.
func (s *Service) ReauthAfter() time.Duration { return time.Duration(s.reauthAfter.Load()) }

// StepUp returns a *StepUpError unless who authenticated at the IdP within
// approvals.reauth_after (who.AuthTime, set by whoever authenticated the
// caller). Other front ends (the web UI) may call it to decide whether to
// send a person through the IdP before showing a decision form.
//
// The local admin (the admin socket) is exempt by construction, not by
// identity: its routes call Revoke with admin set and read the trail
// without CanReadAudit, because reaching the socket (mode 0600, owner
// only) is its authentication, there is no IdP login to refresh, and
// whoever can open the socket can open the data directory itself. No
// identity is exempt here, so an IdP issuer named like the socket's gains
// nothing.
func (s *Service) StepUp(who Identity, action string) error {
	now := s.now()
	maxAge := s.ReauthAfter()
	if who.AuthTime.IsZero() || now.Sub(who.AuthTime) > maxAge {
		su := &StepUpError{Action: action, MaxAge: maxAge, AuthTime: who.AuthTime, Now: now}
		if who.AuthTime.IsZero() {
			su.NoAuthTime = who.NoAuthTime
		}
		return su
	}
	return nil
}
