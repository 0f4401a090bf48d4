package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
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

// Fingerprint identifies a secret without revealing it: the last four
// characters (as provider consoles show them) and a SHA-256 prefix.
func (s Secret) Fingerprint() string {
	sum := sha256.Sum256([]byte(s.v))
	last := s.v
	if utf8.RuneCountInString(last) > 4 {
		r := []rune(last)
		last = string(r[len(r)-4:])
	}
	if len(s.v) < 12 { // too short to show any of it safely
		last = "****"
	}
	return "…" + last + " sha256:" + hex.EncodeToString(sum[:])[:12]
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
	} else if got, err := s.Open(check, checkAAD); err != nil || string(got) != checkValue {
		return nil, ErrWrongMasterKey
	}
	if now == nil {
		now = time.Now
	}
	return &Vault{store: st, sealer: s, now: now, opened: map[string]Secret{}}, nil
}

// Sealer returns the sealer for other secrets kept under the same master key.
func (v *Vault) Sealer() *Sealer { return v.sealer }

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
	e := Entry{Name: name, Created: v.now().UTC(), Fingerprint: secret.Fingerprint(), Sealed: sealed}
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
