package oidc

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is. Their messages are safe to show
// to users.
var (
	// ErrUnknownIssuer: the token's iss is none of the configured issuers.
	ErrUnknownIssuer = errors.New("oidc: the token's issuer is not trusted by this pamctl")
	// ErrInvalidToken: the token is malformed, badly signed, expired, for
	// another audience, or fails a configured claim check.
	ErrInvalidToken = errors.New("oidc: invalid ID token")
	// ErrIssuerUnavailable: discovery or the JWKS of a trusted issuer could
	// not be fetched; retrying later may succeed.
	ErrIssuerUnavailable = errors.New("oidc: identity provider unavailable")
)

// Reason is a stable, machine-readable cause of a verification failure.
type Reason string

// Reasons reported in VerifyError.Reason.
const (
	ReasonMalformed          Reason = "malformed"
	ReasonUnsupportedAlg     Reason = "unsupported_alg"
	ReasonUnknownIssuer      Reason = "unknown_issuer"
	ReasonIssuerUnavailable  Reason = "issuer_unavailable"
	ReasonBadSignature       Reason = "bad_signature"
	ReasonExpired            Reason = "expired"
	ReasonWrongAudience      Reason = "wrong_audience"
	ReasonNonceMismatch      Reason = "nonce_mismatch"
	ReasonMissingSubject     Reason = "missing_subject"
	ReasonDomainNotAllowed   Reason = "domain_not_allowed"
	ReasonClaimMismatch      Reason = "claim_mismatch"
	ReasonInvalidGroupsClaim Reason = "invalid_groups_claim"
	ReasonGroupsOverage      Reason = "groups_overage"
	ReasonUserinfo           Reason = "userinfo_failed"
	ReasonUserinfoSubject    Reason = "userinfo_subject_mismatch"
	ReasonNotYetValid        Reason = "not_yet_valid"
	ReasonMissingIssuedAt    Reason = "missing_iat"
	ReasonInvalidEmail       Reason = "invalid_email"
	ReasonInvalid            Reason = "invalid"
)

// VerifyError is what Verifier.Verify returns. Error() is safe to show to
// users: it never contains the token or its claims' values. Detail holds the
// underlying cause for logs (PAMCTL_DEBUG); it may quote claim values but
// never the raw token.
type VerifyError struct {
	Reason Reason
	// Issuer is the configured name of the issuer, when the token's iss
	// matched one.
	Issuer string
	// Claim names the offending claim for ReasonClaimMismatch and
	// ReasonInvalidGroupsClaim (a name from the config, not a value).
	Claim string
	// Detail is the underlying error, for logs only.
	Detail error

	sentinel error
}

func newVerifyError(sentinel error, reason Reason, issuer string, detail error) *VerifyError {
	return &VerifyError{Reason: reason, Issuer: issuer, Detail: detail, sentinel: sentinel}
}

func (e *VerifyError) Error() string {
	var msg string
	switch e.Reason {
	case ReasonMalformed:
		msg = "the ID token is malformed"
	case ReasonUnsupportedAlg:
		msg = "the ID token is not signed with an accepted asymmetric algorithm (RS256, ES256, EdDSA, ...)"
	case ReasonUnknownIssuer:
		return ErrUnknownIssuer.Error() + "; an administrator must add it under issuers:"
	case ReasonIssuerUnavailable:
		return fmt.Sprintf("%s: could not reach issuer %q; try again later", ErrIssuerUnavailable, e.Issuer)
	case ReasonBadSignature:
		msg = "the signature does not match the issuer's published keys"
	case ReasonExpired:
		msg = "the ID token has expired; log in again"
	case ReasonWrongAudience:
		msg = "the ID token was issued for another audience"
	case ReasonNonceMismatch:
		msg = "the ID token's nonce does not match this login; log in again"
	case ReasonMissingSubject:
		msg = "the ID token has no subject"
	case ReasonDomainNotAllowed:
		msg = "the account's email domain is not allowed, or the identity provider did not mark the email as verified (email_verified: true)"
	case ReasonClaimMismatch:
		msg = fmt.Sprintf("claim %q does not have the value this issuer requires", e.Claim)
	case ReasonGroupsOverage:
		msg = fmt.Sprintf("the user has too many groups for the %q claim and the identity provider sent a reference instead of the list (Entra group overage), which pamctl cannot follow; "+
			"an administrator should limit the groups claim to groups assigned to the application, or use app roles (groups_claim: roles)", e.Claim)
	case ReasonUserinfo:
		msg = "the groups could not be read from the identity provider's userinfo endpoint with this login's access token; log in again with an up-to-date pamctl"
	case ReasonUserinfoSubject:
		msg = "the userinfo endpoint answered for another subject than the ID token's"
	case ReasonNotYetValid:
		msg = fmt.Sprintf("the ID token says it was issued more than %s in the future; check the clocks of the identity provider and the broker (NTP), then log in again", ClockSkew)
	case ReasonMissingIssuedAt:
		msg = "the ID token has no iat (issued-at time), which OpenID Connect requires; an administrator must have the identity provider send iat as a number of seconds"
	case ReasonInvalidEmail:
		msg = "the account's email has spaces, control or invisible characters, so it could pass for someone else's; an administrator must correct the address at the identity provider"
	case ReasonInvalidGroupsClaim:
		msg = fmt.Sprintf("groups claim %q is neither a string nor a list of strings", e.Claim)
	default:
		msg = "the ID token is not valid"
	}
	if e.Issuer != "" {
		return fmt.Sprintf("%s from issuer %q: %s", ErrInvalidToken, e.Issuer, msg)
	}
	return fmt.Sprintf("%s: %s", ErrInvalidToken, msg)
}

// Unwrap exposes the sentinel (ErrInvalidToken, ErrUnknownIssuer or
// ErrIssuerUnavailable) and the detail, so errors.Is and errors.As see both.
func (e *VerifyError) Unwrap() []error {
	if e.Detail == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.Detail}
}
