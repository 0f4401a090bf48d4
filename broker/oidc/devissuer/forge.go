package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Forge makes ID tokens that a correct verifier must refuse, for negative
// tests. Each looks like a token of this issuer in every other respect.
// Expired or wrong-audience tokens need no forgery: use Mint with
// Claims.Expiry in the past or another Claims.Audience.
type Forge struct{ i *Issuer }

// Forge returns the forgery helpers for this issuer.
func (i *Issuer) Forge() Forge { return Forge{i: i} }

// OtherKey signs with a freshly generated RSA key that carries the issuer's
// own kid, so only the signature check can catch it.
func (f Forge) OtherKey(c Claims) (string, error) {
	claims, err := f.i.claimSet(f.i.issuer, c)
	if err != nil {
		return "", err
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("devissuer: forge: generate key: %w", err)
	}
	s, err := newRS256Signer(other, f.i.kid)
	if err != nil {
		return "", fmt.Errorf("devissuer: forge: %w", err)
	}
	return sign(s, claims)
}

// AlgNone returns an unsigned token with `"alg": "none"`.
func (f Forge) AlgNone(c Claims) (string, error) {
	claims, err := f.i.claimSet(f.i.issuer, c)
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims(claims))
	raw, err := t.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		return "", fmt.Errorf("devissuer: forge: %w", err)
	}
	return raw, nil
}

// HS256WithPublicKey returns the classic algorithm-confusion forgery: HS256
// with the issuer's public key (PEM, as published) used as the HMAC secret,
// and the issuer's kid.
func (f Forge) HS256WithPublicKey(c Claims) (string, error) {
	claims, err := f.i.claimSet(f.i.issuer, c)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(&f.i.key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("devissuer: forge: %w", err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims))
	t.Header["kid"] = f.i.kid
	raw, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("devissuer: forge: %w", err)
	}
	return raw, nil
}

// ForeignIssuer returns a token signed with this issuer's real key whose
// `iss` is issuerURL, as if minted by an issuer the verifier does not trust.
func (f Forge) ForeignIssuer(issuerURL string, c Claims) (string, error) {
	claims, err := f.i.claimSet(issuerURL, c)
	if err != nil {
		return "", err
	}
	return sign(f.i.signer, claims)
}
