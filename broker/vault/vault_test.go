package vault_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/broker/vault"
)

type memStore struct {
	mu    sync.Mutex
	m     map[string]vault.Entry
	check []byte
}

func newMem() *memStore { return &memStore{m: map[string]vault.Entry{}} }

func (s *memStore) PutEntry(_ context.Context, e vault.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[e.Name] = e
	return nil
}
func (s *memStore) GetEntry(_ context.Context, n string) (vault.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[n]
	if !ok {
		return e, vault.ErrNotFound
	}
	return e, nil
}
func (s *memStore) DeleteEntry(_ context.Context, n string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[n]; !ok {
		return vault.ErrNotFound
	}
	delete(s.m, n)
	return nil
}
func (s *memStore) ListEntries(context.Context) ([]vault.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []vault.Entry
	for _, e := range s.m {
		out = append(out, e)
	}
	return out, nil
}
func (s *memStore) MasterCheck(context.Context) ([]byte, error) { return s.check, nil }
func (s *memStore) SetMasterCheck(_ context.Context, b []byte) error {
	if s.check == nil {
		s.check = b
	}
	return nil
}

const secretValue = "sk-test-0123456789abcdefXYZ"

func TestSetGetListRemove(t *testing.T) {
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	st := newMem()
	v, err := vault.Open(ctx, st, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := v.Set(ctx, "openai", vault.NewSecret(secretValue+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.Fingerprint, "hmac:") || strings.Contains(e.Fingerprint, "fXYZ") {
		t.Fatalf("fingerprint %q", e.Fingerprint)
	}
	if bytes.Contains(st.m["openai"].Sealed, []byte(secretValue)) {
		t.Fatal("sealed entry contains the plaintext")
	}
	got, err := v.Get(ctx, "openai")
	if err != nil || got.Reveal() != secretValue {
		t.Fatalf("get: %v", err)
	}
	list, _ := v.List(ctx)
	if len(list) != 1 || list[0].Name != "openai" {
		t.Fatalf("list %+v", list)
	}
	if err := v.Remove(ctx, "openai"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, "openai"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("after rm: %v", err)
	}
	if err := v.Remove(ctx, "openai"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("rm twice: %v", err)
	}
	for _, bad := range []string{"", "Open AI", "../x", strings.Repeat("a", 70)} {
		if _, err := v.Set(ctx, bad, vault.NewSecret("x")); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if _, err := v.Set(ctx, "empty", vault.NewSecret("  \n")); err == nil {
		t.Error("empty secret accepted")
	}
}

func TestSwappedCiphertextRefused(t *testing.T) {
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	st := newMem()
	v, _ := vault.Open(ctx, st, mk, nil)
	v.Set(ctx, "a", vault.NewSecret("secret-for-a-123456"))
	v.Set(ctx, "b", vault.NewSecret("secret-for-b-123456"))
	ea, eb := st.m["a"], st.m["b"]
	ea.Sealed, eb.Sealed = eb.Sealed, ea.Sealed
	st.m["a"], st.m["b"] = ea, eb
	v, _ = vault.Open(ctx, st, mk, nil) // a fresh vault reads the store, not its cache
	if _, err := v.Get(ctx, "a"); !errors.Is(err, vault.ErrWrongMasterKey) {
		t.Fatalf("swapped ciphertext opened: %v", err)
	}
}

func TestWrongMasterKeyIsClearError(t *testing.T) {
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	st := newMem()
	if _, err := vault.Open(ctx, st, mk, nil); err != nil {
		t.Fatal(err)
	}
	other, _ := vault.GenerateMasterKey()
	_, err := vault.Open(ctx, st, other, nil)
	if !errors.Is(err, vault.ErrWrongMasterKey) || !strings.Contains(err.Error(), "PAMCTL_MASTER_KEY") {
		t.Fatalf("got %v", err)
	}
}

// The secret never appears in any formatting of the types that carry it.
func TestSecretNeverPrinted(t *testing.T) {
	s := vault.NewSecret(secretValue)
	mk, _ := vault.GenerateMasterKey()
	type wrapper struct {
		S vault.Secret
		K vault.MasterKey
	}
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("x", "secret", s, "wrapped", wrapper{s, mk})
	js, _ := json.Marshal(wrapper{S: s})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", wrapper{s, mk}, wrapper{s, mk}, wrapper{s, mk}),
		fmt.Errorf("wrap: %v", s).Error(), buf.String(), string(js),
	}
	raw := base64.StdEncoding.EncodeToString([]byte(secretValue))
	for _, o := range outs {
		if strings.Contains(o, secretValue) || strings.Contains(o, raw) || strings.Contains(o, "0123456789") {
			t.Fatalf("secret leaked in %q", o)
		}
	}
	func() {
		defer func() {
			if r := recover(); r != nil && strings.Contains(fmt.Sprint(r), secretValue) {
				t.Fatal("secret leaked in panic message")
			}
		}()
		panic(s)
	}()
}

func TestMasterKeyFileGeneratedOnceWithMode0600(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cfg", "master.key")
	k1, err := vault.LoadMasterKey("", file)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v err %v", fi.Mode(), err)
	}
	k2, _ := vault.LoadMasterKey("", file)
	s1, _ := vault.NewSealer(k1)
	s2, _ := vault.NewSealer(k2)
	sealed, _ := s1.Seal([]byte("x"), "t")
	if _, err := s2.Open(sealed, "t"); err != nil {
		t.Fatal("second load returned another key")
	}
	if _, err := vault.LoadMasterKey("bm90LWEta2V5", file); err == nil {
		t.Fatal("short env key accepted")
	}
	if _, err := vault.LoadMasterKey("%%%", file); err == nil {
		t.Fatal("non-base64 env key accepted")
	}
	env := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if _, err := vault.LoadMasterKey(env, file); err != nil {
		t.Fatal(err)
	}
}

// Get caches opened secrets; Set and Remove keep the cache true.
func TestVaultCacheFollowsChanges(t *testing.T) {
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	v, _ := vault.Open(ctx, newMem(), mk, nil)
	v.Set(ctx, "openai", vault.NewSecret("first-secret-value"))
	if s, _ := v.Get(ctx, "openai"); s.Reveal() != "first-secret-value" {
		t.Fatal("first get")
	}
	v.Set(ctx, "openai", vault.NewSecret("second-secret-value"))
	if s, _ := v.Get(ctx, "openai"); s.Reveal() != "second-secret-value" {
		t.Fatal("set did not replace the cached secret")
	}
	v.Remove(ctx, "openai")
	if _, err := v.Get(ctx, "openai"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("removed secret still served: %v", err)
	}
}

// A derived sealer is the same on every replica holding the master key,
// differs per purpose and from the master key's own sealer, and never
// opens what another key sealed.
func TestDerivedSealerIsPerPurposeAndShared(t *testing.T) {
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	st := newMem()
	a, err := vault.Open(ctx, st, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := vault.Open(ctx, st, mk, nil) // a second replica
	sa, err := a.DerivedSealer("ui-login")
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := b.DerivedSealer("ui-login")
	sealed, err := sa.Seal([]byte("in flight"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sb.Open(sealed, "x"); err != nil || string(got) != "in flight" {
		t.Fatalf("another replica's derived sealer: %q %v", got, err)
	}
	other, _ := a.DerivedSealer("something-else")
	for name, s := range map[string]*vault.Sealer{"another purpose": other, "the master sealer": a.Sealer()} {
		if _, err := s.Open(sealed, "x"); !errors.Is(err, vault.ErrWrongMasterKey) {
			t.Errorf("%s opened a ui-login seal: %v", name, err)
		}
	}
	if own, _ := a.Sealer().Seal([]byte("vault"), "x"); own != nil {
		if _, err := sa.Open(own, "x"); err == nil {
			t.Error("the derived sealer opened the master sealer's value")
		}
	}
	if _, err := a.DerivedSealer(""); err == nil {
		t.Error("a derived sealer without a purpose")
	}
	mk2, _ := vault.GenerateMasterKey()
	c, _ := vault.Open(ctx, newMem(), mk2, nil)
	sc, _ := c.DerivedSealer("ui-login")
	if _, err := sc.Open(sealed, "x"); err == nil {
		t.Error("another master key's derived sealer opened it")
	}
}
