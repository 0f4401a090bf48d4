package store

import (
	"context"

	"github.com/pamctl/pamctl/broker/token"

	bolt "go.etcd.io/bbolt"
)

var _ token.KeyStore = (*DB)(nil)

// SaveKey stores (or updates, on retirement) a sealed signing key.
func (db *DB) SaveKey(_ context.Context, k token.SealedKey) error {
	return db.bolt.Update(func(tx *bolt.Tx) error { return put(tx, bucketKeys, []byte(k.KID), k) })
}

// Keys returns every stored signing key.
func (db *DB) Keys(_ context.Context) ([]token.SealedKey, error) {
	var out []token.SealedKey
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return each(tx, bucketKeys, func(k *token.SealedKey) bool { out = append(out, *k); return true })
	})
	return out, err
}
