package token_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

// Review finding: MarkRecordsSealed rewrites every key record from the
// ring's in-memory copy, with no compare against what is stored. On etcd
// every upgrading replica runs it at its start (useRecordKey). Replica A
// finishes the upgrade first, serves, signs a head and raises the
// high-water mark on its key record; replica B, which loaded the ring
// before that (its SealRecords over a large store still running), then
// marks too and writes the key record back with the old (here: no) mark.
// The next start reads a lowered mark: truncation down to it is no longer
// refused, which RaiseHighWater says no one without the master key can do.
func TestReviewConcurrentMarkRecordsSealedLowersHighWater(t *testing.T) {
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	sealer, _ := vault.NewSealer(mk)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sealed, _ := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	st := &memKeys{m: map[string]token.SealedKey{kid: {KID: kid, Public: pub, Sealed: sealed, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}}

	a, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil) // replica A
	if err != nil || a.RecordsSealed() {
		t.Fatalf("A: %v", err)
	}
	b, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil) // replica B, same moment
	if err != nil || b.RecordsSealed() {
		t.Fatalf("B: %v", err)
	}
	if err := a.MarkRecordsSealed(ctx); err != nil {
		t.Fatal(err)
	}
	hash := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	if err := a.RaiseHighWater(ctx, a.ActiveKID(), 42, hash); err != nil { // A serves and signs a head
		t.Fatal(err)
	}
	if err := b.MarkRecordsSealed(ctx); err != nil { // B's upgrade ends later
		t.Fatal(err)
	}
	fresh, err := token.LoadKeyring(ctx, st, sealer, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if seq, _, ok := fresh.HighWater(); !ok || seq < 42 {
		t.Fatalf("high-water mark after two replicas marked the records sealed: %d (ok %v), want 42: B's MarkRecordsSealed wrote back its stale key record", seq, ok)
	}
}
