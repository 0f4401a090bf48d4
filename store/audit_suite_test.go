package store

import (
	"bytes"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store/storetest"
)

func TestAuditSuite(t *testing.T) {
	storetest.Audit(t, storetest.AuditBackend{Unauthenticated: ErrUnauthenticated, New: func(t *testing.T) storetest.AuditTrail {
		db, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return storetest.AuditTrail{
			Open: func(o storetest.AuditOptions) (audit.Log, error) {
				l, err := db.AuditLog(AuditOptions{Signer: o.Signer, Clock: o.Clock, RecordKey: o.RecordKey, Inspect: o.Inspect, OnError: o.OnError})
				if err != nil {
					return nil, err
				}
				return l, nil
			},
			Forge: func(t *testing.T, f storetest.Forgery) { forgeBolt(t, db, f) },
		}
	}})
}

// forgeBolt writes f into db's audit buckets as a writer of the data file
// would: the bucket's last key is the tip.
func forgeBolt(t *testing.T, db *DB, f storetest.Forgery) {
	t.Helper()
	if db.auditCatchUp != nil {
		// What an open log acknowledged is indexed: the indexer never
		// writes over the forgery.
		if err := db.auditCatchUp(); err != nil {
			t.Fatal(err)
		}
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		if f.Line != nil {
			if err := tx.Bucket(bucketAudit).Put(u64(f.Seq), wrapLine(f.Line)); err != nil {
				return err
			}
		}
		auth, err := tx.CreateBucketIfNotExists(bucketAuditAuth)
		if err != nil {
			return err
		}
		if f.AuthFrom == 0 {
			return auth.Delete(u64(f.Seq))
		}
		mac := auth.Get(u64(f.AuthFrom))
		if mac == nil {
			t.Fatalf("no authenticator stored for seq %d", f.AuthFrom)
		}
		return auth.Put(u64(f.Seq), bytes.Clone(mac))
	})
	if err != nil {
		t.Fatal(err)
	}
}
