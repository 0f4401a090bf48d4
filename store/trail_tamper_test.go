package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

// deployment is what `pamctl serve` assembles from a data dir: the store,
// the vault (master key check), the keyring and the audit log signed by it.
type deployment struct {
	db   *DB
	keys *token.Keyring
	log  *AuditLog
}

// start opens dir the way the server does (with the RecordKey the vault
// derives, unless opts has one) and returns the first error.
func start(t *testing.T, dir string, mk vault.MasterKey, opts AuditOptions) (*deployment, error) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{db: db}
	fail := func(err error) (*deployment, error) { db.Close(); return nil, err }
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		return fail(err)
	}
	if d.keys, err = token.LoadKeyring(ctx, db, v.Sealer(), time.Hour, nil); err != nil {
		return fail(err)
	}
	opts.Signer = d.keys
	if opts.RecordKey == nil {
		if opts.RecordKey, err = v.DerivedKey(AuditRecordKeyPurpose); err != nil {
			return fail(err)
		}
	}
	if d.log, err = db.AuditLog(opts); err != nil {
		return fail(err)
	}
	t.Cleanup(func() { d.stop() })
	return d, nil
}

func (d *deployment) stop() {
	if d.log != nil {
		d.log.Close()
		d.log = nil
	}
	d.db.Close()
}

func (d *deployment) verify() (audit.Report, error) {
	return d.log.Verify(context.Background(), audit.KeyFunc(d.keys.AnyPublicKey))
}

// newDeployment starts a fresh deployment in a temp dir with n events and
// a signed head, stops it and returns the dir and master key.
func newDeployment(t *testing.T, n int) (string, vault.MasterKey) {
	t.Helper()
	dir := t.TempDir()
	mk, _ := vault.GenerateMasterKey()
	d, err := start(t, dir, mk, AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, d.log, n)
	if _, err := d.log.SignHead(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := d.verify(); err != nil || rep.Events != uint64(n) || rep.HighWater == nil || rep.HighWater.Seq != uint64(n) {
		t.Fatalf("untouched deployment: %+v, %v", rep, err)
	}
	d.stop()
	return dir, mk
}

// editKeys rewrites every stored key record with fn.
func editKeys(t *testing.T, dir string, fn func(k *token.SealedKey)) {
	t.Helper()
	tamperFile(t, dir, func(tx *bolt.Tx) error {
		var ks []token.SealedKey
		if err := each(tx, bucketKeys, func(k *token.SealedKey) bool { ks = append(ks, *k); return true }); err != nil {
			return err
		}
		for _, k := range ks {
			fn(&k)
			if err := put(tx, bucketKeys, []byte(k.KID), k); err != nil {
				return err
			}
		}
		return nil
	})
}

// forgeTrail replaces the whole trail with n fabricated events chained from
// genesis and a head signed by priv under kid: everything a writer of the
// data file can do without the master key.
func forgeTrail(t *testing.T, dir string, n int, kid string, priv ed25519.PrivateKey) {
	t.Helper()
	tamperFile(t, dir, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketAudit); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketAudit)
		if err != nil {
			return err
		}
		prev := audit.GenesisHash
		for i := 1; i <= n; i++ {
			e := benchEvent(i)
			e.Prompt = "fabricated"
			d, err := audit.NewDraft(e, auditT0)
			if err != nil {
				return err
			}
			line, hash, err := d.Seal(uint64(i), prev)
			if err != nil {
				return err
			}
			if err := b.Put(u64(uint64(i)), wrapLine(line)); err != nil {
				return err
			}
			prev = hash
		}
		h := &audit.SignedHead{Seq: uint64(n), Hash: prev, Time: auditT0}
		if err := h.Sign(audit.Ed25519Signer{KID: kid, Key: priv}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAuditMeta).Delete(keyAuditAnchor); err != nil {
			return err
		}
		return put(tx, bucketAuditMeta, keyAuditHead, h)
	})
}

