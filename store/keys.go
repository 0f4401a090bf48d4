package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/pamctl/pamctl/broker/token"

	bolt "go.etcd.io/bbolt"
)

var (
	_ token.BatchKeyStore = (*DB)(nil)
	_ token.KeyUpdater    = (*DB)(nil)
)

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

// Keys returns every stored signing key. When there is none, the file must
// be a new one: a file holding anything else (audit events or meta, a
// retention anchor, requests, sessions, vault entries, counters, any bucket
// this build does not know) lost its keys, and rather than let the keyring
// mint a new key that would sign whatever that data now says, Keys fails
// with an error matching ErrKeysMissing. Deleting the key records is the
// one edit that lets a writer of the file without the master key replace
// the trail's signer.
func (db *DB) Keys(_ context.Context) ([]token.SealedKey, error) {
	var out []token.SealedKey
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		out, err = db.keysIn(tx)
		return err
	})
	return out, err
}

// UpdateKeys implements token.KeyUpdater: it reads the key records (as
// Keys does), runs fn on them and saves what fn returns, all in one write
// transaction, so no other write of the file comes in between.
func (db *DB) UpdateKeys(_ context.Context, fn func(stored []token.SealedKey) ([]token.SealedKey, error)) error {
	return db.update(func(tx *bolt.Tx) error {
		stored, err := db.keysIn(tx)
		if err != nil {
			return err
		}
		recs, err := fn(stored)
		if err != nil {
			return err
		}
		for _, k := range recs {
			if err := put(tx, bucketKeys, []byte(k.KID), k); err != nil {
				return err
			}
		}
		return nil
	})
}

// keysIn is Keys in tx.
func (db *DB) keysIn(tx *bolt.Tx) ([]token.SealedKey, error) {
	var out []token.SealedKey
	if err := each(tx, bucketKeys, func(k *token.SealedKey) bool { out = append(out, *k); return true }); err != nil {
		return nil, err
	}
	if len(out) > 0 {
		return out, nil
	}
	if what := residue(tx); what != "" {
		return nil, fmt.Errorf("%w from %s (it still holds %s): the key records were deleted; pamctl will not create new keys over old data. Restore it from a backup", ErrKeysMissing, db.path(), what)
	}
	return nil, nil
}

// residue names data in tx beyond what a new file has before its first
// key: the schema version and the vault's master-key check (both written
// before the keyring opens). "" means the file is new.
func residue(tx *bolt.Tx) string {
	var what string
	_ = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		switch {
		case bytes.Equal(name, bucketKeys):
			return nil
		case bytes.Equal(name, bucketMeta):
			return b.ForEach(func(k, _ []byte) error {
				if bytes.Equal(k, keyVersion) || bytes.Equal(k, keyMasterCheck) {
					return nil
				}
				what = fmt.Sprintf("meta record %q", k)
				return errStop
			})
		}
		if k, _ := b.Cursor().First(); k != nil {
			what = fmt.Sprintf("records in bucket %q", name)
			return errStop
		}
		return nil
	})
	return what
}

var errStop = errors.New("stop")
