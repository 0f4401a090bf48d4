package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pamctl/pamctl/broker"

	bolt "go.etcd.io/bbolt"
)

var _ broker.Store = (*DB)(nil)

// CreateRequest stores a new request and its index entries. It goes through
// Batch so concurrent requesters share a commit; the function replaces
// whatever is stored under the id (with its index entries), so a Batch
// retry is harmless.
func (db *DB) CreateRequest(_ context.Context, r *broker.Request) error {
	if r.ID == "" {
		return errors.New("store: request without an id")
	}
	rk := db.recordKey()
	raw, err := rk.Encode(RecordName(KindRequests, r.ID), r)
	if err != nil {
		return err
	}
	return db.bolt.Batch(func(tx *bolt.Tx) error {
		var old *broker.Request
		if prev := tx.Bucket(bucketRequests).Get([]byte(r.ID)); prev != nil {
			old = new(broker.Request)
			if err := rk.Decode(RecordName(KindRequests, r.ID), prev, old); err != nil {
				return err
			}
		}
		return putRequest(tx, old, r, raw)
	})
}

// GetRequest loads one request.
func (db *DB) GetRequest(_ context.Context, id string) (*broker.Request, error) {
	var r broker.Request
	err := db.bolt.View(func(tx *bolt.Tx) error { return db.getRec(tx, KindRequests, bucketRequests, []byte(id), &r) })
	if errors.Is(err, ErrNotFound) {
		return nil, broker.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// UpdateRequest is a compare-and-swap: fn sees the stored request inside one
// write transaction, and its error (if any) rolls everything back. The
// indexes move with the record in the same transaction.
func (db *DB) UpdateRequest(_ context.Context, id string, fn func(*broker.Request) error) (*broker.Request, error) {
	var r broker.Request
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		stored := tx.Bucket(bucketRequests).Get([]byte(id))
		if stored == nil {
			return broker.ErrNotFound
		}
		rk, name := db.recordKey(), RecordName(KindRequests, id)
		var old broker.Request
		if err := rk.Decode(name, stored, &old); err != nil {
			return err
		}
		if err := rk.Decode(name, stored, &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		if r.ID != id {
			return fmt.Errorf("store: update may not change a request's id (%s -> %s)", id, r.ID)
		}
		raw, err := rk.Encode(name, &r)
		if err != nil {
			return err
		}
		return putRequest(tx, &old, &r, raw)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// RequestsInState returns the requests in state, only by's when by is set,
// through the state and owner indexes.
func (db *DB) RequestsInState(_ context.Context, state broker.State, by *broker.Identity) ([]*broker.Request, error) {
	var out []*broker.Request
	err := db.bolt.View(func(tx *bolt.Tx) error {
		bucket, prefix := bucketReqState, stateKey(state, "")
		if by != nil {
			bucket, prefix = bucketReqOwner, ownerKey(*by, state, "")
		}
		// Each record must have the entry that led to it (loadIndexed):
		// the indexes carry no authenticator.
		var err error
		out, err = db.loadPrefix(tx, bucket, prefix, out)
		return err
	})
	return out, err
}

// RequestsOf returns the requests who made, reviewed or ended, through the
// party index.
func (db *DB) RequestsOf(_ context.Context, who broker.Identity) ([]*broker.Request, error) {
	var out []*broker.Request
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		out, err = db.loadPrefix(tx, bucketReqParty, principalKey(who), out)
		return err
	})
	return out, err
}

// DueRequests returns the live requests whose deadline is at or before t,
// walking the deadline index from its start to t.
func (db *DB) DueRequests(_ context.Context, t time.Time) ([]*broker.Request, error) {
	var out []*broker.Request
	limit := timePrefix(t)
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReqDue).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:timeLen], limit) <= 0; k, _ = c.Next() {
			r, err := db.loadIndexed(tx, bucketReqDue, k, timeLen)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// GrantsExpiringAfter returns the ever-approved requests whose ExpiresAt is
// after t. It reads every request record, not the grant-expiry index: the
// broker builds its revocation set from it at start, and an index entry
// deleted by a writer of the data file (indexes carry no authenticator)
// must not drop a revoked grant from that set.
func (db *DB) GrantsExpiringAfter(_ context.Context, t time.Time) ([]*broker.Request, error) {
	var out []*broker.Request
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return eachRec(db, tx, KindRequests, bucketRequests, func(r *broker.Request) bool {
			if r.ApprovedAt != nil && r.ExpiresAt != nil && r.ExpiresAt.After(t) {
				out = append(out, r)
			}
			return true
		})
	})
	return out, err
}

// pruneBatch bounds one pruning transaction, so a first prune of a large
// history does not hold the write lock for long.
const pruneBatch = 1000

// PruneRequests deletes the requests that settled before t (see
// broker.RequestPruner), with their index entries, pruneBatch per
// transaction.
func (db *DB) PruneRequests(ctx context.Context, before time.Time) (int, error) {
	limit := timePrefix(before)
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReqSettled).Cursor()
			var keys [][]byte
			for k, _ := c.First(); k != nil && bytes.Compare(k[:timeLen], limit) < 0 && len(keys) < pruneBatch; k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				r, err := db.loadIndexed(tx, bucketReqSettled, k, timeLen)
				if err != nil {
					return err
				}
				if err := deleteRequest(tx, r); err != nil {
					return err
				}
			}
			n = len(keys)
			return nil
		})
		total += n
		if err != nil {
			return total - n, err
		}
		if n < pruneBatch {
			return total, nil
		}
	}
}

func (db *DB) loadRequest(tx *bolt.Tx, id []byte) (*broker.Request, error) {
	var r broker.Request
	if err := db.getRec(tx, KindRequests, bucketRequests, id, &r); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("store: a request index names %q, which is not stored: the data file is inconsistent (restore it from a backup)", id)
		}
		return nil, err
	}
	return &r, nil
}

// loadIndexed loads the request the index entry key of bucket names (its
// id is key[idAt:]) and checks that the record has that very entry. The
// indexes carry no authenticator, so an entry a writer of the data file
// added (a revoked grant listed as approved, a request listed as someone
// else's) would otherwise pass for what the authenticated record says.
// putRequest writes a record and its entries in one transaction, so a
// mismatch is never pamctl's own.
func (db *DB) loadIndexed(tx *bolt.Tx, bucket, key []byte, idAt int) (*broker.Request, error) {
	r, err := db.loadRequest(tx, key[idAt:])
	if err != nil {
		return nil, err
	}
	if index := string(bucket[len("req_"):]); !HasIndexEntry(r, index, key) {
		return nil, ForgedIndexEntry(r, index)
	}
	return r, nil
}

// loadPrefix appends the requests named by the keys of bucket under prefix
// (each key is prefix + id), each checked against its entry (loadIndexed).
func (db *DB) loadPrefix(tx *bolt.Tx, bucket, prefix []byte, out []*broker.Request) ([]*broker.Request, error) {
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		r, err := db.loadIndexed(tx, bucket, k, len(prefix))
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}
