package store

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/link"
)

// bucketProxies holds the enrollments of local proxies (broker role):
// key = enrollment id, value = record of link.Enrollment. It is created on
// first use, so files without it stay readable by older builds.
var bucketProxies = []byte("proxies")

var _ link.Store = (*DB)(nil)

// PutEnrollment creates or replaces an enrollment.
func (db *DB) PutEnrollment(_ context.Context, e *link.Enrollment) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketProxies); err != nil {
			return fmt.Errorf("store: create bucket proxies: %w", err)
		}
		return db.putRec(tx, KindProxies, bucketProxies, []byte(e.ID), e)
	})
}

// GetEnrollment returns one enrollment (link.ErrNotFound when absent).
func (db *DB) GetEnrollment(_ context.Context, id string) (*link.Enrollment, error) {
	var e link.Enrollment
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketProxies) == nil {
			return ErrNotFound
		}
		return db.getRec(tx, KindProxies, bucketProxies, []byte(id), &e)
	})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", link.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// UpdateEnrollment runs fn on the stored enrollment inside one write
// transaction: fn's error rolls it back.
func (db *DB) UpdateEnrollment(_ context.Context, id string, fn func(*link.Enrollment) error) (*link.Enrollment, error) {
	var e link.Enrollment
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketProxies) == nil {
			return ErrNotFound
		}
		if err := db.getRec(tx, KindProxies, bucketProxies, []byte(id), &e); err != nil {
			return err
		}
		if err := fn(&e); err != nil {
			return err
		}
		return db.putRec(tx, KindProxies, bucketProxies, []byte(id), &e)
	})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", link.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// ListEnrollments returns every enrollment in id order.
func (db *DB) ListEnrollments(_ context.Context) ([]*link.Enrollment, error) {
	var out []*link.Enrollment
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketProxies) == nil {
			return nil
		}
		return eachRec(db, tx, KindProxies, bucketProxies, func(e *link.Enrollment) bool {
			out = append(out, e)
			return true
		})
	})
	return out, err
}
