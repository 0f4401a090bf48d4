package store

import (
	"context"

	"github.com/pamctl/pamctl/broker/token"

	bolt "go.etcd.io/bbolt"
)

var _ token.BatchKeyStore = (*DB)(nil)

// SaveKey stores (or updates, on retirement) a sealed signing key. The
// record is authenticated by the keyring; the store keeps it as given.
func (db *DB) SaveKey(ctx context.Context, k token.SealedKey) error {
	return db.SaveKeys(ctx, k)
}

// SaveKeys stores several signing keys in one transaction (a rotation).
func (db *DB) SaveKeys(_ context.Context, ks ...token.SealedKey) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for _, k := range ks {
			if err := put(tx, bucketKeys, []byte(k.KID), k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Keys returns every stored signing key.
func (db *DB) Keys(_ context.Context) ([]token.SealedKey, error) {
	var out []token.SealedKey
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return each(tx, bucketKeys, func(k *token.SealedKey) bool { out = append(out, *k); return true })
	})
	return out, err
}
