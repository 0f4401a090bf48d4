package etcdstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// between is a replica's store whose next UpdateKeys runs hook after its
// read and before its write: another replica writing in between.
type between struct {
	*etcdstore.DB
	mu   sync.Mutex
	hook func()
}

func (b *between) UpdateKeys(ctx context.Context, fn func([]token.SealedKey) ([]token.SealedKey, error)) error {
	return b.DB.UpdateKeys(ctx, func(stored []token.SealedKey) ([]token.SealedKey, error) {
		recs, err := fn(stored)
		b.mu.Lock()
		h := b.hook
		b.hook = nil
		b.mu.Unlock()
		if h != nil {
			h()
		}
		return recs, err
	})
}

// twoReplicas stores a key record from before authentication tags under
// a fresh prefix and returns two stores on it (replicas A and B) and the
// sealer.
func twoReplicas(t *testing.T, c *etcdtest.Cluster) (*etcdstore.DB, *between, *vault.Sealer) {
	t.Helper()
	mk, _ := vault.GenerateMasterKey()
	sealer, _ := vault.NewSealer(mk)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sealed, err := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	if err != nil {
		t.Fatal(err)
	}
	a := openOn(t, c)
	if err := a.SaveKey(context.Background(), token.SealedKey{KID: kid, Public: pub, Sealed: sealed, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	return a, &between{DB: openAt(t, c, a.Prefix())}, sealer
}

// Two replicas upgrading together on etcd: replica A marks the records
// sealed and raises the mark to 42 between replica B's read and write,
// in B's MarkRecordsSealed and then in B's RaiseHighWater to 10. The
// compare-and-swap on the key records' mod revisions fails, B reads
// again, and neither the mark nor the v3 tag is lost.
func TestKeysUpdateComparesAndSwaps(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	for _, op := range []string{"MarkRecordsSealed", "RaiseHighWater"} {
		t.Run(op, func(t *testing.T) {
			sa, sb, sealer := twoReplicas(t, c)
			a, err := token.LoadKeyring(ctx, sa, sealer, time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := token.LoadKeyring(ctx, sb, sealer, time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			ran := false
			sb.hook = func() {
				ran = true
				if err := a.MarkRecordsSealed(ctx); err != nil {
					t.Error(err)
				}
				if err := a.RaiseHighWater(ctx, a.ActiveKID(), 42, strings.Repeat("a", 64)); err != nil {
					t.Error(err)
				}
			}
			if op == "MarkRecordsSealed" {
				err = b.MarkRecordsSealed(ctx)
			} else {
				err = b.RaiseHighWater(ctx, b.ActiveKID(), 10, strings.Repeat("b", 64))
			}
			if err != nil || !ran {
				t.Fatalf("%s: %v (A wrote in between: %v)", op, err, ran)
			}
			fresh, err := token.LoadKeyring(ctx, sa, sealer, time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			if seq, _, ok := fresh.HighWater(); !ok || seq != 42 || !fresh.RecordsSealed() {
				t.Fatalf("after B's %s: mark %d (ok %v), sealed %v; want 42, true", op, seq, ok, fresh.RecordsSealed())
			}
		})
	}
}

// Two replicas starting on a new prefix both create the first key; A's
// lands between B's read (no keys) and B's write. B's write fails the
// compare (a key record was added under the prefix), B reads again and
// retires A's key for its own: one key is left unretired.
func TestKeysUpdateSeesAnAddedKey(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	mk, _ := vault.GenerateMasterKey()
	sealer, _ := vault.NewSealer(mk)
	sa := openOn(t, c)
	sb := &between{DB: openAt(t, c, sa.Prefix())}
	sb.hook = func() {
		if _, err := token.LoadKeyring(ctx, sa, sealer, time.Hour, nil); err != nil {
			t.Error(err)
		}
	}
	b, err := token.LoadKeyring(ctx, sb, sealer, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := sa.Keys(ctx)
	if err != nil || len(ks) != 2 {
		t.Fatalf("%d key records, %v; want 2", len(ks), err)
	}
	for _, k := range ks {
		if (k.RetiredAt == nil) != (k.KID == b.ActiveKID()) {
			t.Fatalf("key %s (B's active: %v) retired %v: want only B's unretired", k.KID, k.KID == b.ActiveKID(), k.RetiredAt)
		}
	}
}