// TestStartRefusesAReplacedPublicKey is the whole attack on the old code:
// replace the signing key's public half, rewrite the trail and sign a new
// head with the attacker's key. The old keyring trusted the stored public
// half, so verify said intact and the JWKS published the attacker's key.
func TestStartRefusesAReplacedPublicKey(t *testing.T) {
	dir, mk := newDeployment(t, 20)
	apub, apriv, _ := ed25519.GenerateKey(rand.Reader)
	var kid string
	editKeys(t, dir, func(k *token.SealedKey) { k.Public, kid = apub, k.KID })
	forgeTrail(t, dir, 5, kid, apriv)

	_, err := start(t, dir, mk, AuditOptions{})
	want := `token: a stored signing key failed its integrity check: key "` + kid + `" has a stored public key that does not match its sealed seed; the data file was modified without the master key or copied from another deployment: restore pamctl.db from a backup`
	if err == nil || err.Error() != want || !errors.Is(err, token.ErrTampered) {
		t.Fatalf("start = %v\nwant   %s", err, want)
	}
}

// TestStartRefusesAKeyRecordFromAnotherDeployment swaps in the key record
// and the whole trail of another deployment (both valid there).
func TestStartRefusesAKeyRecordFromAnotherDeployment(t *testing.T) {
	dirA, mkA := newDeployment(t, 10)
	dirB, _ := newDeployment(t, 10)
	var recs, events, meta [][2][]byte
	copyBucket := func(name []byte, out *[][2][]byte) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			return tx.Bucket(name).ForEach(func(k, v []byte) error {
				*out = append(*out, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
				return nil
			})
		}
	}
	tamperFile(t, dirB, copyBucket(bucketKeys, &recs))
	tamperFile(t, dirB, copyBucket(bucketAudit, &events))
	tamperFile(t, dirB, copyBucket(bucketAuditMeta, &meta))
	tamperFile(t, dirA, func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKeys, bucketAudit, bucketAuditMeta} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		for _, set := range []struct {
			b  []byte
			kv [][2][]byte
		}{{bucketKeys, recs}, {bucketAudit, events}, {bucketAuditMeta, meta}} {
			for _, kv := range set.kv {
				if err := tx.Bucket(set.b).Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	_, err := start(t, dirA, mkA, AuditOptions{})
	if !errors.Is(err, vault.ErrWrongMasterKey) || !strings.Contains(err.Error(), "a record from another deployment") {
		t.Fatalf("start = %v", err)
	}
}

// TestStartRefusesAnEmptiedTrail deletes every event and the signed head
// (and, in variants, rolls back to an older head): the signing key's
// authenticated record still says a head was signed at the last seq. The
// old code started and verified the empty trail as intact.
func TestStartRefusesAnEmptiedTrail(t *testing.T) {
	const n = 12
	cases := []struct {
		name   string
		tamper func(tx *bolt.Tx) error
		msg    string // the start error
		seq    uint64 // the verify break
	}{
		{"delete all events and the head", func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(bucketAudit); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketAudit); err != nil {
				return err
			}
			return tx.Bucket(bucketAuditMeta).Delete(keyAuditHead)
		}, "seq 1: expected events through seq 12 (a head was signed there), found no events", 1},
		{"delete the tail after an older head", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			for s := uint64(7); s <= n; s++ {
				if err := b.Delete(u64(s)); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketAuditMeta).Delete(keyAuditHead)
		}, "seq 7: expected events through seq 12 (a head was signed there), found last event seq 6", 7},
		{"delete only the head", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAuditMeta).Delete(keyAuditHead)
		}, "seq 12: expected a signed head at or after seq 12, found no signed head", 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, mk := newDeployment(t, n)
			tamperFile(t, dir, c.tamper)
			_, err := start(t, dir, mk, AuditOptions{})
			want := "store: audit: the trail is shorter than the high-water mark in the signing key's authenticated record (" + c.msg + "): events, the signed head or the anchor were deleted, or pamctl.db was rolled back. Run `pamctl audit verify` to see what is missing, and restore pamctl.db from a backup"
			if err == nil || err.Error() != want || !errors.Is(err, ErrBelowHighWater) || !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("start = %v\nwant   %s", err, want)
			}
			// audit verify opens the damaged trail for inspection and fails.
			d, err := start(t, dir, mk, AuditOptions{Inspect: true})
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.verify()
			wantBreak(t, err, c.seq, audit.BreakHighWater)
			// No head is signed over it, even when asked.
			if _, err := d.log.SignHead(context.Background()); !errors.Is(err, ErrBelowHighWater) {
				t.Fatalf("SignHead over a cut trail = %v", err)
			}
		})
	}
}

