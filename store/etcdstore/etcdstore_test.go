package etcdstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

var prefixes atomic.Int64

// openOn opens a store under a fresh prefix of c, closed when t ends.
func openOn(t testing.TB, c *etcdtest.Cluster) *etcdstore.DB {
	t.Helper()
	return openAt(t, c, fmt.Sprintf("/t%d/", prefixes.Add(1)))
}

// openAt opens a store under prefix of c, closed when t ends.
func openAt(t testing.TB, c *etcdtest.Cluster, prefix string) *etcdstore.DB {
	t.Helper()
	db, err := etcdstore.Open(context.Background(), etcdstore.Config{
		Endpoints: c.Endpoints(), Prefix: prefix, OpTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetRecordKey(testRecKey)
	return db
}

func TestRequests(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Requests(t, func(t *testing.T) broker.Store { return openOn(t, c) })
}

func TestSessions(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Sessions(t, func(t *testing.T) broker.SessionStore { return openOn(t, c) })
}

func TestKeys(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Keys(t, func(t *testing.T) storetest.KeyData { return openOn(t, c) }, store.ErrKeysMissing)
}

func TestVault(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Vault(t, func(t *testing.T) vault.Store { return openOn(t, c) })
}

func TestEnrollments(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Enrollments(t, func(t *testing.T) link.Store { return openOn(t, c) })
}

func TestSinkCursors(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.SinkCursors(t, func(t *testing.T) auditsink.CursorStore { return openOn(t, c) })
}

// TestRedeemLoginLease: a redeemed ID token's key lives on a lease that
// ends at the token's expiry, so etcd drops it without a sweep; a refused
// second redemption leaves no lease behind.
func TestRedeemLoginLease(t *testing.T) {
	c := etcdtest.Start(t, 1)
	db := openAt(t, c, "/redeem/")
	ctx := context.Background()
	now := time.Now()
	for i := range 2 {
		first, err := db.RedeemLogin(ctx, "k1", now, now.Add(90*time.Second))
		if err != nil || first != (i == 0) {
			t.Fatalf("redemption %d: %v %v", i, first, err)
		}
	}
	cli := c.Client()
	resp, err := cli.Get(ctx, "/redeem/logins/k1")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("the redeemed key: %+v %v", resp, err)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.TTL < 80 || ttl.TTL > 91 {
		t.Fatalf("its lease: %+v %v", ttl, err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases after a refused redemption: %+v %v", leases, err)
	}
}

func TestForgedRecords(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	storetest.Forged(t, storetest.ForgedBackend{
		New: func(t *testing.T) storetest.RecordStore { return openOn(t, c) },
		Raw: func(t *testing.T, s storetest.RecordStore, name string) []byte {
			db := s.(*etcdstore.DB)
			resp, err := c.Client().Get(ctx, db.Prefix()+name)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) == 0 {
				return nil
			}
			return resp.Kvs[0].Value
		},
		WriteRaw: func(t *testing.T, s storetest.RecordStore, name string, raw []byte) {
			db := s.(*etcdstore.DB)
			if _, err := c.Client().Put(ctx, db.Prefix()+name, string(raw)); err != nil {
				t.Fatal(err)
			}
		},
		Seal:      func(s storetest.RecordStore) (int, error) { return s.(*etcdstore.DB).SealRecords(ctx, testRecKey) },
		Encode:    store.EncodeRecord,
		ErrForged: store.ErrRecordForged,
		Observe: func(s storetest.RecordStore, fn func(string, error)) {
			s.(*etcdstore.DB).SetRecordKey(testRecKey.OnForged(fn))
		},
		WriteIndex: func(t *testing.T, s storetest.RecordStore, index string, r *broker.Request) {
			for _, e := range store.RequestIndexEntries(r) {
				if e.Index == index {
					if _, err := c.Client().Put(ctx, s.(*etcdstore.DB).Prefix()+"req_idx/"+index+"/"+string(e.Key), ""); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
		DropIndex: func(t *testing.T, s storetest.RecordStore, index string, r *broker.Request) {
			for _, e := range store.RequestIndexEntries(r) {
				if e.Index == index {
					if _, err := c.Client().Delete(ctx, s.(*etcdstore.DB).Prefix()+"req_idx/"+index+"/"+string(e.Key)); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
	})
}

// Replicas of a deployment upgraded together start at once, and each
// seals the records the older version left: they race record by record
// and all succeed, every record sealed exactly once (a put holds only
// if the record is still as read, so none overwrites a newer write) and
// readable.
func TestSealRecordsConcurrently(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	first := openOn(t, c)
	const n = 120 // more than one transaction's worth
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		r := &broker.Request{ID: fmt.Sprintf("req_%03d", i), Kind: broker.KindAccess, Requester: broker.Identity{Subject: "a", Issuer: "corp"},
			State: broker.StatePending, CreatedAt: t0, PendingUntil: t0}
		raw, err := store.EncodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client().Put(ctx, first.Prefix()+"requests/"+r.ID, string(raw)); err != nil {
			t.Fatal(err)
		}
	}
	replicas := []*etcdstore.DB{first, openAt(t, c, first.Prefix()), openAt(t, c, first.Prefix())}
	var wg sync.WaitGroup
	sealed := make([]int, len(replicas))
	errs := make([]error, len(replicas))
	for i, db := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sealed[i], errs[i] = db.SealRecords(ctx, testRecKey)
		}()
	}
	wg.Wait()
	total := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += sealed[i]
	}
	if total != n { // each put holds only if the record is as read: once each
		t.Fatalf("sealed %d records in all, want each of the %d once", total, n)
	}
	for i := range n {
		if _, err := replicas[i%len(replicas)].GetRequest(ctx, fmt.Sprintf("req_%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if again, err := first.SealRecords(ctx, testRecKey); err != nil || again != 0 {
		t.Fatalf("after the upgrade: sealed %d again, %v", again, err)
	}
}
