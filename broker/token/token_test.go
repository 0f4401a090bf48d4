package token_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

type memKeys struct {
	mu sync.Mutex
	m  map[string]token.SealedKey
}

func (s *memKeys) SaveKey(_ context.Context, k token.SealedKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k.KID] = k
	return nil
}

func (s *memKeys) Keys(context.Context) ([]token.SealedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []token.SealedKey
	for _, k := range s.m {
		out = append(out, k)
	}
	return out, nil
}

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func setup(t *testing.T) (*token.Keyring, *memKeys, *vault.Sealer, *clock) {
	t.Helper()
	mk, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := vault.NewSealer(mk)
	if err != nil {
		t.Fatal(err)
	}
	st := &memKeys{m: map[string]token.SealedKey{}}
	c := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	kr, err := token.LoadKeyring(context.Background(), st, s, 8*time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return kr, st, s, c
}

func access(c *clock, ttl time.Duration) token.Claims {
	return token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "alice@example.com",
			Audience:  jwt.ClaimStrings{token.AudienceProxy},
			ExpiresAt: jwt.NewNumericDate(c.t.Add(ttl)),
		},
		Use:   token.UseAccess,
		Scope: "model:gpt-4o model:gpt-4o-mini",
		Req:   "req1",
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	kr, _, _, c := setup(t)
	m := &token.Minter{Keys: kr, Issuer: "http://broker", Now: c.Now}
	raw, err := m.Mint(access(c, 15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	v := &token.Verifier{Keys: kr, Issuer: "http://broker", Audience: token.AudienceProxy, Use: token.UseAccess, Now: c.Now}
	got, err := v.Verify(raw)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got.Subject != "alice@example.com" || got.Req != "req1" || got.ID == "" || len(got.Scopes()) != 2 {
		t.Fatalf("claims: %+v", got)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if !strings.Contains(string(hdr), `"alg":"EdDSA"`) || !strings.Contains(string(hdr), `"kid":"`+kr.ActiveKID()+`"`) {
		t.Fatalf("header %s", hdr)
	}
}

func TestVerifyRefuses(t *testing.T) {
	kr, _, _, c := setup(t)
	m := &token.Minter{Keys: kr, Issuer: "http://broker", Now: c.Now}
	v := &token.Verifier{Keys: kr, Issuer: "http://broker", Audience: token.AudienceProxy, Use: token.UseAccess, Now: c.Now}
	good, _ := m.Mint(access(c, 15*time.Minute))

	session := access(c, time.Hour)
	session.Audience = jwt.ClaimStrings{token.AudienceBroker}
	session.Use = token.UseSession
	sessionTok, _ := m.Mint(session)

	wrongUse := access(c, time.Hour)
	wrongUse.Use = token.UseSession
	wrongUseTok, _ := m.Mint(wrongUse)

	// Signed by a key the ring does not know, with a kid it does know.
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	forged := jwt.NewWithClaims(jwt.SigningMethodEdDSA, access(c, time.Hour))
	forged.Header["kid"] = kr.ActiveKID()
	forgedTok, _ := forged.SignedString(otherPriv)

	unknownKid := jwt.NewWithClaims(jwt.SigningMethodEdDSA, access(c, time.Hour))
	unknownKid.Header["kid"] = "nope"
	unknownKidTok, _ := unknownKid.SignedString(otherPriv)

	none := jwt.NewWithClaims(jwt.SigningMethodNone, access(c, time.Hour))
	none.Header["kid"] = kr.ActiveKID()
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)

	pub, _ := kr.PublicKey(kr.ActiveKID())
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, access(c, time.Hour))
	hs.Header["kid"] = kr.ActiveKID()
	hsTok, _ := hs.SignedString([]byte(pub))

	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","aud":"pamctl-proxy","use":"access","jti":"x","exp":9999999999}`)) + "." + parts[2]

	cases := map[string]string{
		"session token as access": sessionTok,
		"wrong use claim":         wrongUseTok,
		"forged signature":        forgedTok,
		"unknown kid":             unknownKidTok,
		"alg none":                noneTok,
		"HS256 with public key":   hsTok,
		"tampered payload":        tampered,
		"garbage":                 "not.a.jwt",
		"empty":                   "",
	}
	// The same signed token spelled another way: the decoder would skip a
	// CR or LF in the signature, and without strict decoding a last
	// character's spare bits.
	respelled := devissuer.Respell(good)
	if _, ok := respelled["signature with spare bits set"]; !ok || len(respelled) < 8 {
		t.Fatalf("respellings: %v", respelled)
	}
	for what, tok := range respelled {
		cases["token with its "+what] = tok
	}
	for name, raw := range cases {
		if _, err := v.Verify(raw); !errors.Is(err, token.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}

	c.t = c.t.Add(16 * time.Minute)
	if _, err := v.Verify(good); !errors.Is(err, token.ErrExpired) {
		t.Errorf("expired: got %v", err)
	}
	// Not yet valid: minted in the future beyond leeway.
	c.t = c.t.Add(-time.Hour)
	if _, err := v.Verify(good); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("nbf in future: got %v", err)
	}
}

func TestRotateKeepsOldKeyUntilTokensExpire(t *testing.T) {
	kr, st, sealer, c := setup(t)
	m := &token.Minter{Keys: kr, Issuer: "http://broker", Now: c.Now}
	old := kr.ActiveKID()
	oldTok, _ := m.Mint(access(c, 15*time.Minute))

	c.t = c.t.Add(time.Minute)
	newKid, err := kr.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if newKid == old || kr.ActiveKID() != newKid {
		t.Fatalf("rotate did not switch keys")
	}
	jwks := kr.JWKS()
	if len(jwks.Keys) != 2 || jwks.Keys[0].Kid != newKid || jwks.Keys[1].Kid != old {
		t.Fatalf("jwks after rotate: %+v", jwks)
	}
	for _, k := range jwks.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" || k.Use != "sig" {
			t.Fatalf("jwk shape: %+v", k)
		}
	}
	// Tokens signed by the old key still verify, through the JWKS too.
	static, err := token.KeysFromJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v := &token.Verifier{Keys: static, Audience: token.AudienceProxy, Use: token.UseAccess, Now: c.Now}
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatalf("old token after rotate: %v", err)
	}
	newTok, _ := m.Mint(access(c, 15*time.Minute))
	if _, err := v.Verify(newTok); err != nil {
		t.Fatalf("new token: %v", err)
	}

	// A restart sees the same ring.
	kr2, err := token.LoadKeyring(context.Background(), st, sealer, 8*time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if kr2.ActiveKID() != newKid || len(kr2.JWKS().Keys) != 2 {
		t.Fatalf("reload: active %s keys %d", kr2.ActiveKID(), len(kr2.JWKS().Keys))
	}

	// Past the longest token lifetime the retired key leaves the JWKS.
	c.t = c.t.Add(8*time.Hour + time.Second)
	if jw := kr.JWKS(); len(jw.Keys) != 1 || jw.Keys[0].Kid != newKid {
		t.Fatalf("retired key still published: %+v", jw)
	}
	if _, ok := kr.PublicKey(old); ok {
		t.Fatal("retired key still resolves")
	}
}

