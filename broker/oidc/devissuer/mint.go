package devissuer

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Claims describes an ID token for Mint and the Forge helpers.
type Claims struct {
	Subject  string   // sub; required
	Email    string   // email; omitted when empty
	Groups   []string // groups; omitted when empty
	Audience string   // aud; DefaultClientID when empty
	Nonce    string   // nonce; omitted when empty

	// TTL is the lifetime from IssuedAt; the issuer's token TTL when zero.
	TTL time.Duration
	// Expiry, when set, is the exp claim and wins over TTL (set it in the
	// past to make an expired token).
	Expiry time.Time
	// IssuedAt is the iat claim; the issuer's clock when zero.
	IssuedAt time.Time
	// AuthTime is the auth_time claim, when the user authenticated (OIDC
	// Core 2; step-up compares it with approvals.reauth_after): IssuedAt
	// when zero. Extra{"auth_time": …} replaces it (tests of odd values).
	AuthTime time.Time

	// Extra claims, e.g. GitHub Actions' repository_owner. They may not
	// replace the claims above, except email_verified.
	Extra map[string]any
}

// Omit, as a value in Claims.Extra, leaves that claim out of the token
// (Extra{"email_verified": Omit}: an email the issuer says nothing about).
var Omit = omit{}

type omit struct{}

// reservedClaims are set from Claims fields and cannot be given in Extra.
// (email_verified may be: Extra{"email_verified": false} makes an unverified
// address.)
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true,
	"nonce": true, "email": true, "groups": true,
}

// Mint signs an ID token issued by this issuer. It is what the flows use, and
// what tests and `pamctl login --id-token-file` demos use to get a token
// without a login.
func (i *Issuer) Mint(c Claims) (string, error) {
	claims, err := i.claimSet(i.issuer, c)
	if err != nil {
		return "", err
	}
	return sign(i.signer, claims)
}

// claimSet builds the JSON claims of an ID token from c with iss.
func (i *Issuer) claimSet(iss string, c Claims) (map[string]any, error) {
	if c.Subject == "" {
		return nil, errors.New("devissuer: mint: subject is required")
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = i.now()
	}
	exp := c.Expiry
	if exp.IsZero() {
		ttl := c.TTL
		if ttl <= 0 {
			ttl = i.tokenTTL
		}
		exp = iat.Add(ttl)
	}
	aud := c.Audience
	if aud == "" {
		aud = DefaultClientID
	}
	authTime := c.AuthTime
	if authTime.IsZero() {
		authTime = iat
	}
	m := map[string]any{
		"iss":       iss,
		"sub":       c.Subject,
		"aud":       aud,
		"iat":       iat.Unix(),
		"exp":       exp.Unix(),
		"auth_time": authTime.Unix(),
		// A token id, as Keycloak, Okta and Entra ID send: two tokens
		// minted in the same second for the same person differ (the
		// broker redeems each person's ID token once). Extra may set it.
		"jti": rand.Text(),
	}
	if i.noAuthTime {
		delete(m, "auth_time")
	}
	if c.Nonce != "" {
		m["nonce"] = c.Nonce
	}
	if c.Email != "" {
		m["email"] = c.Email
		m["email_verified"] = true
	}
	if len(c.Groups) > 0 {
		m["groups"] = append([]string(nil), c.Groups...)
	}
	for k, v := range c.Extra {
		if reservedClaims[k] {
			return nil, fmt.Errorf("devissuer: mint: claim %q must be set through its Claims field, not Extra", k)
		}
		if v == Omit {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return m, nil
}

func sign(s jose.Signer, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devissuer: encode claims: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devissuer: sign: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("devissuer: serialize: %w", err)
	}
	return raw, nil
}
