package token_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

// only returns the single stored record of st.
func only(t *testing.T, st *memKeys) token.SealedKey {
	t.Helper()
	if len(st.m) != 1 {
		t.Fatalf("want one stored key, have %d", len(st.m))
	}
	for _, k := range st.m {
		return k
	}
	panic("unreachable")
}

// TestStoredKeyRecordTamperRefused rewrites a stored key record the way a
// writer of the data file without the master key could, and checks that
// loading the keyring refuses every variant with ErrTampered and a message
// saying what to do. The old keyring trusted the stored public half as is.
func TestStoredKeyRecordTamperRefused(t *testing.T) {
	attackerPub, _, _ := ed25519.GenerateKey(rand.Reader)
	later := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		edit func(k *token.SealedKey)
		want string
	}{
		"public half replaced":   {func(k *token.SealedKey) { k.Public = attackerPub }, "stored public key that does not match its sealed seed"},
		"created moved":          {func(k *token.SealedKey) { k.Created = later }, "fail their authentication tag"},
		"retired by the writer":  {func(k *token.SealedKey) { k.RetiredAt = &later }, "fail their authentication tag"},
		"high-water mark forged": {func(k *token.SealedKey) { k.Mark = &token.Mark{Seq: 1, Hash: strings.Repeat("0", 64)} }, "fail their authentication tag"},
		"auth tag stripped":      {func(k *token.SealedKey) { k.Auth = nil }, "lost its authentication tag"},
		"auth tag garbled":       {func(k *token.SealedKey) { k.Auth[len(k.Auth)-1] ^= 1 }, "fail their authentication tag"},
		"seed truncated":         {func(k *token.SealedKey) { k.Sealed = k.Sealed[:20] }, "does not open under this master key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, st, sealer, c := setup(t)
			k := only(t, st)
			k.Auth = bytes.Clone(k.Auth)
			tc.edit(&k)
			st.m[k.KID] = k
			_, err := token.LoadKeyring(context.Background(), st, sealer, time.Hour, c.Now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "does not open") && (!errors.Is(err, token.ErrTampered) || !strings.Contains(err.Error(), "restore pamctl.db from a backup")) {
				t.Fatalf("error does not match ErrTampered or say what to do: %v", err)
			}
		})
	}
}

// TestKeyRecordRenamedRefused moves a record under another kid: the seed is
// sealed bound to its kid, so it no longer opens.
func TestKeyRecordRenamedRefused(t *testing.T) {
	_, st, sealer, c := setup(t)
	k := only(t, st)
	delete(st.m, k.KID)
	k.KID = "attacker-kid"
	st.m[k.KID] = k
	_, err := token.LoadKeyring(context.Background(), st, sealer, time.Hour, c.Now)
	if !errors.Is(err, vault.ErrWrongMasterKey) || !strings.Contains(err.Error(), `signing key "attacker-kid" does not open`) {
		t.Fatalf("got %v", err)
	}
}

// TestKeyRecordFromAnotherDeploymentRefused copies a valid record of
// deployment B into deployment A: it is sealed under B's master key.
func TestKeyRecordFromAnotherDeploymentRefused(t *testing.T) {
	_, stA, sealerA, c := setup(t)
	_, stB, _, _ := setup(t)
	kb := only(t, stB)
	stA.m[kb.KID] = kb
	_, err := token.LoadKeyring(context.Background(), stA, sealerA, time.Hour, c.Now)
	if !errors.Is(err, vault.ErrWrongMasterKey) || !strings.Contains(err.Error(), "a record from another deployment") {
		t.Fatalf("got %v", err)
	}
}

// TestDeletedSuccessorKeyRefused deletes the newest key record: the
// retired key names it as its successor.
func TestDeletedSuccessorKeyRefused(t *testing.T) {
	kr, st, sealer, c := setup(t)
	newKid, err := kr.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	delete(st.m, newKid)
	_, err = token.LoadKeyring(context.Background(), st, sealer, time.Hour, c.Now)
	if !errors.Is(err, token.ErrTampered) || !strings.Contains(err.Error(), "a newer signing key was deleted") {
		t.Fatalf("got %v", err)
	}
}

