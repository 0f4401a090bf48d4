package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

func TestAuditSuite(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client()
	n := 0
	storetest.Audit(t, storetest.AuditBackend{Replicas: true, Unauthenticated: store.ErrUnauthenticated, New: func(t *testing.T) storetest.AuditTrail {
		n++
		prefix := "/suite" + string(rune('a'+n%26)) + t.Name() + "/"
		return storetest.AuditTrail{
			Open: func(o storetest.AuditOptions) (audit.Log, error) {
				l, err := OpenAuditLog(context.Background(), cli, prefix, AuditOptions{Signer: o.Signer, Clock: o.Clock,
					RecordKey: o.RecordKey, Inspect: o.Inspect, OnError: o.OnError})
				if err != nil {
					return nil, err
				}
				return l, nil
			},
			Forge: func(t *testing.T, f storetest.Forgery) { forgeEtcd(t, cli, prefix, f.Seq, f.Line, f.AuthFrom) },
		}
	}})
}

// TestAuditMemberLossAndQuorumLoss appends from two replicas under load
// while one etcd member stops (appends go on), then a second (appends fail
// within the commit timeout instead of hanging, matching ErrUnavailable),
// then comes back (appends recover by themselves). Every append that
// returned nil is in the trail at its seq, and the chain verifies.
func TestAuditMemberLossAndQuorumLoss(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	db1 := openDB(t, cluster, 2*time.Second)
	db2 := openDB(t, cluster, 2*time.Second)
	var logs []*AuditLog
	for _, db := range []*DB{db1, db2} {
		l, err := db.AuditLog(context.Background(), AuditOptions{Signer: storetest.SuiteSigner})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		logs = append(logs, l)
	}
	var mu sync.Mutex
	acked := map[string]uint64{} // subject -> seq
	var failed, okCount atomic.Int64
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := logs[w%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				subj := fmt.Sprintf("w%d-%d", w, n.Add(1))
				e := &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: subj}, Status: 200}
				start := time.Now()
				err := l.Append(context.Background(), e)
				if d := time.Since(start); d > 15*time.Second {
					t.Errorf("append took %v: it must fail closed, not hang", d)
				}
				if err != nil {
					failed.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				okCount.Add(1)
				mu.Lock()
				acked[subj] = e.Seq
				mu.Unlock()
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out waiting for %s (ok %d, failed %d)", what, okCount.Load(), failed.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("appends", func() bool { return okCount.Load() >= 200 })
	cluster.Stop(0)
	base := okCount.Load()
	waitFor("appends with one member down", func() bool { return okCount.Load() >= base+200 })
	cluster.Stop(1) // no quorum
	waitFor("appends to fail without quorum", func() bool { return failed.Load() >= 4 })
	var unavailableErr error
	probe := &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "probe"}}
	if err := logs[0].Append(context.Background(), probe); err == nil {
		t.Fatal("append without quorum succeeded")
	} else {
		unavailableErr = err
	}
	if !errors.Is(unavailableErr, ErrUnavailable) {
		t.Errorf("append without quorum: %v; want ErrUnavailable (the proxy answers 503)", unavailableErr)
	}
	cluster.Restart(1)
	base = okCount.Load()
	waitFor("appends to recover with quorum back", func() bool { return okCount.Load() >= base+100 })
	close(stop)
	wg.Wait()
	cluster.Restart(0)

	if _, err := logs[1].SignHead(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := logs[0].Verify(context.Background(), storetest.SuiteKeys)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for subj, seq := range acked {
		e, err := logs[0].Get(context.Background(), seq)
		if err != nil || e.Actor == nil || e.Actor.Subject != subj {
			t.Fatalf("acknowledged %s at seq %d, trail has %+v, %v", subj, seq, e.Actor, err)
		}
	}
	t.Logf("acknowledged %d appends, %d failed without quorum; trail %d events, verified", len(acked), failed.Load(), rep.Events)
}

func openDB(t *testing.T, c *etcdtest.Cluster, opTimeout time.Duration) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{Endpoints: c.Endpoints(), Prefix: "/quorum/", OpTimeout: opTimeout})
	if err != nil {
		t.Fatal(err)
	}
	db.SetRecordKey(testRecKey)
	t.Cleanup(func() { db.Close() })
	return db
}
