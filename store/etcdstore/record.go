package etcdstore

import (
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/store"
)

// sealedKinds are the key spaces whose records carry an authenticator
// under the record key (store.RecordKey); the rel key of a record is its
// logical name (store.RecordName), as in the bbolt store. The others
// (keys/, vault/, meta/, logins/, sinks/, req_idx/, counters/, audit/) are
// exempt: see store/record_auth.go for why.
var sealedKinds = []string{store.KindRequests + "/", store.KindSessions + "/", store.KindProxies + "/"}

func sealedRel(rel string) bool {
	for _, k := range sealedKinds {
		if strings.HasPrefix(rel, k) {
			return true
		}
	}
	return false
}

// SetRecordKey gives the store its record key (see store.DB.SetRecordKey):
// from then on requests, sessions and enrollments are sealed
// when written and checked when read, including those the change feed
// (Watch) reads.
func (db *DB) SetRecordKey(rk *store.RecordKey) { db.rk.Store(rk) }

// encode encodes v as the record at rel: sealed when rel is of a sealed
// kind.
func (db *DB) encode(rel string, v any) ([]byte, error) {
	if sealedRel(rel) {
		return db.rk.Load().Encode(rel, v)
	}
	return store.EncodeRecord(v)
}

// decode decodes the record at rel, checking its authenticator when rel
// is of a sealed kind.
func (db *DB) decode(rel string, raw []byte, v any) error {
	if sealedRel(rel) {
		return db.rk.Load().Decode(rel, raw, v)
	}
	if err := store.DecodeRecord(raw, v); err != nil {
		return fmt.Errorf("%w (key %q)", err, rel)
	}
	return nil
}

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
	if err := db.decode(rel, resp.Kvs[0].Value, v); err != nil {
		return 0, err
	}
	return resp.Kvs[0].ModRevision, nil
}

// put writes v at rel.
func (db *DB) put(ctx context.Context, rel string, v any) error {
	raw, err := db.encode(rel, v)
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
		if err := db.decode(db.rel(kv.Key), kv.Value, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// rel is a key without the prefix.
func (db *DB) rel(k []byte) string { return strings.TrimPrefix(string(k), db.prefix) }

// SealRecords is store.DB.SealRecords on etcd: it seals every record of
// a sealed kind written without an authenticator, txnChunk records per
// transaction, each put only if the record is unchanged since it was read
// (a record written meanwhile is read again). Several replicas may run it
// at once: a record's sealed bytes depend only on its name and content,
// so they write the same. It returns how many records this call sealed.
func (db *DB) SealRecords(ctx context.Context, rk *store.RecordKey) (int, error) {
	n := 0
	for _, kind := range sealedKinds {
		for attempt := 0; ; attempt++ {
			if attempt == maxAttempts {
				return n, fmt.Errorf("etcdstore: seal records under %s: too much contention, try again", kind)
			}
			kvs, err := db.rangeOf(ctx, kind)
			if err != nil {
				return n, err
			}
			var cmps []clientv3.Cmp
			var ops []clientv3.Op
			raced := false
			flush := func() error {
				if len(ops) == 0 {
					return nil
				}
				octx, cancel := db.op(ctx)
				defer cancel()
				resp, err := db.cli.Txn(octx).If(cmps...).Then(ops...).Commit()
				if err != nil {
					return db.wrap("seal records", err)
				}
				if resp.Succeeded {
					n += len(ops)
				} else {
					raced = true
				}
				cmps, ops = cmps[:0], ops[:0]
				return nil
			}
			for _, kv := range kvs {
				out, changed, err := rk.Seal(db.rel(kv.Key), kv.Value)
				if err != nil {
					return n, err
				}
				if !changed {
					continue
				}
				k := string(kv.Key)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", kv.ModRevision))
				ops = append(ops, clientv3.OpPut(k, string(out), clientv3.WithIgnoreLease()))
				if len(ops) == txnChunk/2 {
					if err := flush(); err != nil {
						return n, err
					}
				}
			}
			if err := flush(); err != nil {
				return n, err
			}
			if !raced {
				break
			}
		}
	}
	return n, nil
}
