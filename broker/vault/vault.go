package vault

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Secret is a provider key in memory. Its String, GoString and Format never
// show the value; call Reveal only where the value must leave the process
// (the upstream Authorization header).
type Secret struct{ v string }

// NewSecret wraps a value, trimming surrounding whitespace (a trailing
// newline from `echo` is never part of a key).
func NewSecret(v string) Secret { return Secret{v: strings.TrimSpace(v)} }

// Reveal returns the raw value.
func (s Secret) Reveal() string { return s.v }

// Empty reports whether the secret has no value.
func (s Secret) Empty() bool { return s.v == "" }

func (Secret) String() string   { return "[redacted]" }
func (Secret) GoString() string { return "vault.Secret([redacted])" }

// Format makes every fmt verb print the redacted form.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// MarshalJSON refuses to put a secret in JSON by accident.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// FingerprintLabel is the HKDF info that derives the fingerprint key from
// the master key: fingerprints are keyed, so one proves nothing about the
// secret to anyone without the master key.
const FingerprintLabel = "pamctl vault fingerprint v1"

// fingerprintPrefix starts every current fingerprint; a stored entry
// without it has the old unkeyed form and is rewritten when the vault opens.
const fingerprintPrefix = "hmac:"

// HintMinLength is the shortest secret whose last four characters are shown
// in its fingerprint (as provider consoles do): at 40 characters and more,
// four of them leave the rest far beyond guessing. Shorter secrets show none.
const HintMinLength = 40

// fingerprint identifies a secret without revealing it: HMAC-SHA256 under
// the fingerprint key, truncated to 64 bits (enough to tell a vault's few
// keys apart and to match one across the audit trail), preceded by the
// last four characters for secrets of HintMinLength or more.
func fingerprint(key []byte, s Secret) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s.v))
	fp := fingerprintPrefix + hex.EncodeToString(m.Sum(nil)[:8])
	if r := []rune(s.v); len(r) >= HintMinLength {
		fp = "…" + string(r[len(r)-4:]) + " " + fp
	}
	return fp
}

// Entry is one named provider key as stored: metadata in clear, the value sealed.
type Entry struct {
	Name        string    `json:"name"`
	Created     time.Time `json:"created"`
	Fingerprint string    `json:"fingerprint"`
	Sealed      []byte    `json:"sealed"`
}

// Store persists entries and the master-key check value.
type Store interface {
	PutEntry(ctx context.Context, e Entry) error
	GetEntry(ctx context.Context, name string) (Entry, error)
	DeleteEntry(ctx context.Context, name string) error
	ListEntries(ctx context.Context) ([]Entry, error)
	// MasterCheck returns the sealed check value, or nil if none was stored;
	// SetMasterCheck stores it once.
	MasterCheck(ctx context.Context) ([]byte, error)
	SetMasterCheck(ctx context.Context, sealed []byte) error
}

// ErrNotFound means no entry has that name.
var ErrNotFound = errors.New("vault: no such entry")

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

const checkAAD, checkValue = "pamctl:master-check", "pamctl master key check v1"

// Vault manages named provider keys.
type Vault struct {
	store  Store
	sealer *Sealer
	fpKey  []byte // HKDF(master key, FingerprintLabel)
	master MasterKey
	now    func() time.Time

	// opened caches opened secrets: the proxy asks for the provider key on
	// every call. Set and Remove update it; while a server runs, every
	// change goes through its Vault (the admin socket), never around it.
	// gen counts Set and Remove: a Get that read the store before one of
	// them finished does not cache what it read, so a removed or replaced
	// key is never brought back into the cache by a concurrent Get.
	mu     sync.RWMutex
	opened map[string]Secret
	gen    uint64
}

