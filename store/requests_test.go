package store

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store/storetest"
)

func TestRequestsConformance(t *testing.T) {
	storetest.Requests(t, func(t *testing.T) broker.Store { return openTest(t, t.TempDir()) })
}

// snapshotIndexes copies every request index: bucket -> sorted keys.
func snapshotIndexes(t *testing.T, db *DB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		for _, name := range requestIndexes {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("no bucket %s", name)
			}
			out[string(name)] = []string{}
			if err := b.ForEach(func(k, _ []byte) error { out[string(name)] = append(out[string(name)], string(k)); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The indexes kept write by write are exactly what a rebuild from the
// records gives: nothing drifts through creates, state changes, reviews
// and prunes.
func TestIndexesMatchRebuild(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	people := []broker.Identity{{Subject: "alice", Issuer: "corp"}, {Subject: "bob", Issuer: "corp"}, {Subject: "bob", Issuer: "gh"}}
	for i := range 300 {
		who := people[i%len(people)]
		r := &broker.Request{ID: fmt.Sprintf("req_%03d", i), Kind: broker.KindAccess, Requester: who, State: broker.StatePending,
			CreatedAt: t0.Add(time.Duration(i) * time.Minute), PendingUntil: t0.Add(time.Duration(i+30) * time.Minute), TTL: time.Hour}
		if err := db.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		reviewer := people[(i+1)%len(people)]
		_, err := db.UpdateRequest(ctx, r.ID, func(r *broker.Request) error {
			now := r.CreatedAt.Add(time.Minute)
			r.Reviews = append(r.Reviews, broker.Review{Reviewer: reviewer, Approve: i%3 != 0, At: now})
			switch i % 4 {
			case 0:
				r.State, r.EndedAt, r.EndedBy = broker.StateDenied, &now, &reviewer
			case 1, 2:
				exp := now.Add(time.Hour)
				r.State, r.ApprovedAt, r.ExpiresAt = broker.StateApproved, &now, &exp
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i%4 == 2 {
			if _, err := db.UpdateRequest(ctx, r.ID, func(r *broker.Request) error {
				end := r.ApprovedAt.Add(time.Minute)
				r.State, r.EndedAt, r.EndedBy = broker.StateRevoked, &end, &who
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := db.PruneRequests(ctx, t0.Add(2*time.Hour)); err != nil || n == 0 {
		t.Fatalf("prune: %d %v", n, err)
	}
	kept := snapshotIndexes(t, db)
	if err := db.bolt.Update(rebuildRequestIndexes); err != nil {
		t.Fatal(err)
	}
	rebuilt := snapshotIndexes(t, db)
	for name, keys := range rebuilt {
		if len(keys) == 0 {
			t.Errorf("index %s is empty", name)
		}
		if fmt.Sprint(keys) != fmt.Sprint(kept[name]) {
			t.Errorf("index %s drifted:\nkept    %q\nrebuilt %q", name, kept[name], keys)
		}
	}
}

// writeSchema1 writes a data dir as pamctl with schema 1 left it: the
// buckets of that version, version 1, records and no indexes.
func writeSchema1(t *testing.T, dir string, rs ...*broker.Request) {
	t.Helper()
	b, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"meta", "requests", "keys", "vault", "audit", "audit_meta"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyVersion, u64(1)); err != nil {
			return err
		}
		for _, r := range rs {
			// A schema 1 record, byte for byte: the envelope has not changed.
			raw := []byte(fmt.Sprintf(`{"v":1,"d":%s}`, requestJSON(t, r)))
			if err := tx.Bucket(bucketRequests).Put([]byte(r.ID), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Opening a schema 1 file builds the indexes from its records and records
// schema 2; the lookups then find the old requests.
func TestOpenMigratesSchema1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	alice := broker.Identity{Subject: "alice", Issuer: "corp"}
	exp, ended, old := now.Add(time.Hour), now.Add(-time.Minute), now.Add(-200*24*time.Hour)
	past := now.Add(-time.Hour)
	writeSchema1(t, dir,
		&broker.Request{ID: "req_pending", Kind: broker.KindAccess, Requester: alice, State: broker.StatePending, CreatedAt: past, PendingUntil: past},
		&broker.Request{ID: "req_grant", Kind: broker.KindAccess, Requester: alice, State: broker.StateApproved, CreatedAt: past, ApprovedAt: &past, ExpiresAt: &exp},
		&broker.Request{ID: "req_revoked", Kind: broker.KindAccess, Requester: alice, State: broker.StateRevoked, CreatedAt: past, ApprovedAt: &past, ExpiresAt: &exp, EndedAt: &ended},
		&broker.Request{ID: "req_ancient", Kind: broker.KindAccess, Requester: alice, State: broker.StateDenied, CreatedAt: old, EndedAt: &old},
	)
	db := openTest(t, dir)
	if n, err := db.SealRecords(ctx, testRecKey); err != nil || n != 4 { // what the first start of this build does
		t.Fatalf("sealed %d legacy records: %v", n, err)
	}
	var version uint64
	db.bolt.View(func(tx *bolt.Tx) error { version = beU64(tx.Bucket(bucketMeta).Get(keyVersion)); return nil })
	if version != SchemaVersion || SchemaVersion < 2 {
		t.Fatalf("schema after open: %d (build %d)", version, SchemaVersion)
	}
	check := func(what string, rs []*broker.Request, err error, want ...string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	rs, err := db.DueRequests(ctx, now)
	check("due", rs, err, "req_pending")
	rs, err = db.RequestsInState(ctx, broker.StateApproved, &alice)
	check("alice's grants", rs, err, "req_grant")
	rs, err = db.GrantsExpiringAfter(ctx, now)
	check("grants expiring after now", rs, err, "req_grant", "req_revoked")
	n, err := db.PruneRequests(ctx, now.Add(-90*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("prune after migration: %d %v", n, err)
	}
	rs, err = db.RequestsOf(ctx, alice)
	if err != nil || len(rs) != 3 {
		t.Fatalf("alice's after prune: %d %v", len(rs), err)
	}
	// Reopening does not migrate again (and keeps what is there).
	db.Close()
	db2 := openTest(t, dir)
	rs, err = db2.RequestsInState(ctx, broker.StatePending, nil)
	check("pending after reopen", rs, err, "req_pending")
}

func beU64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// A first prune of a long history goes in several transactions and gets
// everything.
func TestPruneManyInBatches(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seedEnded(t, db, 2*pruneBatch+17, t0)
	n, err := db.PruneRequests(ctx, t0.Add(time.Hour))
	if err != nil || n != 2*pruneBatch+17 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		for _, name := range append([][]byte{bucketRequests}, requestIndexes...) {
			if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
				return fmt.Errorf("%s still holds %q", name, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// seedEnded stores n denied requests of one requester, ended at t0, in one
// transaction.
func seedEnded(t testing.TB, db *DB, n int, t0 time.Time) {
	t.Helper()
	who := broker.Identity{Subject: "agent", Issuer: "corp"}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for i := range n {
			r := &broker.Request{ID: fmt.Sprintf("req_past_%07d", i), Kind: broker.KindAccess, Requester: who, State: broker.StateDenied,
				Scopes: []string{"model:gpt-4o"}, CreatedAt: t0, PendingUntil: t0, EndedAt: &t0,
				Reviews: []broker.Review{{Reviewer: broker.Identity{Subject: "bob", Issuer: "corp"}, At: t0}}}
			raw, err := db.recordKey().Encode(RecordName(KindRequests, r.ID), r)
			if err != nil {
				return err
			}
			if err := putRequest(tx, nil, r, raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func requestJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	// encode wraps in the envelope; take the payload back out.
	i := bytes.Index(raw, []byte(`"d":`))
	return raw[i+4 : len(raw)-1]
}
