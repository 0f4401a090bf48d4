package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store"
)

var _ broker.Store = (*DB)(nil)

// maxAttempts bounds the compare-and-swap retries of one write: each
// retry means another replica wrote the same record meanwhile.
const maxAttempts = 64

// txnChunk keeps a transaction under etcd's default limit of 128
// operations per transaction.
const txnChunk = 100

func requestKey(id string) string { return "requests/" + id }

func (db *DB) indexBase(index string) string { return db.key("req_idx/" + index + "/") }

func (db *DB) indexKey(e store.IndexEntry) string { return db.indexBase(e.Index) + string(e.Key) }

// indexOps moves r's index entries from those of old (nil: none): deletes
// what only old has, puts what only r has.
func (db *DB) indexOps(old, r *broker.Request) []clientv3.Op {
	had := map[string]bool{}
	if old != nil {
		for _, e := range store.RequestIndexEntries(old) {
			had[db.indexKey(e)] = true
		}
	}
	var ops []clientv3.Op
	keep := map[string]bool{}
	if r != nil {
		for _, e := range store.RequestIndexEntries(r) {
			k := db.indexKey(e)
			if keep[k] {
				continue
			}
			keep[k] = true
			if !had[k] {
				ops = append(ops, clientv3.OpPut(k, ""))
			}
		}
	}
	for k := range had {
		if !keep[k] {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	return ops
}

// loadRequest returns the stored request and its mod revision (0, nil when
// absent).
func (db *DB) loadRequest(ctx context.Context, id string) (*broker.Request, int64, error) {
	var r broker.Request
	rev, err := db.get(ctx, requestKey(id), &r)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return &r, rev, nil
}

// swap writes r over old (stored at rev; 0: absent) with its index
// entries, if the record is still at rev. ok false: someone else wrote it.
func (db *DB) swap(ctx context.Context, old *broker.Request, rev int64, r *broker.Request) (bool, error) {
	raw, err := db.encode(requestKey(r.ID), r)
	if err != nil {
		return false, err
	}
	k := db.key(requestKey(r.ID))
	ops := append(db.indexOps(old, r), clientv3.OpPut(k, string(raw)))
	ctx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(ops...).Commit()
	if err != nil {
		return false, db.wrap("write request "+r.ID, err)
	}
	return resp.Succeeded, nil
}

// CreateRequest stores a new request and its index entries, replacing
// whatever is stored under the id (as the bbolt store does).
func (db *DB) CreateRequest(ctx context.Context, r *broker.Request) error {
	if r.ID == "" {
		return errors.New("store: request without an id")
	}
	for range maxAttempts {
		old, rev, err := db.loadRequest(ctx, r.ID)
		if err != nil {
			return err
		}
		ok, err := db.swap(ctx, old, rev, r)
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("etcdstore: request %s: too much contention, try again", r.ID)
}

// GetRequest loads one request.
func (db *DB) GetRequest(ctx context.Context, id string) (*broker.Request, error) {
	r, _, err := db.loadRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, broker.ErrNotFound
	}
	return r, nil
}

// UpdateRequest is a compare-and-swap on the record's mod revision: fn
// sees the stored request, and its change (with the index entries) is
// written only if nobody wrote the request meanwhile; otherwise fn runs
// again on the newer record. fn's error writes nothing.
func (db *DB) UpdateRequest(ctx context.Context, id string, fn func(*broker.Request) error) (*broker.Request, error) {
	for range maxAttempts {
		old, rev, err := db.loadRequest(ctx, id)
		if err != nil {
			return nil, err
		}
		if old == nil {
			return nil, broker.ErrNotFound
		}
		r := cloneRequest(old)
		if err := fn(r); err != nil {
			return nil, err
		}
		if r.ID != id {
			return nil, fmt.Errorf("store: update may not change a request's id (%s -> %s)", id, r.ID)
		}
		ok, err := db.swap(ctx, old, rev, r)
		if err != nil {
			return nil, err
		}
		if ok {
			return r, nil
		}
	}
	return nil, fmt.Errorf("etcdstore: request %s: too much contention, try again", id)
}

// cloneRequest deep-copies r through its record encoding (in memory:
// nothing is read from the store, so nothing to authenticate), so fn's changes
// never reach old (whose index entries are still to be removed).
func cloneRequest(r *broker.Request) *broker.Request {
	raw, err := store.EncodeRecord(r)
	if err != nil {
		panic(err) // it was just decoded from the same encoding
	}
	var c broker.Request
	if err := store.DecodeRecord(raw, &c); err != nil {
		panic(err)
	}
	return &c
}

// RequestsInState returns the requests in state, only by's when by is set.
func (db *DB) RequestsInState(ctx context.Context, state broker.State, by *broker.Identity) ([]*broker.Request, error) {
	base, p := db.indexBase(store.IndexState), store.StateIndexPrefix(state)
	if by != nil {
		base, p = db.indexBase(store.IndexOwner), store.OwnerIndexPrefix(*by, state)
	}
	start := base + string(p)
	return db.byIndex(ctx, start, clientv3.GetPrefixRangeEnd(start), len(start), 0)
}

// RequestsOf returns the requests who made, reviewed or ended.
func (db *DB) RequestsOf(ctx context.Context, who broker.Identity) ([]*broker.Request, error) {
	start := db.indexBase(store.IndexParty) + string(store.PartyIndexPrefix(who))
	return db.byIndex(ctx, start, clientv3.GetPrefixRangeEnd(start), len(start), 0)
}

// DueRequests returns the live requests whose deadline is at or before t.
func (db *DB) DueRequests(ctx context.Context, t time.Time) ([]*broker.Request, error) {
	base := db.indexBase(store.IndexDue)
	end := clientv3.GetPrefixRangeEnd(base + string(store.TimeIndexPrefix(t)))
	return db.byIndex(ctx, base, end, len(base)+store.TimePrefixLen, 0)
}

// GrantsExpiringAfter returns the ever-approved requests whose ExpiresAt
// is after t. It reads every request record, not the grant index: the
// broker builds its revocation set from it (at start and on a resync),
// and an index key deleted by a writer of the prefix (indexes carry no
// authenticator) must not drop a revoked grant from that set.
func (db *DB) GrantsExpiringAfter(ctx context.Context, t time.Time) ([]*broker.Request, error) {
	all, err := list[broker.Request](ctx, db, "requests/")
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, r := range all {
		if r.ApprovedAt != nil && r.ExpiresAt != nil && r.ExpiresAt.After(t) {
			out = append(out, r)
		}
	}
	return out, nil
}

// byIndex loads the requests named by the index keys in [start, end) (the
// id is each key from idAt on), all as of one revision, so the records
// agree with the index read. limit > 0 caps how many keys are read.
func (db *DB) byIndex(ctx context.Context, start, end string, idAt int, limit int64) ([]*broker.Request, error) {
	for range maxAttempts {
		out, err := db.byIndexOnce(ctx, start, end, idAt, limit)
		if errors.Is(err, errCompactedRead) {
			continue // the revision was compacted between the two reads
		}
		return out, err
	}
	return nil, fmt.Errorf("etcdstore: read requests: the revision kept being compacted, try again")
}

var errCompactedRead = errors.New("etcdstore: read revision compacted")

func (db *DB) byIndexOnce(ctx context.Context, start, end string, idAt int, limit int64) ([]*broker.Request, error) {
	octx, cancel := db.op(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	idx, err := db.cli.Get(octx, start, opts...)
	if err != nil {
		return nil, db.wrap("read request index", err)
	}
	rev := idx.Header.Revision
	out := make([]*broker.Request, 0, len(idx.Kvs))
	for i := 0; i < len(idx.Kvs); i += txnChunk {
		chunk := idx.Kvs[i:min(i+txnChunk, len(idx.Kvs))]
		ops := make([]clientv3.Op, len(chunk))
		ids := make([]string, len(chunk))
		for j, kv := range chunk {
			ids[j] = string(kv.Key[idAt:])
			ops[j] = clientv3.OpGet(db.key(requestKey(ids[j])), clientv3.WithRev(rev))
		}
		resp, err := db.cli.Txn(octx).Then(ops...).Commit()
		if err != nil {
			if strings.Contains(err.Error(), "compacted") {
				return nil, errCompactedRead
			}
			return nil, db.wrap("read requests", err)
		}
		for j, r := range resp.Responses {
			kvs := r.GetResponseRange().Kvs
			if len(kvs) == 0 {
				return nil, fmt.Errorf("store: a request index names %q, which is not stored: the etcd data is inconsistent (restore it from a backup)", ids[j])
			}
			var req broker.Request
			if err := db.decode(requestKey(ids[j]), kvs[0].Value, &req); err != nil {
				return nil, err
			}
			if err := db.hasIndexEntry(chunk[j].Key, &req); err != nil {
				return nil, err
			}
			out = append(out, &req)
		}
	}
	return out, nil
}

// hasIndexEntry checks that r has the index entry key (a full etcd key
// under req_idx/) that led to it. The indexes carry no authenticator, so
// an entry a writer of the prefix added (a revoked grant listed as
// approved, a request listed as someone else's, a live one as settled)
// would otherwise pass for what the authenticated record says; a record
// and its entries are written in one transaction, so a mismatch is never
// pamctl's own.
func (db *DB) hasIndexEntry(key []byte, r *broker.Request) error {
	rel := strings.TrimPrefix(string(key), db.key("req_idx/"))
	index, entry, ok := strings.Cut(rel, "/")
	if !ok || !store.HasIndexEntry(r, index, []byte(entry)) {
		return store.ForgedIndexEntry(r, index)
	}
	return nil
}

// pruneBatch bounds one read of the settled index.
const pruneBatch = 1000

// PruneRequests deletes the requests that settled before t, each with its
// index entries in one transaction that holds only if the record was not
// written since it was read (a changed one is looked at next time).
func (db *DB) PruneRequests(ctx context.Context, before time.Time) (int, error) {
	base := db.indexBase(store.IndexSettled)
	end := base + string(store.TimeIndexPrefix(before))
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		rs, err := db.byIndex(ctx, base, end, len(base)+store.TimePrefixLen, pruneBatch)
		if err != nil {
			return total, err
		}
		n := 0
		for _, r := range rs {
			ok, err := db.deleteRequest(ctx, r)
			if err != nil {
				return total, err
			}
			if ok {
				n++
			}
		}
		total += n
		if len(rs) < pruneBatch || n == 0 {
			return total, nil
		}
	}
}

// deleteRequest removes r and its index entries if r is still as read.
func (db *DB) deleteRequest(ctx context.Context, r *broker.Request) (bool, error) {
	cur, rev, err := db.loadRequest(ctx, r.ID)
	if err != nil || cur == nil {
		return false, err
	}
	if cur.State != r.State || !sameTime(cur.EndedAt, r.EndedAt) || !sameTime(cur.ExpiresAt, r.ExpiresAt) {
		return false, nil // it changed since the index read
	}
	k := db.key(requestKey(r.ID))
	ops := append(db.indexOps(cur, nil), clientv3.OpDelete(k))
	octx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Txn(octx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(ops...).Commit()
	if err != nil {
		return false, db.wrap("prune request "+r.ID, err)
	}
	return resp.Succeeded, nil
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
