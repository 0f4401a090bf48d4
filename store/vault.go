package store

import (
	"context"

	"github.com/pamctl/pamctl/broker/vault"

	bolt "go.etcd.io/bbolt"
)

var _ vault.Store = (*DB)(nil)

var keyMasterCheck = []byte("master_check")

// PutEntry stores a sealed vault entry.
func (db *DB) PutEntry(_ context.Context, e vault.Entry) error {
	return db.bolt.Update(func(tx *bolt.Tx) error { return put(tx, bucketVault, []byte(e.Name), e) })
}

// GetEntry loads a sealed vault entry.
func (db *DB) GetEntry(_ context.Context, name string) (vault.Entry, error) {
	var e vault.Entry
	err := db.view(func(tx *bolt.Tx) error { return get(tx, bucketVault, []byte(name), &e) })
	if err == ErrNotFound {
		return e, vault.ErrNotFound
	}
	return e, err
}

// DeleteEntry removes a vault entry.
func (db *DB) DeleteEntry(_ context.Context, name string) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVault)
		if b.Get([]byte(name)) == nil {
			return vault.ErrNotFound
		}
		return b.Delete([]byte(name))
	})
}

// ListEntries returns every vault entry in name order.
func (db *DB) ListEntries(_ context.Context) ([]vault.Entry, error) {
	var out []vault.Entry
	err := db.view(func(tx *bolt.Tx) error {
		return each(tx, bucketVault, func(e *vault.Entry) bool { out = append(out, *e); return true })
	})
	return out, err
}

// MasterCheck returns the sealed master-key check value, nil if unset.
func (db *DB) MasterCheck(_ context.Context) ([]byte, error) {
	var out []byte
	err := db.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyMasterCheck); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// SetMasterCheck stores the check value once; it never overwrites one.
func (db *DB) SetMasterCheck(_ context.Context, sealed []byte) error {
	return db.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b.Get(keyMasterCheck) != nil {
			return nil
		}
		return b.Put(keyMasterCheck, sealed)
	})
}