// Open binds the vault to a store and checks that master is the key this
// store was created with (recording it on first use).
func Open(ctx context.Context, st Store, master MasterKey, now func() time.Time) (*Vault, error) {
	s, err := NewSealer(master)
	if err != nil {
		return nil, err
	}
	check, err := st.MasterCheck(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: read master check: %w", err)
	}
	if check == nil {
		sealed, err := s.Seal([]byte(checkValue), checkAAD)
		if err != nil {
			return nil, err
		}
		if err := st.SetMasterCheck(ctx, sealed); err != nil {
			return nil, fmt.Errorf("vault: store master check: %w", err)
		}
		// SetMasterCheck never overwrites: with a shared store another
		// replica may have stored its check first, so read back what
		// stands and check it like any other.
		if check, err = st.MasterCheck(ctx); err != nil {
			return nil, fmt.Errorf("vault: read master check: %w", err)
		}
	}
	if got, err := s.Open(check, checkAAD); err != nil || string(got) != checkValue {
		return nil, ErrWrongMasterKey
	}
	if now == nil {
		now = time.Now
	}
	fpKey, err := hkdf.Key(sha256.New, master.k, nil, FingerprintLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("vault: derive fingerprint key: %w", err)
	}
	v := &Vault{store: st, sealer: s, fpKey: fpKey, master: master, now: now, opened: map[string]Secret{}}
	if err := v.upgradeFingerprints(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// upgradeFingerprints rewrites entries stored with the old unkeyed
// fingerprint (last four characters and a bare SHA-256 prefix, which gave
// away short keys). An entry that does not open keeps its record: Get
// reports it when it is used. Audit events already written keep the old
// form; the chain cannot be rewritten.
func (v *Vault) upgradeFingerprints(ctx context.Context) error {
	es, err := v.store.ListEntries(ctx)
	if err != nil {
		return fmt.Errorf("vault: list entries: %w", err)
	}
	for _, e := range es {
		if strings.Contains(e.Fingerprint, fingerprintPrefix) {
			continue
		}
		raw, err := v.sealer.Open(e.Sealed, "vault:"+e.Name)
		if err != nil {
			continue
		}
		e.Fingerprint = fingerprint(v.fpKey, Secret{v: string(raw)})
		if err := v.store.PutEntry(ctx, e); err != nil {
			return fmt.Errorf("vault: upgrade fingerprint of %s: %w", e.Name, err)
		}
	}
	return nil
}

// Fingerprint is the keyed fingerprint of secret in this vault (see
// FingerprintLabel): stable for a master key, meaningless without it.
func (v *Vault) Fingerprint(secret Secret) string { return fingerprint(v.fpKey, secret) }

// Sealer returns the sealer for other secrets kept under the same master key.
func (v *Vault) Sealer() *Sealer { return v.sealer }

// DerivedSealer returns a sealer under a key derived from the master key
// for purpose (HKDF, info "pamctl sealer v1 " + purpose): every replica
// holding the master key derives the same one. Use it for values anyone
// can make the broker seal (a login in flight, say): a flood of them then
// spends nonces of a key that guards nothing else, never the master key's.
func (v *Vault) DerivedSealer(purpose string) (*Sealer, error) {
	if purpose == "" {
		return nil, errors.New("vault: a derived sealer needs a purpose")
	}
	k, err := hkdf.Key(sha256.New, v.master.k, nil, "pamctl sealer v1 "+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("vault: derive a sealer: %w", err)
	}
	return NewSealer(MasterKey{k: k})
}

// DerivedKey returns a 32-byte key derived from the master key for
// purpose (HKDF, info "pamctl key v1 " + purpose), the same on every
// replica holding the master key: for a MAC whose key must be kept from
// whoever can write the data file.
func (v *Vault) DerivedKey(purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, errors.New("vault: a derived key needs a purpose")
	}
	k, err := hkdf.Key(sha256.New, v.master.k, nil, "pamctl key v1 "+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("vault: derive a key: %w", err)
	}
	return k, nil
}

// ValidateName checks an entry name: lower-case letters, digits, '.', '_', '-'.
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("vault: invalid name %q: use 1-63 lower-case letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// Set seals and stores secret under name, replacing any previous value.
func (v *Vault) Set(ctx context.Context, name string, secret Secret) (Entry, error) {
	if err := ValidateName(name); err != nil {
		return Entry{}, err
	}
	if secret.Empty() {
		return Entry{}, errors.New("vault: the secret is empty (pipe it on stdin: pamctl vault set NAME < keyfile)")
	}
	sealed, err := v.sealer.Seal([]byte(secret.Reveal()), "vault:"+name)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Name: name, Created: v.now().UTC(), Fingerprint: v.Fingerprint(secret), Sealed: sealed}
	err = v.store.PutEntry(ctx, e)
	v.mu.Lock()
	v.gen++
	if err == nil {
		v.opened[name] = secret
	} else {
		delete(v.opened, name) // the store may or may not hold the new value
	}
	v.mu.Unlock()
	if err != nil {
		return Entry{}, fmt.Errorf("vault: store %s: %w", name, err)
	}
	return e, nil
}

// Get opens the secret stored under name.
func (v *Vault) Get(ctx context.Context, name string) (Secret, error) {
	v.mu.RLock()
	s, ok := v.opened[name]
	gen := v.gen
	v.mu.RUnlock()
	if ok {
		return s, nil
	}
	e, err := v.store.GetEntry(ctx, name)
	if err != nil {
		return Secret{}, err
	}
	raw, err := v.sealer.Open(e.Sealed, "vault:"+name)
	if err != nil {
		return Secret{}, err
	}
	s = Secret{v: string(raw)}
	v.mu.Lock()
	if v.gen == gen { // no Set or Remove since the read: what was read is current
		v.opened[name] = s
	}
	v.mu.Unlock()
	return s, nil
}

// Remove deletes the entry; ErrNotFound if there is none.
func (v *Vault) Remove(ctx context.Context, name string) error {
	err := v.store.DeleteEntry(ctx, name)
	v.mu.Lock()
	v.gen++
	delete(v.opened, name)
	v.mu.Unlock()
	return err
}

// List returns the entries' metadata (the sealed values stay sealed).
func (v *Vault) List(ctx context.Context) ([]Entry, error) {
	return v.store.ListEntries(ctx)
}