func TestWrongMasterKeyCannotOpenSigningKeys(t *testing.T) {
	_, st, _, c := setup(t)
	other, _ := vault.GenerateMasterKey()
	s2, _ := vault.NewSealer(other)
	_, err := token.LoadKeyring(context.Background(), st, s2, time.Hour, c.Now)
	if !errors.Is(err, vault.ErrWrongMasterKey) {
		t.Fatalf("got %v", err)
	}
}

// TestAccessTokenEndsExactlyAtExp: the leeway covers clock skew on nbf and
// iat only; an access token stops working the second its grant ends. The
// old verifier accepted it for 30 more seconds.
func TestAccessTokenEndsExactlyAtExp(t *testing.T) {
	kr, _, _, c := setup(t)
	minted := c.t
	m := &token.Minter{Keys: kr, Issuer: "http://broker", Now: func() time.Time { return minted }}
	tok, err := m.Mint(access(c, 15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	exp := minted.Add(15 * time.Minute)
	v := &token.Verifier{Keys: kr, Issuer: "http://broker", Audience: token.AudienceProxy, Use: token.UseAccess, Now: c.Now}
	for _, tc := range []struct {
		at   time.Time
		want error
	}{
		{exp.Add(-time.Second), nil},
		{exp, token.ErrExpired},
		{exp.Add(time.Second), token.ErrExpired},
		{exp.Add(29 * time.Second), token.ErrExpired},
		// A broker clock 20s ahead of the proxy: nbf and iat in the future
		// within the leeway are still accepted.
		{minted.Add(-20 * time.Second), nil},
		{minted.Add(-31 * time.Second), token.ErrInvalid},
	} {
		c.t = tc.at
		_, err := v.Verify(tok)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("at exp%+v: got %v, want %v", tc.at.Sub(exp), err, tc.want)
		}
	}
	// A custom leeway still never stretches exp.
	v.Leeway = 5 * time.Minute
	c.t = exp.Add(time.Second)
	if _, err := v.Verify(tok); !errors.Is(err, token.ErrExpired) {
		t.Errorf("leeway 5m, 1s past exp: got %v", err)
	}
}
