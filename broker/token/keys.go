// Package token mints and verifies pamctl's own JWTs: short-lived scoped
// access tokens for the proxy and broker session tokens for the CLI, both
// signed with Ed25519 (alg EdDSA, kid set). It owns the signing keyring, its
// rotation, the JWKS document, and scope matching. It is a leaf: the proxy
// uses it without the broker service.
package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// SealedKey is a signing key as stored: the private half sealed under the
// master key, the public half in clear.
type SealedKey struct {
	KID       string     `json:"kid"`
	Public    []byte     `json:"public"`
	Sealed    []byte     `json:"sealed"`
	Created   time.Time  `json:"created"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

// KeyStore persists signing keys.
type KeyStore interface {
	SaveKey(ctx context.Context, k SealedKey) error
	Keys(ctx context.Context) ([]SealedKey, error)
}

// Sealer seals private keys at rest (broker/vault.Sealer implements it).
type Sealer interface {
	Seal(plaintext []byte, aad string) ([]byte, error)
	Open(sealed []byte, aad string) ([]byte, error)
}

// KeySet resolves a kid to a public key. The keyring implements it in
// process; a remote proxy would implement it over the JWKS endpoint.
type KeySet interface {
	PublicKey(kid string) (ed25519.PublicKey, bool)
}

type key struct {
	kid     string
	pub     ed25519.PublicKey
	priv    ed25519.PrivateKey
	sealed  []byte
	created time.Time
	retired *time.Time
}

// Keyring holds the active signing key and every public key whose tokens may
// still be valid. It is safe for concurrent use.
type Keyring struct {
	store  KeyStore
	sealer Sealer
	now    func() time.Time
	// maxTokenTTL is the longest lifetime of any token we mint: a retired
	// key stays published this long after retirement.
	maxTokenTTL time.Duration

	mu     sync.RWMutex
	keys   map[string]*key
	active *key
}

// LoadKeyring opens the stored keys, generating the first one if none exist.
func LoadKeyring(ctx context.Context, st KeyStore, sealer Sealer, maxTokenTTL time.Duration, now func() time.Time) (*Keyring, error) {
	if now == nil {
		now = time.Now
	}
	kr := &Keyring{store: st, sealer: sealer, now: now, maxTokenTTL: maxTokenTTL, keys: map[string]*key{}}
	stored, err := st.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("token: load keys: %w", err)
	}
	for _, sk := range stored {
		raw, err := sealer.Open(sk.Sealed, "signing-key:"+sk.KID)
		if err != nil {
			return nil, fmt.Errorf("token: open signing key %s: %w", sk.KID, err)
		}
		if len(raw) != ed25519.SeedSize {
			return nil, fmt.Errorf("token: signing key %s is corrupt", sk.KID)
		}
		k := &key{kid: sk.KID, pub: ed25519.PublicKey(sk.Public), priv: ed25519.NewKeyFromSeed(raw), sealed: sk.Sealed, created: sk.Created, retired: sk.RetiredAt}
		kr.keys[k.kid] = k
		if k.retired == nil && (kr.active == nil || k.created.After(kr.active.created)) {
			kr.active = k
		}
	}
	if kr.active == nil {
		if _, err := kr.Rotate(ctx); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// Rotate generates a new active key and retires the previous one, which
// stays in the JWKS until tokens it signed have expired. It returns the new kid.
func (kr *Keyring) Rotate(ctx context.Context) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("token: generate key: %w", err)
	}
	sum := sha256.Sum256(pub)
	kid := base64.RawURLEncoding.EncodeToString(sum[:12])
	now := kr.now().UTC()
	sealed, err := kr.sealer.Seal(priv.Seed(), "signing-key:"+kid)
	if err != nil {
		return "", err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if old := kr.active; old != nil {
		t := now
		if err := kr.store.SaveKey(ctx, SealedKey{KID: old.kid, Public: old.pub, Sealed: old.sealed, Created: old.created, RetiredAt: &t}); err != nil {
			return "", fmt.Errorf("token: retire key: %w", err)
		}
		old.retired = &t
	}
	if err := kr.store.SaveKey(ctx, SealedKey{KID: kid, Public: pub, Sealed: sealed, Created: now}); err != nil {
		return "", fmt.Errorf("token: save key: %w", err)
	}
	k := &key{kid: kid, pub: pub, priv: priv, sealed: sealed, created: now}
	kr.keys[kid] = k
	kr.active = k
	return kid, nil
}

// published reports whether tokens signed by k may still be valid.
func (kr *Keyring) published(k *key) bool {
	return k.retired == nil || kr.now().Before(k.retired.Add(kr.maxTokenTTL))
}

// PublicKey implements KeySet: retired keys resolve until their tokens expire.
func (kr *Keyring) PublicKey(kid string) (ed25519.PublicKey, bool) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	k, ok := kr.keys[kid]
	if !ok || !kr.published(k) {
		return nil, false
	}
	return k.pub, true
}

// AnyPublicKey resolves every key this ring ever held, retired or not: for
// checking old signatures that outlive tokens (audit chain heads and anchors).
func (kr *Keyring) AnyPublicKey(kid string) (ed25519.PublicKey, bool) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	k, ok := kr.keys[kid]
	if !ok {
		return nil, false
	}
	return k.pub, true
}

// ActiveKID is the kid new tokens are signed with.
func (kr *Keyring) ActiveKID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active.kid
}

func (kr *Keyring) signer() *key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active
}

// SignHead signs an audit chain head with the active key.
func (kr *Keyring) SignHead(msg []byte) (string, []byte, error) {
	k := kr.signer()
	if k == nil {
		return "", nil, errors.New("token: no active key")
	}
	return k.kid, ed25519.Sign(k.priv, msg), nil
}

// JWK is one public key in a JWKS document (RFC 8037 OKP).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS is the document served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWKS lists the published public keys, newest first.
func (kr *Keyring) JWKS() JWKS {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	var ks []*key
	for _, k := range kr.keys {
		if kr.published(k) {
			ks = append(ks, k)
		}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].created.After(ks[j].created) })
	out := JWKS{Keys: []JWK{}}
	for _, k := range ks {
		out.Keys = append(out.Keys, JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.pub), Kid: k.kid, Use: "sig", Alg: "EdDSA"})
	}
	return out
}

// StaticKeys is a KeySet built from a JWKS document (remote verifiers, tests).
type StaticKeys map[string]ed25519.PublicKey

// PublicKey implements KeySet.
func (s StaticKeys) PublicKey(kid string) (ed25519.PublicKey, bool) {
	k, ok := s[kid]
	return k, ok
}

// KeysFromJWKS decodes the Ed25519 keys of a JWKS document.
func KeysFromJWKS(doc JWKS) (StaticKeys, error) {
	out := StaticKeys{}
	for _, k := range doc.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("token: jwks key %s is malformed", k.Kid)
		}
		out[k.Kid] = ed25519.PublicKey(x)
	}
	return out, nil
}