// TestLegacyKeyRecordUpgraded loads a record written before authentication
// tags (seed bound to "signing-key:"+kid, no auth): it is checked against
// its seed, then rewritten authenticated. A legacy record whose public half
// was replaced is refused like any other.
func TestLegacyKeyRecordUpgraded(t *testing.T) {
	mk, _ := vault.GenerateMasterKey()
	sealer, _ := vault.NewSealer(mk)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sealed, err := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	legacy := token.SealedKey{KID: kid, Public: pub, Sealed: sealed, Created: created}

	bad := legacy
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	bad.Public = other
	st := &memKeys{m: map[string]token.SealedKey{kid: bad}}
	if _, err := token.LoadKeyring(context.Background(), st, sealer, time.Hour, nil); !errors.Is(err, token.ErrTampered) {
		t.Fatalf("legacy record with a replaced public half: %v", err)
	}

	st = &memKeys{m: map[string]token.SealedKey{kid: legacy}}
	kr, err := token.LoadKeyring(context.Background(), st, sealer, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if kr.ActiveKID() != kid {
		t.Fatalf("active %s, want the legacy key %s", kr.ActiveKID(), kid)
	}
	up := st.m[kid]
	if len(up.Auth) == 0 || bytes.Equal(up.Sealed, sealed) {
		t.Fatal("legacy record was not rewritten with a tag and a v2 seal")
	}
	// The upgraded record cannot be turned back into a legacy one.
	up.Auth = nil
	st.m[kid] = up
	if _, err := token.LoadKeyring(context.Background(), st, sealer, time.Hour, nil); !errors.Is(err, token.ErrTampered) {
		t.Fatalf("downgraded record: %v", err)
	}
}

// TestHighWaterPersistsAndOnlyRises records heads and reloads the ring.
func TestHighWaterPersistsAndOnlyRises(t *testing.T) {
	kr, st, sealer, c := setup(t)
	ctx := context.Background()
	if _, _, ok := kr.HighWater(); ok {
		t.Fatal("fresh ring has a high-water mark")
	}
	h5, h9 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	if err := kr.RaiseHighWater(ctx, kr.ActiveKID(), 9, h9); err != nil {
		t.Fatal(err)
	}
	if err := kr.RaiseHighWater(ctx, kr.ActiveKID(), 5, h5); err != nil {
		t.Fatal(err)
	}
	old := kr.ActiveKID()
	if _, err := kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	kr2, err := token.LoadKeyring(ctx, st, sealer, time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if seq, hash, ok := kr2.HighWater(); !ok || seq != 9 || hash != h9 {
		t.Fatalf("high water after reload: %d %s %v", seq, hash, ok)
	}
	if err := kr2.RaiseHighWater(ctx, "nope", 10, h9); err == nil {
		t.Fatal("mark for an unknown key accepted")
	}
	// Rolling the old key's record back to before its mark is refused:
	// the record's tag covers the mark.
	rec := st.m[old]
	rec.Mark = &token.Mark{Seq: 5, Hash: h5}
	st.m[old] = rec
	if _, err := token.LoadKeyring(ctx, st, sealer, time.Hour, c.Now); !errors.Is(err, token.ErrTampered) {
		t.Fatalf("lowered mark: %v", err)
	}
}

// TestConcurrentMarksAndRotations: marks and rotations rewrite the same
// records; neither may lose the other's fields (a lost retirement would
// leave two active keys, a lost mark a lower high-water mark).
func TestConcurrentMarksAndRotations(t *testing.T) {
	kr, st, sealer, c := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := kr.Rotate(ctx); err != nil {
				t.Error(err)
			}
		}()
		go func(i int) {
			defer wg.Done()
			for j := 1; j <= 20; j++ {
				seq := uint64(i*100 + j)
				if err := kr.RaiseHighWater(ctx, kr.ActiveKID(), seq, strings.Repeat("c", 64)); err != nil {
					t.Error(err)
				}
				kr.PublicKey(kr.ActiveKID())
			}
		}(i)
	}
	wg.Wait()
	want, _, _ := kr.HighWater()
	kr2, err := token.LoadKeyring(ctx, st, sealer, time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := kr2.HighWater(); got != want || kr2.ActiveKID() != kr.ActiveKID() {
		t.Fatalf("after reload: mark %d (want %d), active %s (want %s)", got, want, kr2.ActiveKID(), kr.ActiveKID())
	}
	active := 0
	for _, k := range st.m {
		if k.RetiredAt == nil {
			active++
		}
	}
	if active != 1 {
		t.Fatalf("%d unretired keys stored, want 1", active)
	}
}

// The key records' tags anchor whether the store's records are sealed
// (authenticated under the master key): a new deployment is from its
// first key; an older one is not until MarkRecordsSealed re-tags every
// key record, after which no key record from before (put back from an
// older copy) is taken, and other replicas see the mark on reload.
func TestRecordsSealedMark(t *testing.T) {
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	sealer, _ := vault.NewSealer(mk)

	fresh, err := token.LoadKeyring(ctx, &memKeys{m: map[string]token.SealedKey{}}, sealer, time.Hour, nil)
	if err != nil || !fresh.RecordsSealed() {
		t.Fatalf("a new deployment's records are not sealed from the start: %v", err)
	}

	// An older deployment: a legacy record, upgraded to a v2 tag.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sealed, _ := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	st := &memKeys{m: map[string]token.SealedKey{kid: {KID: kid, Public: pub, Sealed: sealed, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	kr, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil)
	if err != nil || kr.RecordsSealed() {
		t.Fatalf("an older deployment loads as sealed (%v)", err)
	}
	if _, err := kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil) // another replica
	if err != nil || other.RecordsSealed() {
		t.Fatalf("a rotation before the upgrade marked the records sealed (%v)", err)
	}
	before := map[string]token.SealedKey{}
	for k, v := range st.m {
		before[k] = v
	}
	if err := kr.MarkRecordsSealed(ctx); err != nil || !kr.RecordsSealed() {
		t.Fatalf("mark: %v", err)
	}
	for k, v := range st.m {
		if bytes.Equal(v.Auth, before[k].Auth) {
			t.Fatalf("key record %s was not re-tagged", k)
		}
	}
	if err := other.Reload(ctx); err != nil || !other.RecordsSealed() {
		t.Fatalf("another replica does not see the mark on reload: %v", err)
	}
	again, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil)
	if err != nil || !again.RecordsSealed() {
		t.Fatalf("after the mark: %v", err)
	}
	if _, err := again.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if again, err = token.LoadKeyring(ctx, st, sealer, time.Hour, nil); err != nil || !again.RecordsSealed() {
		t.Fatalf("a rotation after the mark dropped it: %v", err)
	}
	// One key record put back from before the mark is refused.
	st.m[kid] = before[kid]
	if _, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil); !errors.Is(err, token.ErrTampered) {
		t.Fatalf("a key record from before the mark: %v", err)
	}
	if err := again.Reload(ctx); !errors.Is(err, token.ErrTampered) {
		t.Fatalf("reload with a key record from before the mark: %v", err)
	}
}
