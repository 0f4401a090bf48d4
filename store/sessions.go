package store

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/pamctl/pamctl/broker"

	bolt "go.etcd.io/bbolt"
)

var _ broker.SessionStore = (*DB)(nil)

// CreateSession stores a new session. Like CreateRequest it only puts by
// id, so it may go through Batch (logins share a commit).
func (db *DB) CreateSession(_ context.Context, s *broker.SessionRecord) error {
	raw, err := db.recordKey().Encode(RecordName(KindSessions, s.ID), s)
	if err != nil {
		return err
	}
	return db.bolt.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Put([]byte(s.ID), raw)
	})
}

// GetSession loads one session.
func (db *DB) GetSession(_ context.Context, id string) (*broker.SessionRecord, error) {
	var s broker.SessionRecord
	err := db.bolt.View(func(tx *bolt.Tx) error { return db.getRec(tx, KindSessions, bucketSessions, []byte(id), &s) })
	if errors.Is(err, ErrNotFound) {
		return nil, broker.ErrSessionNotFound
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// UpdateSession is a compare-and-swap: fn sees the stored session inside one
// write transaction, and its error (if any) rolls everything back.
func (db *DB) UpdateSession(_ context.Context, id string, fn func(*broker.SessionRecord) error) (*broker.SessionRecord, error) {
	var s broker.SessionRecord
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		if err := db.getRec(tx, KindSessions, bucketSessions, []byte(id), &s); err != nil {
			if errors.Is(err, ErrNotFound) {
				return broker.ErrSessionNotFound
			}
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		return db.putRec(tx, KindSessions, bucketSessions, []byte(id), &s)
	})
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// ListSessions returns the sessions keep accepts.
func (db *DB) ListSessions(_ context.Context, keep func(*broker.SessionRecord) bool) ([]*broker.SessionRecord, error) {
	var out []*broker.SessionRecord
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return eachRec(db, tx, KindSessions, bucketSessions, func(s *broker.SessionRecord) bool {
			if keep == nil || keep(s) {
				out = append(out, s)
			}
			return true
		})
	})
	return out, err
}

// DeleteSessions deletes the sessions drop accepts and returns how many.
// It looks with a read transaction first, so a sweep that finds nothing to
// delete (the usual case) costs no write or fsync; drop is asked again
// inside the write transaction.
func (db *DB) DeleteSessions(ctx context.Context, drop func(*broker.SessionRecord) bool) (int, error) {
	found, err := db.ListSessions(ctx, drop)
	if err != nil || len(found) == 0 {
		return 0, err
	}
	n := 0
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		n = 0
		var keys [][]byte
		err := eachRec(db, tx, KindSessions, bucketSessions, func(s *broker.SessionRecord) bool {
			if drop(s) {
				keys = append(keys, []byte(s.ID))
			}
			return true
		})
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketSessions)
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// bucketLogins holds redeemed ID tokens: digest -> expiry (Unix seconds,
// big-endian). Made on first use.
var bucketLogins = []byte("logins")

// RedeemLogin records key until expires, in one write transaction that
// also drops the records past their expiry at now (a person logs in a few
// times a day: the bucket stays small).
func (db *DB) RedeemLogin(_ context.Context, key string, now, expires time.Time) (bool, error) {
	first := false
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		first = false
		b, err := tx.CreateBucketIfNotExists(bucketLogins)
		if err != nil {
			return err
		}
		live := func(v []byte) bool { return len(v) == 8 && now.Unix() < int64(binary.BigEndian.Uint64(v)) }
		if v := b.Get([]byte(key)); v != nil && live(v) {
			return nil
		}
		var gone [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			if !live(v) {
				gone = append(gone, k)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		first = true
		return b.Put([]byte(key), binary.BigEndian.AppendUint64(nil, uint64(expires.Unix())))
	})
	return first, err
}

// RedeemedLogins returns the redeemed ID-token digests not past their
// expiry at now, with that expiry (for Migrate).
func (db *DB) RedeemedLogins(_ context.Context, now time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogins)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				if exp := time.Unix(int64(binary.BigEndian.Uint64(v)), 0); now.Before(exp) {
					out[string(k)] = exp
				}
			}
			return nil
		})
	})
	return out, err
}
