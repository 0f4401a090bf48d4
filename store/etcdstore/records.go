package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
)

var (
	_ broker.SessionStore   = (*DB)(nil)
	_ token.BatchKeyStore   = (*DB)(nil)
	_ token.KeyUpdater      = (*DB)(nil)
	_ vault.Store           = (*DB)(nil)
	_ link.Store            = (*DB)(nil)
	_ auditsink.CursorStore = (*DB)(nil)
)

// Sessions.

func loginKey(key string) string { return "logins/" + key }

// RedeemLogin puts key only if absent (one transaction, so of two replicas
// redeeming it at once one wins), on a lease that ends it at expires.
func (db *DB) RedeemLogin(ctx context.Context, key string, now, expires time.Time) (bool, error) {
	ttl := int64(math.Ceil(expires.Sub(now).Seconds()))
	if ttl < 1 {
		ttl = 1
	}
	ctx, cancel := db.op(ctx)
	defer cancel()
	lease, err := db.cli.Grant(ctx, ttl)
	if err != nil {
		return false, db.wrap("redeem login", err)
	}
	k := db.key(loginKey(key))
	resp, err := db.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, "", clientv3.WithLease(lease.ID))).Commit()
	if err == nil && resp.Succeeded {
		return true, nil
	}
	_, _ = db.cli.Revoke(ctx, lease.ID) // unused: it would only expire later
	if err != nil {
		return false, db.wrap("redeem login", err)
	}
	return false, nil
}

func sessionKey(id string) string { return "sessions/" + id }

// CreateSession stores a new session (replacing one under the same id).
func (db *DB) CreateSession(ctx context.Context, s *broker.SessionRecord) error {
	return db.put(ctx, sessionKey(s.ID), s)
}

// GetSession loads one session.
func (db *DB) GetSession(ctx context.Context, id string) (*broker.SessionRecord, error) {
	var s broker.SessionRecord
	if _, err := db.get(ctx, sessionKey(id), &s); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, broker.ErrSessionNotFound
		}
		return nil, err
	}
	return &s, nil
}

// UpdateSession is a compare-and-swap on the record's mod revision, fn
// running again on a newer record when another replica wrote meanwhile.
func (db *DB) UpdateSession(ctx context.Context, id string, fn func(*broker.SessionRecord) error) (*broker.SessionRecord, error) {
	return casUpdate(ctx, db, sessionKey(id), "session "+id, broker.ErrSessionNotFound, fn)
}

// casUpdate runs fn on the record at rel and writes the result if nobody
// wrote the record meanwhile (a compare-and-swap on its mod revision),
// running fn again on the newer record otherwise. absent is the error of
// a missing record; fn's error writes nothing.
func casUpdate[T any](ctx context.Context, db *DB, rel, what string, absent error, fn func(*T) error) (*T, error) {
	k := db.key(rel)
	for range maxAttempts {
		var v T
		rev, err := db.get(ctx, rel, &v)
		if errors.Is(err, store.ErrNotFound) {
			return nil, absent
		}
		if err != nil {
			return nil, err
		}
		if err := fn(&v); err != nil {
			return nil, err
		}
		raw, err := db.encode(rel, &v)
		if err != nil {
			return nil, err
		}
		ok, err := db.casPut(ctx, k, rev, raw)
		if err != nil {
			return nil, err
		}
		if ok {
			return &v, nil
		}
	}
	return nil, fmt.Errorf("etcdstore: %s: too much contention, try again", what)
}

// casPut writes raw at k if k is still at mod revision rev.
func (db *DB) casPut(ctx context.Context, k string, rev int64, raw []byte) (bool, error) {
	ctx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(raw))).Commit()
	if err != nil {
		return false, db.wrap("write "+k, err)
	}
	return resp.Succeeded, nil
}

