// Package token mints and verifies pamctl's own JWTs: short-lived scoped
// access tokens for the proxy and broker session tokens for the CLI, both
// signed with Ed25519 (alg EdDSA, kid set). It owns the signing keyring, its
// rotation, the JWKS document, and scope matching. It is a leaf: the proxy
// uses it without the broker service.
package token

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// SealedKey is a signing key as stored. Nothing in it is trusted as read,
// because whoever can write the data file can rewrite it without the master
// key: the seed is sealed under the master key bound to the kid, the public
// half and the kid must derive from that seed, and Auth authenticates every
// other field (creation, retirement, the audit high-water mark) under the
// master key. LoadKeyring refuses a record that fails any of these checks.
type SealedKey struct {
	KID       string     `json:"kid"`
	Public    []byte     `json:"public"`
	Sealed    []byte     `json:"sealed"`
	Created   time.Time  `json:"created"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
	// Successor is the kid that replaced a retired key: a retired key
	// whose successor is missing means a newer record was deleted.
	Successor string `json:"successor,omitempty"`
	// Mark is the last audit chain head signed with this key (see
	// Keyring.RaiseHighWater): a trail shorter than it was cut.
	Mark *Mark `json:"mark,omitempty"`
	// WithdrawnAt is when the key was retired at once (Keyring.RetireNow):
	// from then on no token it signed is valid, and the JWKS leaves it out.
	WithdrawnAt *time.Time `json:"withdrawn_at,omitempty"`
	// Auth is a tag under the master key over every field above. Records
	// written before it existed have none and are upgraded once on load.
	Auth []byte `json:"auth,omitempty"`
}

// Mark is a point of the audit chain a key signed a head at.
type Mark struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// ErrTampered means a stored signing key fails its integrity checks: the
// data file was altered by someone without the master key, or the record
// comes from another deployment.
var ErrTampered = errors.New("token: a stored signing key failed its integrity check")

// Additional data of the sealed seed: legacy records bound it to the kid
// alone, current ones to a versioned purpose and the kid. A current record
// cannot be passed off as legacy (its seed does not open that way).
const (
	seedAADLegacy = "signing-key:"
	seedAAD       = "pamctl-signing-key-v2:"
)

// KeyStore persists signing keys. Keys returns an empty list only for a new
// data file: when the keyring finds no key it creates one, and a store whose
// key records were deleted from under other data must fail instead, or that
// key would sign whatever the data now says (store.DB fails with
// store.ErrKeysMissing).
type KeyStore interface {
	SaveKey(ctx context.Context, k SealedKey) error
	Keys(ctx context.Context) ([]SealedKey, error)
}

// BatchKeyStore is a KeyStore that saves several records atomically; the
// keyring uses it when available so a rotation is never half done.
type BatchKeyStore interface {
	KeyStore
	SaveKeys(ctx context.Context, ks ...SealedKey) error
}

// KeyUpdater is a KeyStore that updates key records without losing a
// write another replica made meanwhile. UpdateKeys reads every stored key
// record (failing as Keys does), passes them to fn, and saves the records
// fn returns, atomically and only if no key record changed since the read;
// when one did, it reads again and runs fn again. fn returning none writes
// nothing; an error from fn is returned and writes nothing. store.DB does
// it in one bbolt transaction, etcdstore.DB with a compare-and-swap on the
// records' mod revisions. Every write of key records goes through it when
// the store has it (see Keyring.update).
type KeyUpdater interface {
	KeyStore
	UpdateKeys(ctx context.Context, fn func(stored []SealedKey) ([]SealedKey, error)) error
}

// Sealer seals private keys at rest (broker/vault.Sealer implements it).
// Sealing an empty plaintext yields an authentication tag over aad.
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
	next    string // successor kid, once retired
	mark    *Mark
	// withdrawn: retired at once (RetireNow); its tokens are refused.
	withdrawn *time.Time
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

	// writeMu serializes writes of key records (rotation, high-water
	// marks), so a record is never rebuilt from a stale copy; it is held
	// across the store's fsync. mu guards the in-memory ring and is held
	// only briefly, so token checks never wait for a disk write.
	writeMu sync.Mutex
	mu      sync.RWMutex
	keys    map[string]*key
	active  *key
	// recordsSealed: this deployment's store records carry authenticators
	// (store.RecordKey), and key records are tagged with authMessage's v3
	// domain, which says so. See RecordsSealed.
	recordsSealed atomic.Bool
}

// KeyID derives the kid of a public key: the first 96 bits of its SHA-256,
// base64url. A stored kid that is not its key's KeyID is refused.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// Domains of a key record's Auth tag. v3 says, besides what v2 does, that
// this deployment's store records are sealed (see RecordsSealed): a tag
// made under one never verifies under the other, so a writer without the
// master key can neither mark an unsealed deployment sealed nor make a
// sealed one look unsealed (which would have the next start seal the
// records they forged). Builds before v3 refuse a v3 record (ErrTampered).
const (
	authDomainV2 = "pamctl-signing-key-record-v2"
	authDomainV3 = "pamctl-signing-key-record-v3-records-sealed"
)

// authMessage is what a record's Auth tag covers. A withdrawal adds a
// line, so records without one keep the tags they have; a build from
// before withdrawals refuses a withdrawn key's record (ErrTampered)
// rather than trusting the key again.
func authMessage(domain, kid string, pub []byte, created time.Time, retired *time.Time, successor string, mark *Mark, withdrawn *time.Time) string {
	r := "-"
	if retired != nil {
		r = retired.UTC().Format(time.RFC3339Nano)
	}
	m := "-"
	if mark != nil {
		m = fmt.Sprintf("%d:%s", mark.Seq, mark.Hash)
	}
	msg := fmt.Sprintf("%s\nkid=%s\npublic=%s\ncreated=%s\nretired=%s\nsuccessor=%s\nmark=%s\n",
		domain, kid, base64.RawURLEncoding.EncodeToString(pub), created.UTC().Format(time.RFC3339Nano), r, successor, m)
	if withdrawn != nil {
		msg += "withdrawn=" + withdrawn.UTC().Format(time.RFC3339Nano) + "\n"
	}
	return msg
}

// record returns k as stored, with a fresh Auth tag (the v3 domain when
// sealed). Callers pass a copy, never a key of the ring.
func (kr *Keyring) record(k *key, sealed bool) (SealedKey, error) {
	domain := authDomainV2
	if sealed {
		domain = authDomainV3
	}
	auth, err := kr.sealer.Seal(nil, authMessage(domain, k.kid, k.pub, k.created, k.retired, k.next, k.mark, k.withdrawn))
	if err != nil {
		return SealedKey{}, fmt.Errorf("token: authenticate key record: %w", err)
	}
	return SealedKey{KID: k.kid, Public: k.pub, Sealed: k.sealed, Created: k.created, RetiredAt: k.retired, Successor: k.next, Mark: k.mark, WithdrawnAt: k.withdrawn, Auth: auth}, nil
}

// open checks one stored record against the master key and returns the key.
// upgrade is true for a legacy record that must be rewritten; v3 for a
// record whose tag says the store's records are sealed.
func (kr *Keyring) open(sk SealedKey) (k *key, upgrade, v3 bool, err error) {
	tampered := func(why string) error {
		return fmt.Errorf("%w: key %q %s; the data file was modified without the master key or copied from another deployment: restore pamctl.db from a backup", ErrTampered, sk.KID, why)
	}
	aad := seedAAD + sk.KID
	if len(sk.Auth) == 0 {
		aad, upgrade = seedAADLegacy+sk.KID, true
	}
	raw, err := kr.sealer.Open(sk.Sealed, aad)
	if err != nil {
		if upgrade {
			if _, err2 := kr.sealer.Open(sk.Sealed, seedAAD+sk.KID); err2 == nil {
				return nil, false, false, tampered("lost its authentication tag")
			}
		}
		return nil, false, false, fmt.Errorf("token: signing key %q does not open under this master key (a record from another deployment, an altered record, or a changed master key): %w", sk.KID, err)
	}
	if len(raw) != ed25519.SeedSize {
		return nil, false, false, tampered("has a seed of the wrong size")
	}
	priv := ed25519.NewKeyFromSeed(raw)
	pub := priv.Public().(ed25519.PublicKey)
	if !bytes.Equal(pub, sk.Public) {
		return nil, false, false, tampered("has a stored public key that does not match its sealed seed")
	}
	if KeyID(pub) != sk.KID {
		return nil, false, false, tampered("has a kid that does not derive from its sealed seed")
	}
	if !upgrade {
		if _, err := kr.sealer.Open(sk.Auth, authMessage(authDomainV3, sk.KID, pub, sk.Created, sk.RetiredAt, sk.Successor, sk.Mark, sk.WithdrawnAt)); err == nil {
			v3 = true
		} else if _, err := kr.sealer.Open(sk.Auth, authMessage(authDomainV2, sk.KID, pub, sk.Created, sk.RetiredAt, sk.Successor, sk.Mark, sk.WithdrawnAt)); err != nil {
			return nil, false, false, tampered("has creation, retirement or high-water fields that fail their authentication tag")
		}
	} else if sk.Mark != nil || sk.Successor != "" || sk.WithdrawnAt != nil {
		return nil, false, false, tampered("carries fields that need an authentication tag but has none")
	}
	k = &key{kid: sk.KID, pub: pub, priv: priv, sealed: sk.Sealed, created: sk.Created, retired: sk.RetiredAt, next: sk.Successor, mark: sk.Mark, withdrawn: sk.WithdrawnAt}
	if upgrade {
		if k.sealed, err = kr.sealer.Seal(raw, seedAAD+sk.KID); err != nil {
			return nil, false, false, fmt.Errorf("token: reseal signing key %q: %w", sk.KID, err)
		}
	}
	return k, upgrade, v3, nil
}

// LoadKeyring opens the stored keys, generating the first one if none exist
// (the store tells a new file from one that lost its keys, see KeyStore).
// Every stored key must prove it belongs to this deployment (see SealedKey);
// one that does not fails the load with an error matching ErrTampered or
// the sealer's error, and nothing is published or signed with it.
// Records from before authentication tags existed are upgraded in place.
func LoadKeyring(ctx context.Context, st KeyStore, sealer Sealer, maxTokenTTL time.Duration, now func() time.Time) (*Keyring, error) {
	if now == nil {
		now = time.Now
	}
	kr := &Keyring{store: st, sealer: sealer, now: now, maxTokenTTL: maxTokenTTL, keys: map[string]*key{}}
	stored, err := st.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("token: load keys: %w", err)
	}
	var upgrades []*key
	sealed, older := len(stored) == 0, "" // a new deployment's records are sealed from the start
	for _, sk := range stored {
		k, upgrade, v3, err := kr.open(sk)
		if err != nil {
			return nil, err
		}
		if upgrade {
			upgrades = append(upgrades, k)
		}
		if v3 {
			sealed = true
		} else {
			older = k.kid
		}
		kr.keys[k.kid] = k
		if k.retired == nil && (kr.active == nil || k.created.After(kr.active.created)) {
			kr.active = k
		}
	}
	for _, k := range kr.keys {
		if k.next != "" && kr.keys[k.next] == nil {
			return nil, fmt.Errorf("%w: key %q was retired for key %q, whose record is missing; a newer signing key was deleted from the data file: restore pamctl.db from a backup", ErrTampered, k.kid, k.next)
		}
	}
	if sealed && older != "" {
		return nil, errOlderKeyRecord(older)
	}
	kr.recordsSealed.Store(sealed)
	if len(upgrades) > 0 {
		// The upgrade re-reads the records and merges (see update): another
		// replica starting from the same legacy records may have upgraded
		// them already, marked them sealed and raised a mark since.
		if err := kr.update(ctx, nil); err != nil {
			return nil, fmt.Errorf("token: upgrade key records: %w", err)
		}
	}
	if kr.active == nil {
		if _, err := kr.Rotate(ctx); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// errOlderKeyRecord is the error of a key record tagged as from before the
// store's records were sealed, in a keyring where others say they are: all
// of them are re-tagged at once (MarkRecordsSealed), so it was put back
// from an older copy of the store.
func errOlderKeyRecord(kid string) error {
	return fmt.Errorf("%w: key %q is tagged as from before this deployment's records were sealed, while other key records say they are: "+
		"it was put back from an older copy of the store (or written by an older pamctl still running against it: upgrade every replica together). "+
		"Restore the store from a backup and run `pamctl audit verify`", ErrTampered, kid)
}

// RecordsSealed reports whether this deployment's store records are
// authenticated (store.RecordKey): the key records' tags say so, and only
// the master key makes them. A new deployment is sealed from its first
// key; one from before authenticated records is not until
// MarkRecordsSealed. While it is false the store's records may lack an
// authenticator, and must be sealed (store.DB.SealRecords) before use;
// once true, a record without one was forged.
func (kr *Keyring) RecordsSealed() bool { return kr.recordsSealed.Load() }

// MarkRecordsSealed re-tags every key record to say the store's records
// are sealed, in one batch when the store takes batches. Call it once
// every record is (store.DB.SealRecords): from then on neither this build
// nor any older one (which refuses the new tags) takes an unsealed record.
func (kr *Keyring) MarkRecordsSealed(ctx context.Context) error {
	if kr.recordsSealed.Load() {
		return nil
	}
	// Replicas upgrading together all mark: the records are re-read and
	// merged first (see update), so one that marked later never writes
	// back a stale copy over a mark, retirement or key another one wrote
	// since, and when every stored record is already tagged v3 nothing is
	// written.
	if err := kr.update(ctx, func(m *merged) error { m.sealed = true; return nil }); err != nil {
		return fmt.Errorf("token: mark the store's records sealed: %w", err)
	}
	return nil
}

// Rotate generates a new active key and retires the previous one, which
// stays in the JWKS until tokens it signed have expired. It returns the new kid.
func (kr *Keyring) Rotate(ctx context.Context) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("token: generate key: %w", err)
	}
	kid := KeyID(pub)
	now := kr.now().UTC()
	sealed, err := kr.sealer.Seal(priv.Seed(), seedAAD+kid)
	if err != nil {
		return "", err
	}
	k := &key{kid: kid, pub: pub, priv: priv, sealed: sealed, created: now}
	err = kr.update(ctx, func(m *merged) error {
		// The key retired is the newest unretired one as stored now, which
		// is this ring's active key unless another replica rotated since.
		if old := m.newest(); old != nil {
			t := now
			old.retired, old.next = &t, kid
		}
		c := *k
		m.keys[kid] = &c
		m.active = kid
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("token: save rotated keys: %w", err)
	}
	return kid, nil
}

// RetireNow is the emergency rotation (a signing key, a backup or the
// data file may have leaked): a new active key, and every other key
// withdrawn at once instead of staying published until its tokens expire.
// Tokens they signed, access and session tokens alike, are refused from
// then on here, on each replica once it reloads the keys (the store's
// change feed), and by local proxies once they refetch the JWKS (the
// link stream tells them it changed). It returns the new kid and the
// withdrawn ones, sorted. Withdrawn keys still verify the audit heads
// they signed (AnyPublicKey).
func (kr *Keyring) RetireNow(ctx context.Context) (string, []string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("token: generate key: %w", err)
	}
	kid := KeyID(pub)
	now := kr.now().UTC()
	sealed, err := kr.sealer.Seal(priv.Seed(), seedAAD+kid)
	if err != nil {
		return "", nil, err
	}
	k := &key{kid: kid, pub: pub, priv: priv, sealed: sealed, created: now}
	var withdrawn []string
	err = kr.update(ctx, func(m *merged) error {
		withdrawn = withdrawn[:0]
		old := m.newest()
		for id, o := range m.keys {
			if o.withdrawn != nil {
				continue
			}
			t := now
			if o.retired == nil {
				o.retired = &t
			}
			if o == old {
				o.next = kid
			}
			o.withdrawn = &t
			withdrawn = append(withdrawn, id)
		}
		c := *k
		m.keys[kid] = &c
		m.active = kid
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("token: save the new key and the withdrawn ones: %w", err)
	}
	sort.Strings(withdrawn)
	return kid, withdrawn, nil
}

// RaiseHighWater records, in the authenticated record of the key that
// signed it, that the audit chain had a signed head at seq with hash. A
// data-file writer without the master key can neither forge nor lower it,
// so a trail later found shorter than the mark was cut. A mark at or below
// the key's current one is ignored. It implements audit.HighWater.
func (kr *Keyring) RaiseHighWater(ctx context.Context, kid string, seq uint64, hash string) error {
	kr.mu.RLock()
	k, ok := kr.keys[kid]
	done := ok && k.mark != nil && k.mark.Seq >= seq
	kr.mu.RUnlock()
	if done {
		return nil
	}
	// The record is re-read and merged (see update): a mark, retirement or
	// v3 tag another replica wrote is kept, and a mark it raised higher
	// than seq is not lowered.
	errUnknown := fmt.Errorf("token: high-water mark: unknown key %q", kid)
	err := kr.update(ctx, func(m *merged) error {
		k, ok := m.keys[kid]
		if !ok {
			return errUnknown
		}
		if k.mark == nil || k.mark.Seq < seq {
			k.mark = &Mark{Seq: seq, Hash: hash}
		}
		return nil
	})
	if err != nil && err != errUnknown {
		return fmt.Errorf("token: save high-water mark: %w", err)
	}
	return err
}

// HighWater returns the highest audit head any key of this ring recorded
// (ok false when none did). It implements audit.HighWater.
func (kr *Keyring) HighWater() (seq uint64, hash string, ok bool) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	for _, k := range kr.keys {
		if k.mark != nil && (!ok || k.mark.Seq > seq) {
			seq, hash, ok = k.mark.Seq, k.mark.Hash, true
		}
	}
	return seq, hash, ok
}

// published reports whether tokens signed by k may still be valid: not
// withdrawn, and not retired longer ago than the longest token lives.
func (kr *Keyring) published(k *key) bool {
	return k.withdrawn == nil && (k.retired == nil || kr.now().Before(k.retired.Add(kr.maxTokenTTL)))
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

// Version identifies the keys of a JWKS document: it changes whenever a
// key is published or leaves (a rotation, a retirement, a withdrawal).
func (j JWKS) Version() string {
	kids := make([]string, 0, len(j.Keys))
	for _, k := range j.Keys {
		kids = append(kids, k.Kid+"="+k.X)
	}
	sort.Strings(kids)
	h := sha256.New()
	for _, k := range kids {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
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
