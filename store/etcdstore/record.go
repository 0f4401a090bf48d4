package etcdstore

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/store"
)

// get decodes the record at rel into v and returns its mod revision;
// store.ErrNotFound when there is none.
func (db *DB) get(ctx context.Context, rel string, v any) (int64, error) {
	ctx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Get(ctx, db.key(rel))
	if err != nil {
		return 0, db.wrap("get "+rel, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, store.ErrNotFound
	}
	if err := store.DecodeRecord(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("%w (key %q)", err, rel)
	}
	return resp.Kvs[0].ModRevision, nil
}

// put writes v at rel.
func (db *DB) put(ctx context.Context, rel string, v any) error {
	raw, err := store.EncodeRecord(v)
	if err != nil {
		return err
	}
	ctx, cancel := db.op(ctx)
	defer cancel()
	_, err = db.cli.Put(ctx, db.key(rel), string(raw))
	return db.wrap("put "+rel, err)
}

// rangeOf returns the key-values under rel (a prefix), in key order.
func (db *DB) rangeOf(ctx context.Context, rel string) ([]*mvccpb.KeyValue, error) {
	ctx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Get(ctx, db.key(rel), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, db.wrap("list "+rel, err)
	}
	return resp.Kvs, nil
}

// list decodes every record under rel in key order.
func list[T any](ctx context.Context, db *DB, rel string) ([]*T, error) {
	kvs, err := db.rangeOf(ctx, rel)
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(kvs))
	for _, kv := range kvs {
		v := new(T)
		if err := store.DecodeRecord(kv.Value, v); err != nil {
			return nil, fmt.Errorf("%w (key %q)", err, kv.Key)
		}
		out = append(out, v)
	}
	return out, nil
}
