package devissuer

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

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

// Respell returns other texts of the signed compact JWS raw that a lenient
// base64url decoder reads as the same bytes: a CR or LF inside a part,
// padding after one, a last character whose spare bits are set. Each is
// labelled with what was changed. A verifier must refuse them all, or one
// signed token has many texts.
func Respell(raw string) map[string]string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil
	}
	out := map[string]string{}
	with := func(i int, part string) string {
		p := slices.Clone(parts)
		p[i] = part
		return strings.Join(p, ".")
	}
	for i, name := range [...]string{"header", "payload", "signature"} {
		p := parts[i]
		if len(p) < 2 {
			continue
		}
		want, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			continue
		}
		mid := len(p) / 2
		out[name+" with a LF"] = with(i, p[:mid]+"\n"+p[mid:])
		out[name+" with a CR LF"] = with(i, p[:mid]+"\r\n"+p[mid:])
		if len(p)%4 != 0 {
			out[name+" padded"] = with(i, p+strings.Repeat("=", 4-len(p)%4))
		}
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		for _, c := range alphabet {
			s := p[:len(p)-1] + string(c)
			if s == p {
				continue
			}
			if got, err := base64.RawURLEncoding.DecodeString(s); err == nil && bytes.Equal(got, want) {
				out[name+" with spare bits set"] = with(i, s)
				break
			}
		}
	}
	return out
}

// IssuedAt signs, with the issuer's own key, a token whose iat claim is iat
// as given (any JSON value: null, -1, "now", 1.5e9) or, for Omit, absent,
// so that only the iat check can catch it.
func (f Forge) IssuedAt(c Claims, iat any) (string, error) {
	claims, err := f.i.claimSet(f.i.issuer, c)
	if err != nil {
		return "", err
	}
	if iat == Omit {
		delete(claims, "iat")
	} else {
		claims["iat"] = iat
	}
	return sign(f.i.signer, claims)
}
