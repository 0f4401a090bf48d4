package store

import (
	"context"
	"errors"

	"github.com/pamctl/pamctl/broker"

	bolt "go.etcd.io/bbolt"
)

var _ broker.Store = (*DB)(nil)

// CreateRequest stores a new request. It goes through Batch so concurrent
// requesters share a commit; the function only puts by id, so a Batch retry
// is harmless.
func (db *DB) CreateRequest(_ context.Context, r *broker.Request) error {
	raw, err := encode(r)
	if err != nil {
		return err
	}
	return db.bolt.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRequests).Put([]byte(r.ID), raw)
	})
}

// GetRequest loads one request.
func (db *DB) GetRequest(_ context.Context, id string) (*broker.Request, error) {
	var r broker.Request
	err := db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bucketRequests, []byte(id), &r) })
	if errors.Is(err, ErrNotFound) {
		return nil, broker.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// UpdateRequest is a compare-and-swap: fn sees the stored request inside one
// write transaction, and its error (if any) rolls everything back.
func (db *DB) UpdateRequest(_ context.Context, id string, fn func(*broker.Request) error) (*broker.Request, error) {
	var r broker.Request
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bucketRequests, []byte(id), &r); err != nil {
			if errors.Is(err, ErrNotFound) {
				return broker.ErrNotFound
			}
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		return put(tx, bucketRequests, []byte(id), &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ListRequests returns the requests keep accepts.
func (db *DB) ListRequests(_ context.Context, keep func(*broker.Request) bool) ([]*broker.Request, error) {
	var out []*broker.Request
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return each(tx, bucketRequests, func(r *broker.Request) bool {
			if keep == nil || keep(r) {
				out = append(out, r)
			}
			return true
		})
	})
	return out, err
}