// TestHighWaterAfterPrune: a mark pruned behind the signed anchor is
// fine; deleting the anchor and the events after a prune is not.
func TestHighWaterAfterPrune(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk, _ := vault.GenerateMasterKey()
	clock := newFakeClock()
	d, err := start(t, dir, mk, AuditOptions{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, d.log, 10)
	if _, err := d.log.SignHead(ctx); err != nil {
		t.Fatal(err)
	}
	cut := clock.Now()
	appendN(t, d.log, 5)
	if res, err := d.log.Prune(ctx, cut); err != nil || res.Deleted != 10 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	rep, err := d.verify()
	if err != nil || rep.HighWater == nil || rep.HighWater.Seq != 16 || rep.Scope != audit.ScopeTrail {
		t.Fatalf("after prune: %+v %v", rep, err)
	}
	d.stop()
	if d, err = start(t, dir, mk, AuditOptions{}); err != nil {
		t.Fatalf("restart after prune: %v", err)
	}
	d.stop()

	tamperFile(t, dir, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketAudit); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketAudit); err != nil {
			return err
		}
		b := tx.Bucket(bucketAuditMeta)
		if err := b.Delete(keyAuditHead); err != nil {
			return err
		}
		return b.Delete(keyAuditAnchor)
	})
	if _, err := start(t, dir, mk, AuditOptions{}); !errors.Is(err, ErrBelowHighWater) {
		t.Fatalf("start after deleting the pruned trail = %v", err)
	}
}

// TestStartRefusesAHeadOfAnotherKey: deleting the only key record makes
// the keyring generate a new key, and swapping in another deployment's
// signed head brings a kid this one never had. Either way the stored head
// is not signed by a key of this deployment: the old code started (and
// would have signed new heads over the trail with the new key).
func TestStartRefusesAHeadOfAnotherKey(t *testing.T) {
	const want = "store: audit: the trail's head is not signed by a key of this deployment"
	t.Run("only key record deleted", func(t *testing.T) {
		dir, mk := newDeployment(t, 8)
		tamperFile(t, dir, func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(bucketKeys); err != nil {
				return err
			}
			_, err := tx.CreateBucket(bucketKeys)
			return err
		})
		// The keyring no longer mints a key over old data (before, the
		// new key loaded and the head check caught it).
		_, err := start(t, dir, mk, AuditOptions{})
		if err == nil || !errors.Is(err, ErrKeysMissing) || !strings.Contains(err.Error(), "signing keys are missing from "+dir+"/pamctl.db") {
			t.Fatalf("start = %v", err)
		}
	})
	t.Run("head of another deployment", func(t *testing.T) {
		dirA, mkA := newDeployment(t, 8)
		dirB, _ := newDeployment(t, 8)
		var head []byte
		tamperFile(t, dirB, func(tx *bolt.Tx) error {
			head = bytes.Clone(tx.Bucket(bucketAuditMeta).Get(keyAuditHead))
			return nil
		})
		tamperFile(t, dirA, func(tx *bolt.Tx) error { return tx.Bucket(bucketAuditMeta).Put(keyAuditHead, head) })
		if _, err := start(t, dirA, mkA, AuditOptions{}); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("start = %v", err)
		}
	})
}
