package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// recordVersion is the encoding version of every record this build writes.
// Records are JSON envelopes {"v":N,"d":...}; a record with a newer version
// is refused, so an old binary never misreads data written by a new one.
const recordVersion = 1

type envelope struct {
	V int             `json:"v"`
	D json.RawMessage `json:"d"`
}

func encode(v any) ([]byte, error) {
	d, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: encode: %w", err)
	}
	return json.Marshal(envelope{V: recordVersion, D: d})
}

// decode unmarshals a record. raw may point into a bbolt page: json.Unmarshal
// copies what it keeps, so the result is safe to use after the transaction.
func decode(raw []byte, v any) error {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return notARecord("", err)
	}
	if env.V > recordVersion {
		return fmt.Errorf("%w (record version %d, this build reads up to %d): upgrade pamctl", ErrSchemaTooNew, env.V, recordVersion)
	}
	if err := json.Unmarshal(env.D, v); err != nil {
		return undecodable("", err)
	}
	return nil
}

func put(tx *bolt.Tx, bucket, key []byte, v any) error {
	raw, err := encode(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, raw)
}

func get(tx *bolt.Tx, bucket, key []byte, v any) error {
	raw := tx.Bucket(bucket).Get(key)
	if raw == nil {
		return ErrNotFound
	}
	return decode(raw, v)
}

// each decodes every record of a bucket in key order into a fresh T and
// calls fn; fn returning false stops the walk.
func each[T any](tx *bolt.Tx, bucket []byte, fn func(*T) bool) error {
	c := tx.Bucket(bucket).Cursor()
	for k, raw := c.First(); k != nil; k, raw = c.Next() {
		var v T
		if err := decode(raw, &v); err != nil {
			return fmt.Errorf("%w (key %q)", err, k)
		}
		if !fn(&v) {
			return nil
		}
	}
	return nil
}

// EncodeRecord and DecodeRecord are the record envelope above, for the
// other backends (store/etcdstore) and for migrations: every backend
// stores the same bytes, so a record copied between them reads the same
// and an old build refuses a newer record the same way.
func EncodeRecord(v any) ([]byte, error) { return encode(v) }

// DecodeRecord decodes a record written by EncodeRecord (see decode).
func DecodeRecord(raw []byte, v any) error { return decode(raw, v) }
