package token

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audiences and uses of pamctl's own tokens. An access token is only for the
// proxy; a session token is only for the broker API. Each verifier checks
// both aud and use, so one can never stand in for the other.
const (
	AudienceProxy  = "pamctl-proxy"
	AudienceBroker = "pamctl-broker"

	UseAccess  = "access"
	UseSession = "session"
)

// DefaultTTL is an access token's lifetime when none was asked.
const DefaultTTL = 15 * time.Minute

var (
	// ErrInvalid wraps every reason a token is refused.
	ErrInvalid = errors.New("token: invalid")
	// ErrExpired means the token was valid once but its time is up.
	ErrExpired = errors.New("token: expired")
)

// Limits travel inside the access token so the proxy enforces the grant's
// policy without asking the broker.
type Limits struct {
	RPM    int   `json:"rpm,omitempty"`
	Tokens int64 `json:"tokens,omitempty"`
}

// Actor names the person a service account acts for (RFC 8693 act claim).
type Actor struct {
	Sub string `json:"sub"`
	Iss string `json:"iss,omitempty"`
}

// Claims are the claims of both token kinds.
type Claims struct {
	jwt.RegisteredClaims
	Use    string   `json:"use"`
	Scope  string   `json:"scope,omitempty"`
	Req    string   `json:"req,omitempty"`
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"` // display name of sub (sessions), for people to read
	Groups []string `json:"groups,omitempty"`
	Kind   string   `json:"kind,omitempty"` // user | service
	IdP    string   `json:"idp,omitempty"`  // name of the OIDC issuer that vouched for sub
	Act    *Actor   `json:"act,omitempty"`
	Limits *Limits  `json:"lim,omitempty"`
	// KeyID is the kid that signed the token, set by Verify (never a
	// claim): a cache of verified tokens asks the key set whether it is
	// still trusted (Verifier.Trusts), as a key withdrawn at once is not.
	KeyID string `json:"-"`
}

// Scopes returns the scope claim as a list.
func (c *Claims) Scopes() []string { return ParseScopes(c.Scope) }

// Minter signs tokens with the keyring's active key.
type Minter struct {
	Keys   *Keyring
	Issuer string
	Now    func() time.Time
}

// Mint signs c after filling iss, iat, nbf and jti. Callers set sub, aud,
// use, exp and the pamctl claims. It returns the compact JWT.
func (m *Minter) Mint(c Claims) (string, error) {
	if c.ExpiresAt == nil || len(c.Audience) == 0 || c.Use == "" {
		return "", errors.New("token: mint: exp, aud and use are required")
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	t := now().UTC().Truncate(time.Second)
	c.Issuer = m.Issuer
	c.IssuedAt = jwt.NewNumericDate(t)
	c.NotBefore = jwt.NewNumericDate(t)
	if c.ID == "" {
		c.ID = NewID()
	}
	k := m.Keys.signer()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return s, nil
}

// NewID returns a random 128-bit identifier in hex.
func NewID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("token: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Verifier checks tokens of one use and audience.
type Verifier struct {
	Keys     KeySet
	Issuer   string // expected iss; empty accepts any (single-process deployments set it)
	Audience string
	Use      string
	// Leeway is the clock skew allowed on nbf and iat (a token minted by a
	// broker whose clock runs a little ahead); default 30s. It never
	// extends exp: a token stops working the second its grant ends.
	Leeway time.Duration
	Now    func() time.Time
}

// Verify parses raw and returns its claims, or an error wrapping ErrInvalid
// or ErrExpired whose message is safe to show (it never echoes the token).
func (v *Verifier) Verify(raw string) (*Claims, error) {
	leeway := v.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	if !compactText(raw) {
		return nil, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	opts := []jwt.ParserOption{
		jwt.WithStrictDecoding(),
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithAudience(v.Audience),
		jwt.WithLeeway(leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if v.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.Issuer))
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	opts = append(opts, jwt.WithTimeFunc(now))
	var c Claims
	var signer string
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		signer = kid
		k, ok := v.Keys.PublicKey(kid)
		if !ok {
			return nil, errors.New("signed by an unknown key")
		}
		return k, nil
	}, opts...)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case err == nil && !now().Before(c.ExpiresAt.Time):
		// jwt applies the leeway to exp as well; the grant's end is exact.
		return nil, ErrExpired
	case err != nil:
		return nil, fmt.Errorf("%w: %s", ErrInvalid, reason(err))
	case c.Use != v.Use:
		return nil, fmt.Errorf("%w: not a %s token", ErrInvalid, v.Use)
	case c.Subject == "" || c.ID == "":
		return nil, fmt.Errorf("%w: missing sub or jti", ErrInvalid)
	}
	c.KeyID = signer
	return &c, nil
}

// Trusts reports whether tokens signed by kid verify now: false once the
// key is withdrawn (Keyring.RetireNow) or, for a remote key set, gone from
// the broker's JWKS. Callers that cache verified tokens ask it on every
// hit.
func (v *Verifier) Trusts(kid string) bool {
	_, ok := v.Keys.PublicKey(kid)
	return ok
}

// compactText reports whether raw is spelled as this package mints tokens:
// three dot-separated parts of unpadded base64url and nothing else. The
// decoder would skip a CR or LF in the signature, so without this one
// token could be presented under many texts (each a miss in a cache keyed
// by the text).
func compactText(raw string) bool {
	dots := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '.':
			dots++
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// reason maps jwt's errors to short safe phrases.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable (unknown key or algorithm)"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing required claim"
	default:
		return "rejected"
	}
}
