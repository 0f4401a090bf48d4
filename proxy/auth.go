package proxy

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// TokenVerifier checks a pamctl access token. *token.Verifier implements it
// (EdDSA only, known kid, aud pamctl-proxy, use access, exp/nbf with leeway).
type TokenVerifier interface {
	Verify(raw string) (*token.Claims, error)
}

// KeyTruster is a TokenVerifier that also says whether a signing key is
// still trusted (*token.Verifier does): the verification cache asks it on
// every hit, so a token signed by a key the broker withdrew at once
// (pamctl keys rotate --retire-now) is refused on its next call.
type KeyTruster interface {
	Trusts(kid string) bool
}

// RevocationList answers whether a grant was revoked. The broker keeps it in
// process and the proxy asks on every call, so a revocation bites on the
// very next request.
type RevocationList interface {
	IsRevoked(grantID string) bool
}

var _ TokenVerifier = (*token.Verifier)(nil)

// bearerToken returns the token from `Authorization: Bearer T` or, as Azure
// clients send it, `api-key: T`.
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("Api-Key"))
}

// verifyCache remembers verified claims per token (keyed by the token's
// SHA-256, never the token) so the hot path skips the signature check. An
// entry never outlives the token's exp: once the injected clock passes exp
// the entry is dropped and the token goes back to the verifier, which then
// refuses it. Nor does it outlive the trust in the key that signed it
// (KeyTruster, asked on every hit). Revocation is not cached at all; the
// caller checks it on every call.
type verifyCache struct {
	verifier TokenVerifier
	now      func() time.Time
	max      int

	// observe, when set, is told of every check (Observer.TokenVerified).
	observe func(cached, ok bool)

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]cachedClaims
}

type cachedClaims struct {
	claims *token.Claims
	scopes []string
	exp    time.Time
}

func newVerifyCache(v TokenVerifier, now func() time.Time, max int) *verifyCache {
	return &verifyCache{verifier: v, now: now, max: max, entries: make(map[[sha256.Size]byte]cachedClaims)}
}

// verify returns the claims and parsed scopes of raw.
func (c *verifyCache) verify(raw string) (*token.Claims, []string, error) {
	sum := sha256.Sum256([]byte(raw))
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[sum]
	c.mu.RUnlock()
	if ok && now.Before(e.exp) && c.trusts(e.claims.KeyID) {
		if c.observe != nil {
			c.observe(true, true)
		}
		return e.claims, e.scopes, nil
	}
	if ok {
		c.mu.Lock()
		delete(c.entries, sum)
		c.mu.Unlock()
	}
	claims, err := c.verifier.Verify(raw)
	if c.observe != nil {
		c.observe(false, err == nil)
	}
	if err != nil {
		return nil, nil, err
	}
	if claims.ExpiresAt == nil { // the verifier requires exp; never cache forever
		return nil, nil, fmt.Errorf("%w: no exp", token.ErrInvalid)
	}
	e = cachedClaims{claims: claims, scopes: claims.Scopes(), exp: claims.ExpiresAt.Time}
	if now.Before(e.exp) && c.max > 0 {
		c.mu.Lock()
		if len(c.entries) >= c.max {
			c.evictLocked(now)
		}
		c.entries[sum] = e
		c.mu.Unlock()
	}
	return e.claims, e.scopes, nil
}

// evictLocked drops expired entries and, if the cache is still full, an
// arbitrary quarter of it (Go's map order is random enough to be fair).
func (c *verifyCache) evictLocked(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.exp) {
			delete(c.entries, k)
		}
	}
	drop := len(c.entries) - c.max*3/4
	for k := range c.entries {
		if drop <= 0 {
			break
		}
		delete(c.entries, k)
		drop--
	}
}

// trusts reports whether the key kid still verifies tokens (true when
// the verifier cannot say).
func (c *verifyCache) trusts(kid string) bool {
	kt, ok := c.verifier.(KeyTruster)
	return !ok || kt.Trusts(kid)
}

func (c *verifyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// authenticate is the token gate: it refuses calls without a valid,
// unexpired, unrevoked access token and records the actor in the call.
func (p *Proxy) authenticate(w http.ResponseWriter, r *http.Request) bool {
	c := callFrom(r.Context())
	raw := bearerToken(r)
	if raw == "" {
		p.fail(w, c, errUnauthorized("No pamctl access token. Send it as the API key (Authorization: Bearer <token>): "+
			"run your agent under `pamctl exec -- <command>`, or get a token with `pamctl request --scope model:<model>` and `pamctl token`.", nil))
		return false
	}
	p.stageBegin(c, StageAuth)
	claims, scopes, err := p.tokens.verify(raw)
	p.stageEnd(c, StageAuth)
	switch {
	case errors.Is(err, token.ErrExpired):
		p.fail(w, c, errUnauthorized("Your pamctl access token has expired. Get a fresh one with `pamctl token <request-id>`, "+
			"or ask again with `pamctl request --scope model:<model>`.", err))
		return false
	case err != nil:
		p.fail(w, c, errUnauthorized("The API key is not a valid pamctl access token ("+safeReason(err)+"). "+
			"Use the token printed by `pamctl token`, or run your agent under `pamctl exec -- <command>`.", err))
		return false
	}
	c.claims, c.scopes = claims, scopes
	if claims.Req == "" {
		p.fail(w, c, errUnauthorized("This pamctl token names no grant and cannot be honoured. Get a token with `pamctl token <request-id>`.", nil))
		return false
	}
	w.Header().Set("Pamctl-Grant", claims.Req)
	if p.revoked != nil && p.revoked.IsRevoked(claims.Req) {
		p.fail(w, c, errUnauthorized(fmt.Sprintf("Grant %s has ended early (revoked, or no longer allowed: `pamctl requests` says why); its token no longer works. Ask again with `pamctl request %s`.",
			claims.Req, requestHint(scopes)), nil))
		return false
	}
	return true
}

// safeReason is the verifier's short phrase ("bad signature", "wrong
// audience", ...); the token package promises it never echoes the token.
func safeReason(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, token.ErrInvalid.Error()+": "); ok {
		return after
	}
	return "rejected"
}

// requestHint renders scopes as `--scope` flags for a suggested command.
func requestHint(scopes []string) string {
	if len(scopes) == 0 {
		return "--scope model:<model>"
	}
	parts := make([]string, len(scopes))
	for i, s := range scopes {
		parts[i] = "--scope " + s
	}
	return strings.Join(parts, " ")
}
