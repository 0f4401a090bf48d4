package store

import (
	"bytes"
	"context"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store/storetest"
)

// The storetest suites against bbolt; store/etcdstore runs the same ones
// against etcd.

func TestSessionsConformance(t *testing.T) {
	storetest.Sessions(t, func(t *testing.T) broker.SessionStore { return openTest(t, t.TempDir()) })
}

func TestKeysConformance(t *testing.T) {
	storetest.Keys(t, func(t *testing.T) storetest.KeyData { return openTest(t, t.TempDir()) }, ErrKeysMissing)
}

func TestVaultConformance(t *testing.T) {
	storetest.Vault(t, func(t *testing.T) vault.Store { return openTest(t, t.TempDir()) })
}

func TestEnrollmentsConformance(t *testing.T) {
	storetest.Enrollments(t, func(t *testing.T) link.Store { return openTest(t, t.TempDir()) })
}

func TestSinkCursorsConformance(t *testing.T) {
	storetest.SinkCursors(t, func(t *testing.T) auditsink.CursorStore { return openTest(t, t.TempDir()) })
}

func TestForgedRecordsConformance(t *testing.T) {
	storetest.Forged(t, storetest.ForgedBackend{
		New: func(t *testing.T) storetest.RecordStore { return openTest(t, t.TempDir()) },
		Raw: func(t *testing.T, s storetest.RecordStore, name string) []byte {
			kind, key, _ := strings.Cut(name, "/")
			var out []byte
			s.(*DB).bolt.View(func(tx *bolt.Tx) error {
				if b := tx.Bucket([]byte(kind)); b != nil {
					out = bytes.Clone(b.Get([]byte(key)))
				}
				return nil
			})
			return out
		},
		WriteRaw: func(t *testing.T, s storetest.RecordStore, name string, raw []byte) {
			kind, key, _ := strings.Cut(name, "/")
			err := s.(*DB).bolt.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte(kind))
				if err != nil {
					return err
				}
				return b.Put([]byte(key), raw)
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		Seal: func(s storetest.RecordStore) (int, error) {
			return s.(*DB).SealRecords(context.Background(), testRecKey)
		},
		Encode:    EncodeRecord,
		ErrForged: ErrRecordForged,
		Observe: func(s storetest.RecordStore, fn func(string, error)) {
			s.(*DB).SetRecordKey(testRecKey.OnForged(fn))
		},
		WriteIndex: func(t *testing.T, s storetest.RecordStore, index string, r *broker.Request) {
			boltIndex(t, s.(*DB), index, r, func(b *bolt.Bucket, k []byte) error { return b.Put(k, []byte{}) })
		},
		DropIndex: func(t *testing.T, s storetest.RecordStore, index string, r *broker.Request) {
			boltIndex(t, s.(*DB), index, r, func(b *bolt.Bucket, k []byte) error { return b.Delete(k) })
		},
	})
}

// boltIndex applies fn to each of r's entries in request index index.
func boltIndex(t *testing.T, db *DB, index string, r *broker.Request, fn func(*bolt.Bucket, []byte) error) {
	t.Helper()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, e := range RequestIndexEntries(r) {
			if e.Index == index {
				if err := fn(tx.Bucket([]byte("req_"+index)), e.Key); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