// ListSessions returns the sessions keep accepts (nil keep: all).
func (db *DB) ListSessions(ctx context.Context, keep func(*broker.SessionRecord) bool) ([]*broker.SessionRecord, error) {
	all, err := list[broker.SessionRecord](ctx, db, "sessions/")
	if err != nil || keep == nil {
		return all, err
	}
	out := all[:0]
	for _, s := range all {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// DeleteSessions deletes the sessions drop accepts and returns how many.
// Each is deleted only as drop saw it: one written meanwhile (by another
// replica) is left for the next sweep to judge again.
func (db *DB) DeleteSessions(ctx context.Context, drop func(*broker.SessionRecord) bool) (int, error) {
	kvs, err := db.rangeOf(ctx, "sessions/")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range kvs {
		var s broker.SessionRecord
		if err := db.decode(db.rel(kv.Key), kv.Value, &s); err != nil {
			return n, err
		}
		if !drop(&s) {
			continue
		}
		octx, cancel := db.op(ctx)
		resp, err := db.cli.Txn(octx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(string(kv.Key))).Commit()
		cancel()
		if err != nil {
			return n, db.wrap("delete session", err)
		}
		if resp.Succeeded {
			n++
		}
	}
	return n, nil
}

// Signing keys.

// SaveKey stores (or updates) a sealed signing key, as given: the keyring
// authenticates the record under the master key.
func (db *DB) SaveKey(ctx context.Context, k token.SealedKey) error { return db.SaveKeys(ctx, k) }

// SaveKeys stores several signing keys in one transaction (a rotation).
func (db *DB) SaveKeys(ctx context.Context, ks ...token.SealedKey) error {
	ops, err := db.keyPuts(ks)
	if err != nil {
		return err
	}
	ctx, cancel := db.op(ctx)
	defer cancel()
	_, err = db.cli.Txn(ctx).Then(ops...).Commit()
	return db.wrap("save signing keys", err)
}

// Keys returns every stored signing key. When there is none, the prefix
// must be new: one holding anything beyond the schema version and the
// master-key check lost its keys, and Keys fails with an error matching
// store.ErrKeysMissing rather than let the keyring mint a key that would
// sign whatever that data says.
func (db *DB) Keys(ctx context.Context) ([]token.SealedKey, error) {
	out, _, _, err := db.keysAt(ctx)
	return out, err
}

// UpdateKeys implements token.KeyUpdater with a compare-and-swap: it reads
// the key records, runs fn on them and puts what fn returns in one
// transaction that succeeds only if no key record was written, added or
// deleted since the read (each read key at its mod revision, and none
// under the prefix newer than the read). When another replica wrote
// meanwhile, it reads again and runs fn again.
func (db *DB) UpdateKeys(ctx context.Context, fn func(stored []token.SealedKey) ([]token.SealedKey, error)) error {
	for range maxAttempts {
		stored, kvs, rev, err := db.keysAt(ctx)
		if err != nil {
			return err
		}
		recs, err := fn(stored)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		cmps := make([]clientv3.Cmp, 0, len(kvs)+1)
		for _, kv := range kvs {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(db.key("keys/")), "<", rev+1).WithPrefix())
		ops, err := db.keyPuts(recs)
		if err != nil {
			return err
		}
		octx, cancel := db.op(ctx)
		resp, err := db.cli.Txn(octx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return db.wrap("update signing keys", err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return errors.New("etcdstore: update signing keys: too much contention, try again")
}

// keyPuts are the puts of key records.
func (db *DB) keyPuts(ks []token.SealedKey) ([]clientv3.Op, error) {
	ops := make([]clientv3.Op, 0, len(ks))
	for _, k := range ks {
		if k.KID == "" {
			return nil, errors.New("etcdstore: signing key without a kid")
		}
		raw, err := store.EncodeRecord(k)
		if err != nil {
			return nil, err
		}
		ops = append(ops, clientv3.OpPut(db.key("keys/"+k.KID), string(raw)))
	}
	return ops, nil
}

// keysAt is Keys, with the key-values read and the revision of the read.
func (db *DB) keysAt(ctx context.Context) ([]token.SealedKey, []*mvccpb.KeyValue, int64, error) {
	octx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Txn(octx).Then(
		clientv3.OpGet(db.key("keys/"), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
		clientv3.OpGet(db.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(3)),
	).Commit()
	if err != nil {
		return nil, nil, 0, db.wrap("load signing keys", err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	var out []token.SealedKey
	for _, kv := range kvs {
		var k token.SealedKey
		if err := store.DecodeRecord(kv.Value, &k); err != nil {
			return nil, nil, 0, fmt.Errorf("%w (key %q)", err, kv.Key)
		}
		out = append(out, k)
	}
	if len(out) > 0 {
		return out, kvs, resp.Header.Revision, nil
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		switch string(kv.Key) {
		case db.key("meta/version"), db.key("meta/master_check"):
			continue
		}
		return nil, nil, 0, fmt.Errorf("%w from etcd prefix %s (it still holds %q): the key records were deleted; pamctl will not create new keys over old data. Restore the cluster from a backup", store.ErrKeysMissing, db.prefix, kv.Key)
	}
	return nil, nil, resp.Header.Revision, nil
}

// Vault.

func vaultKey(name string) string { return "vault/" + name }

// PutEntry stores a sealed vault entry.
func (db *DB) PutEntry(ctx context.Context, e vault.Entry) error {
	return db.put(ctx, vaultKey(e.Name), e)
}

// GetEntry loads a sealed vault entry.
func (db *DB) GetEntry(ctx context.Context, name string) (vault.Entry, error) {
	var e vault.Entry
	_, err := db.get(ctx, vaultKey(name), &e)
	if errors.Is(err, store.ErrNotFound) {
		return e, vault.ErrNotFound
	}
	return e, err
}

// DeleteEntry removes a vault entry (vault.ErrNotFound when absent).
func (db *DB) DeleteEntry(ctx context.Context, name string) error {
	k := db.key(vaultKey(name))
	ctx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Delete(ctx, k)
	if err != nil {
		return db.wrap("delete vault entry "+name, err)
	}
	if resp.Deleted == 0 {
		return vault.ErrNotFound
	}
	return nil
}

// ListEntries returns every vault entry in name order.
func (db *DB) ListEntries(ctx context.Context) ([]vault.Entry, error) {
	es, err := list[vault.Entry](ctx, db, "vault/")
	if err != nil {
		return nil, err
	}
	out := make([]vault.Entry, len(es))
	for i, e := range es {
		out[i] = *e
	}
	return out, nil
}

// MasterCheck returns the sealed master-key check value, nil if unset.
func (db *DB) MasterCheck(ctx context.Context) ([]byte, error) {
	ctx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Get(ctx, db.key("meta/master_check"))
	if err != nil {
		return nil, db.wrap("read master check", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// SetMasterCheck stores the check value once (a transaction that writes
// only when the key was never created); it never overwrites one.
func (db *DB) SetMasterCheck(ctx context.Context, sealed []byte) error {
	k := db.key("meta/master_check")
	ctx, cancel := db.op(ctx)
	defer cancel()
	_, err := db.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, string(sealed))).Commit()
	return db.wrap("store master check", err)
}

// Proxy enrollments.

// PutEnrollment creates or replaces an enrollment.
func (db *DB) PutEnrollment(ctx context.Context, e *link.Enrollment) error {
	if e.ID == "" {
		return errors.New("etcdstore: enrollment without an id")
	}
	return db.put(ctx, "proxies/"+e.ID, e)
}

// GetEnrollment returns one enrollment (link.ErrNotFound when absent).
func (db *DB) GetEnrollment(ctx context.Context, id string) (*link.Enrollment, error) {
	var e link.Enrollment
	_, err := db.get(ctx, "proxies/"+id, &e)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", link.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// UpdateEnrollment is a compare-and-swap on the record's mod revision,
// fn running again on a newer record when another replica wrote
// meanwhile.
func (db *DB) UpdateEnrollment(ctx context.Context, id string, fn func(*link.Enrollment) error) (*link.Enrollment, error) {
	return casUpdate(ctx, db, "proxies/"+id, "proxy enrollment "+id, fmt.Errorf("%w: %s", link.ErrNotFound, id), fn)
}

// ListEnrollments returns every enrollment in id order.
func (db *DB) ListEnrollments(ctx context.Context) ([]*link.Enrollment, error) {
	return list[link.Enrollment](ctx, db, "proxies/")
}

// Audit sink cursors.

// SinkCursors returns every stored sink cursor by sink name.
func (db *DB) SinkCursors(ctx context.Context) (map[string]auditsink.Cursor, error) {
	kvs, err := db.rangeOf(ctx, "sinks/")
	if err != nil {
		return nil, fmt.Errorf("store: sink cursors: %w", err)
	}
	out := map[string]auditsink.Cursor{}
	base := len(db.key("sinks/"))
	for _, kv := range kvs {
		var c auditsink.Cursor
		if err := store.DecodeRecord(kv.Value, &c); err != nil {
			return nil, fmt.Errorf("store: sink cursors: %w (sink cursor \"%s\")", err, auditsink.ShownName(string(kv.Key[base:])))
		}
		out[string(kv.Key[base:])] = c
	}
	return out, nil
}

// SaveSinkCursor records how far the sink name got; it is committed by a
// quorum before it returns.
func (db *DB) SaveSinkCursor(ctx context.Context, name string, c auditsink.Cursor) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("store: sink cursor needs a name")
	}
	if err := db.put(ctx, "sinks/"+name, c); err != nil {
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
	if name == "" {
		return nil
	}
	k := db.key("sinks/" + name)
	ctx, cancel := db.op(ctx)
	defer cancel()
	if _, err := db.cli.Delete(ctx, k); err != nil {
		return db.wrap("delete sink cursor", err)
	}
	return nil
}
