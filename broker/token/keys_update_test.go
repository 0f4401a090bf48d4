package token_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

// casKeys is a token.KeyUpdater in memory: UpdateKeys writes only if no
// key record was written since its read, else runs fn again. between, if
// set, runs once after fn and before the write: another replica's write
// coming in between.
type casKeys struct {
	mu      sync.Mutex
	m       map[string]token.SealedKey
	ver     int
	between func()
	retries int
}

func (s *casKeys) SaveKey(_ context.Context, k token.SealedKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k.KID] = k
	s.ver++
	return nil
}

func (s *casKeys) Keys(context.Context) ([]token.SealedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]token.SealedKey, 0, len(s.m))
	for _, k := range s.m {
		out = append(out, k)
	}
	return out, nil
}

func (s *casKeys) UpdateKeys(ctx context.Context, fn func([]token.SealedKey) ([]token.SealedKey, error)) error {
	for {
		s.mu.Lock()
		ver := s.ver
		s.mu.Unlock()
		stored, _ := s.Keys(ctx)
		recs, err := fn(stored)
		if err != nil {
			return err
		}
		s.mu.Lock()
		h := s.between
		s.between = nil
		s.mu.Unlock()
		if h != nil {
			h()
		}
		s.mu.Lock()
		if s.ver != ver {
			s.retries++
			s.mu.Unlock()
			continue
		}
		for _, r := range recs {
			s.m[r.KID] = r
		}
		if len(recs) > 0 {
			s.ver++
		}
		s.mu.Unlock()
		return nil
	}
}

// hookKeys is a plain KeyStore whose n-th Keys call (from 1) runs
// onKeys[n] first.
type hookKeys struct {
	*memKeys
	mu     sync.Mutex
	n      int
	onKeys map[int]func()
}

func (s *hookKeys) Keys(ctx context.Context) ([]token.SealedKey, error) {
	s.mu.Lock()
	s.n++
	h := s.onKeys[s.n]
	s.mu.Unlock()
	if h != nil {
		h()
	}
	return s.memKeys.Keys(ctx)
}

