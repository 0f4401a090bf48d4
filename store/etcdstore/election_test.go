package etcdstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

// TestElectionMovesWhenTheLeaderDies: two contenders, one leads; its
// client dies (no resignation: a crash), and the other leads within the
// session TTL, with a generous margin for a loaded machine.
func TestElectionMovesWhenTheLeaderDies(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	const ttl = 2 * time.Second
	newCli := func() *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		return cli
	}
	c1, c2 := newCli(), newCli()
	defer c2.Close()
	e1 := Campaign(c1, "/elect/", "replica-1", ElectionOptions{TTL: ttl})
	waitUntil(t, 30*time.Second, "replica-1 leads", e1.IsLeader)
	e2 := Campaign(c2, "/elect/", "replica-2", ElectionOptions{TTL: ttl})
	defer e2.Close()
	// replica-2 waits behind the leader for a while.
	time.Sleep(ttl + 500*time.Millisecond)
	if e2.IsLeader() || !e1.IsLeader() {
		t.Fatalf("leaders: replica-1 %v, replica-2 %v; want only replica-1", e1.IsLeader(), e2.IsLeader())
	}
	if id, err := LeaderID(context.Background(), c2, "/elect/"); err != nil || id != "replica-1" {
		t.Fatalf("LeaderID = %q, %v", id, err)
	}
	killed := time.Now()
	c1.Close() // the leader's process dies: its lease is never revoked
	waitUntil(t, ttl+20*time.Second, "replica-2 takes over", e2.IsLeader)
	took := time.Since(killed)
	if e1.IsLeader() {
		t.Fatal("replica-1 still believes it leads with its client closed")
	}
	if id, err := LeaderID(context.Background(), c2, "/elect/"); err != nil || id != "replica-2" {
		t.Fatalf("LeaderID after takeover = %q, %v", id, err)
	}
	t.Logf("takeover %v after the leader died (TTL %v)", took, ttl)
	e1.Close()

	// A clean stop resigns: a third contender leads at once.
	c3 := newCli()
	defer c3.Close()
	e3 := Campaign(c3, "/elect/", "replica-3", ElectionOptions{TTL: ttl})
	defer e3.Close()
	time.Sleep(200 * time.Millisecond)
	stopped := time.Now()
	e2.Close()
	waitUntil(t, 20*time.Second, "replica-3 leads after replica-2 resigned", e3.IsLeader)
	if d := time.Since(stopped); d > ttl {
		t.Logf("note: takeover after resignation took %v (> TTL: loaded machine?)", d)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type flagLeader struct{ v atomic.Bool }

func (f *flagLeader) IsLeader() bool { return f.v.Load() }

// The head timer and the every-HeadEvery signing run only while the log's
// Leader leads; the first head (in the first event's transaction) and
// explicit SignHead do not wait for it.
func TestAuditHeadTimerFollowsTheLeader(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	lead := &flagLeader{}
	ticks := make(chan time.Time)
	l, err := OpenAuditLog(context.Background(), cluster.Client(), "/headtimer/", AuditOptions{
		Signer: storetest.SuiteSigner, HeadEvery: 5, Leader: lead,
		newTicker: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for range 20 {
		if err := l.Append(ctx, &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "a"}}); err != nil {
			t.Fatal(err)
		}
	}
	ticks <- time.Now()
	ticks <- time.Now() // the loop took the first tick: the second waits for its round
	if st, err := l.Head(ctx); err != nil || st.Head == nil || st.Head.Seq != 1 {
		t.Fatalf("a replica that does not lead signed a head: %+v, %v", st.Head, err)
	}
	lead.v.Store(true)
	ticks <- time.Now()
	waitUntil(t, 20*time.Second, "the leader's timer signs the head", func() bool {
		st, err := l.Head(ctx)
		return err == nil && st.Head != nil && st.Head.Seq == 20
	})
}
