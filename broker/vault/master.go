// Package vault keeps provider keys (the real OpenAI key and friends) sealed
// with AES-256-GCM under a master key that lives outside the data directory,
// so a copied data dir alone reveals nothing. It owns the master key, the
// Sealer that other packages (broker/token) use for their own secrets, and the
// Vault of named provider keys. A secret value never appears in any output,
// log line, error or panic message: it travels as a Secret whose String and
// Format print a redacted form.
package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/pamctl/pamctl/broker/safefile"
)

// EnvMasterKey names the environment variable that may hold the master key
// (base64 of 32 bytes). When unset, the key file is used.
const EnvMasterKey = "PAMCTL_MASTER_KEY"

// ErrWrongMasterKey means sealed data does not open under this master key.
var ErrWrongMasterKey = errors.New("vault: the master key does not match this data directory (was PAMCTL_MASTER_KEY or the master key file changed?)")

// MasterKey is the 32-byte AES-256 key that seals everything at rest.
type MasterKey struct{ k []byte }

// String never shows the key.
func (MasterKey) String() string { return "MasterKey([redacted])" }

// GoString never shows the key.
func (MasterKey) GoString() string { return "MasterKey([redacted])" }

// ParseMasterKey decodes a base64 (standard or URL, padded or not) 32-byte key.
func ParseMasterKey(s string) (MasterKey, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != 32 {
				return MasterKey{}, fmt.Errorf("vault: master key must be 32 bytes, got %d (generate one with: head -c32 /dev/urandom | base64)", len(b))
			}
			return MasterKey{k: b}, nil
		}
	}
	return MasterKey{}, errors.New("vault: master key is not valid base64 (generate one with: head -c32 /dev/urandom | base64)")
}

// LoadMasterKey returns the key from envValue when it is non-empty, otherwise
// from file, generating file (mode 0600, parent 0700; on Windows both with
// a DACL for pamctl's user, SYSTEM and Administrators only:
// safefile.CreatePrivate, MkdirPrivate) on first use.
func LoadMasterKey(envValue, file string) (MasterKey, error) {
	if envValue != "" {
		k, err := ParseMasterKey(envValue)
		if err != nil {
			return MasterKey{}, fmt.Errorf("%s: %w", EnvMasterKey, err)
		}
		return k, nil
	}
	raw, err := safefile.Read(file, 4<<10) // a key is 44 bytes of base64
	if err == nil {
		k, err := ParseMasterKey(string(raw))
		if err != nil {
			return MasterKey{}, fmt.Errorf("master key file %s: %w", file, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return MasterKey{}, fmt.Errorf("vault: read master key file: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return MasterKey{}, fmt.Errorf("vault: generate master key: %w", err)
	}
	if err := safefile.MkdirPrivate(filepath.Dir(file)); err != nil {
		return MasterKey{}, fmt.Errorf("vault: create master key dir: %w", err)
	}
	f, err := safefile.CreatePrivate(file) // 0600; on Windows a protected DACL
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
			return LoadMasterKey("", file)
		}
		return MasterKey{}, fmt.Errorf("vault: create master key file: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(b) + "\n"); err != nil {
		return MasterKey{}, fmt.Errorf("vault: write master key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return MasterKey{}, fmt.Errorf("vault: write master key file: %w", err)
	}
	return MasterKey{k: b}, nil
}

// GenerateMasterKey returns a fresh random key (dev mode and tests).
func GenerateMasterKey() (MasterKey, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return MasterKey{}, err
	}
	return MasterKey{k: b}, nil
}

// Sealer encrypts and authenticates small values under the master key.
// The additional data binds a ciphertext to its purpose (e.g. "vault:openai"),
// so sealed values cannot be swapped between records.
type Sealer struct{ aead cipher.AEAD }

// NewSealer builds an AES-256-GCM sealer.
func NewSealer(k MasterKey) (*Sealer, error) {
	if len(k.k) != 32 {
		return nil, errors.New("vault: master key is not loaded")
	}
	block, err := aes.NewCipher(k.k)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns nonce||ciphertext.
func (s *Sealer) Seal(plaintext []byte, aad string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("vault: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(aad)), nil
}

// Open reverses Seal. Any failure is ErrWrongMasterKey: GCM cannot tell a
// wrong key from tampering, and both mean "do not use this value".
func (s *Sealer) Open(sealed []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrWrongMasterKey
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(aad))
	if err != nil {
		return nil, ErrWrongMasterKey
	}
	return out, nil
}
