package store

import (
	"context"
	"errors"

	"github.com/pamctl/pamctl/broker"

	bolt "go.etcd.io/bbolt"
)

var _ broker.SessionStore = (*DB)(nil)

// CreateSession stores a new session. Like CreateRequest it only puts by
// id, so it may go through Batch (logins share a commit).
func (db *DB) CreateSession(_ context.Context, s *broker.SessionRecord) error {
	raw, err := encode(s)
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
	err := db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bucketSessions, []byte(id), &s) })
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
		if err := get(tx, bucketSessions, []byte(id), &s); err != nil {
			if errors.Is(err, ErrNotFound) {
				return broker.ErrSessionNotFound
			}
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		return put(tx, bucketSessions, []byte(id), &s)
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
		return each(tx, bucketSessions, func(s *broker.SessionRecord) bool {
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
		err := each(tx, bucketSessions, func(s *broker.SessionRecord) bool {
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
