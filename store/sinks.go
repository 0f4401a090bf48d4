package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// Sink cursor schema (one more bucket beside those in store.go, created on
// the first write):
//
//	sink_cursors  sink name -> auditsink.Cursor: the last event and signed
//	                           head the sink acknowledged
var bucketSinkCursors = []byte("sink_cursors")

var _ auditsink.CursorStore = (*DB)(nil)

// SinkCursors returns every stored sink cursor by sink name.
func (db *DB) SinkCursors(ctx context.Context) (map[string]auditsink.Cursor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := map[string]auditsink.Cursor{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSinkCursors)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var c auditsink.Cursor
			if err := decode(v, &c); err != nil {
				return fmt.Errorf("%w (sink cursor \"%s\")", err, auditsink.ShownName(string(k)))
			}
			out[string(k)] = c
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: sink cursors: %w", err)
	}
	return out, nil
}

// SaveSinkCursor records how far the sink name got. It is fsynced like
// every commit: a cursor never runs ahead of an acknowledged delivery.
func (db *DB) SaveSinkCursor(ctx context.Context, name string, c auditsink.Cursor) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("store: sink cursor needs a name")
	}
	raw, err := encode(c)
	if err != nil {
		return err
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSinkCursors)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), raw)
	})
	if err != nil {
		return fmt.Errorf("store: save sink cursor %s: %w", auditsink.ShownName(name), err)
	}
	return nil
}

// DeleteSinkCursor removes the cursor of sink name (a sink's old name,
// which may hold a URL's path token); an absent one is no error. The error
// does not show the name.
func (db *DB) DeleteSinkCursor(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSinkCursors)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("store: delete sink cursor: %w", err)
	}
	return nil
}