// legacyKeys returns a sealer and the record of a key from before
// authentication tags (the state replicas upgrade from together).
func legacyKeys(t *testing.T) (*vault.Sealer, map[string]token.SealedKey) {
	t.Helper()
	mk, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := vault.NewSealer(mk)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := token.KeyID(pub)
	sealed, err := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	if err != nil {
		t.Fatal(err)
	}
	return sealer, map[string]token.SealedKey{kid: {KID: kid, Public: pub, Sealed: sealed, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
}

var hash42 = strings.Repeat("a", 64)

// wantMarked checks that a fresh load of st sees the records sealed and
// the high-water mark at want.
func wantMarked(t *testing.T, st token.KeyStore, sealer *vault.Sealer, want uint64) *token.Keyring {
	t.Helper()
	fresh := loadRing(t, st, sealer)
	if !fresh.RecordsSealed() {
		t.Error("a fresh load does not see the records marked sealed")
	}
	if seq, _, ok := fresh.HighWater(); !ok || seq != want {
		t.Errorf("fresh load: high-water mark %d (ok %v), want %d", seq, ok, want)
	}
	return fresh
}

// loadRing loads a keyring over st, as a replica starting does.
func loadRing(t *testing.T, st token.KeyStore, sealer *vault.Sealer) *token.Keyring {
	t.Helper()
	kr, err := token.LoadKeyring(context.Background(), st, sealer, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// replicas loads two keyrings over st: replicas A and B, started at once.
func replicas(t *testing.T, st token.KeyStore, sealer *vault.Sealer) (a, b *token.Keyring) {
	t.Helper()
	return loadRing(t, st, sealer), loadRing(t, st, sealer)
}

// markAt is what a replica does after the upgrade: it marks the records
// sealed, then raises the high-water mark of its active key to seq.
func markAt(ctx context.Context, kr *token.Keyring, seq uint64) error {
	if err := kr.MarkRecordsSealed(ctx); err != nil {
		return err
	}
	return kr.RaiseHighWater(ctx, kr.ActiveKID(), seq, hash42)
}

// Replica B marks the records sealed while replica A marks them and
// raises the mark between B's read and B's write: the compare-and-swap
// fails, B reads again, finds every record already tagged v3 and writes
// nothing.
func TestMarkRecordsSealedRetriesOnAWriteInBetween(t *testing.T) {
	ctx := context.Background()
	sealer, m := legacyKeys(t)
	st := &casKeys{m: m}
	a, b := replicas(t, st, sealer)
	st.between = func() {
		if err := markAt(ctx, a, 42); err != nil {
			t.Error(err)
		}
	}
	ver := st.ver
	if err := b.MarkRecordsSealed(ctx); err != nil {
		t.Fatal(err)
	}
	if st.retries != 1 {
		t.Errorf("%d retries, want 1", st.retries)
	}
	if st.ver != ver+2 {
		t.Errorf("%d writes, want A's 2 alone: B wrote records already tagged v3", st.ver-ver)
	}
	if seq, _, ok := b.HighWater(); !ok || seq != 42 || !b.RecordsSealed() {
		t.Errorf("B did not take in what it read: mark %d %v, sealed %v", seq, ok, b.RecordsSealed())
	}
	wantMarked(t, st, sealer, 42)
}

// Replica B, loaded before replica A raised the mark to 42, raises it to
// 10: the stored 42 stays, and B takes it in.
func TestRaiseHighWaterKeepsAHigherStoredMark(t *testing.T) {
	ctx := context.Background()
	for _, cas := range []bool{false, true} {
		t.Run(fmt.Sprintf("cas=%v", cas), func(t *testing.T) {
			sealer, m := legacyKeys(t)
			var st token.KeyStore = &memKeys{m: m}
			if cas {
				st = &casKeys{m: m}
			}
			a, b := replicas(t, st, sealer)
			if err := markAt(ctx, a, 42); err != nil {
				t.Fatal(err)
			}
			if err := b.RaiseHighWater(ctx, b.ActiveKID(), 10, strings.Repeat("b", 64)); err != nil {
				t.Fatal(err)
			}
			if seq, _, _ := b.HighWater(); seq != 42 || !b.RecordsSealed() {
				t.Errorf("B: mark %d, sealed %v; want 42, true", seq, b.RecordsSealed())
			}
			wantMarked(t, st, sealer, 42)
		})
	}
}

// Replica A rotates; replica B, still signing with the old key, raises
// its mark: the old key stays retired for A's new one.
func TestRaiseHighWaterKeepsAnotherReplicasRetirement(t *testing.T) {
	ctx := context.Background()
	sealer, m := legacyKeys(t)
	st := &memKeys{m: m}
	a, b := replicas(t, st, sealer)
	old := a.ActiveKID()
	next, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RaiseHighWater(ctx, old, 7, hash42); err != nil {
		t.Fatal(err)
	}
	if r := st.m[old]; r.RetiredAt == nil || r.Successor != next || r.Mark == nil || r.Mark.Seq != 7 {
		t.Fatalf("old key's record: retired %v, successor %q, mark %v; want retired for %s with mark 7", r.RetiredAt, r.Successor, r.Mark, next)
	}
	if b.ActiveKID() != next {
		t.Errorf("B's active key %s, want the rotated %s", b.ActiveKID(), next)
	}
}

// The legacy upgrade writes of LoadKeyring re-read the records: replica
// A upgraded, marked and raised the mark between B's first read and its
// upgrade, and B writes nothing back over it.
func TestLoadKeyringUpgradeKeepsAnotherReplicasMark(t *testing.T) {
	ctx := context.Background()
	sealer, m := legacyKeys(t)
	mem := &memKeys{m: m}
	st := &hookKeys{memKeys: mem, onKeys: map[int]func(){2: func() {
		a, err := token.LoadKeyring(ctx, mem, sealer, time.Hour, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if err := markAt(ctx, a, 42); err != nil {
			t.Error(err)
		}
	}}}
	b := loadRing(t, st, sealer)
	if st.n != 2 {
		t.Fatalf("LoadKeyring read the keys %d times, want 2 (the load, the upgrade's re-read)", st.n)
	}
	if !b.RecordsSealed() {
		t.Error("B did not take in A's mark that the records are sealed")
	}
	wantMarked(t, mem, sealer, 42)
}

// Replicas upgrading together, each marking the records sealed and
// raising a mark while one rotates: nothing is lost.
func TestReplicasMarkRaiseAndRotateTogether(t *testing.T) {
	ctx := context.Background()
	sealer, m := legacyKeys(t)
	st := &casKeys{m: m}
	var wg sync.WaitGroup
	for i := 1; i <= 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kr, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if err := kr.MarkRecordsSealed(ctx); err != nil {
				t.Error(err)
			}
			if i == 3 {
				if _, err := kr.Rotate(ctx); err != nil {
					t.Error(err)
				}
			}
			if err := kr.RaiseHighWater(ctx, kr.ActiveKID(), uint64(i*10), hash42); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	fresh := wantMarked(t, st, sealer, 60)
	if len(st.m) != 2 {
		t.Fatalf("%d key records, want 2", len(st.m))
	}
	if _, err := fresh.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
}

// An older record of a key put back over a newer one (what a replica
// without UpdateKeys writing a stale copy leaves) is healed by this
// ring's next write: the mark it holds in memory is not lowered.
func TestNextWriteRestoresALoweredMark(t *testing.T) {
	ctx := context.Background()
	sealer, m := legacyKeys(t)
	st := &memKeys{m: m}
	a := loadRing(t, st, sealer)
	kid := a.ActiveKID()
	if err := a.RaiseHighWater(ctx, kid, 10, hash42); err != nil {
		t.Fatal(err)
	}
	stale := st.m[kid]
	if err := a.RaiseHighWater(ctx, kid, 42, hash42); err != nil {
		t.Fatal(err)
	}
	st.m[kid] = stale
	if _, err := a.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if seq, _, _ := loadRing(t, st, sealer).HighWater(); seq != 42 {
		t.Fatalf("high-water mark %d after the rotation, want 42", seq)
	}
}
