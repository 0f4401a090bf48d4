package etcdstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// Without quorum every operation fails within its bound with an error
// matching ErrUnavailable, Available and OnAvailability say so, and both
// recover by themselves when the members are back.
func TestQuorumLossIsBoundedAndRecovers(t *testing.T) {
	c := etcdtest.Start(t, 3)
	var mu sync.Mutex
	var verdicts []error
	db, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: c.Endpoints(), OpTimeout: 2 * time.Second,
		CheckEvery: 100 * time.Millisecond, OnAvailability: func(err error) { mu.Lock(); verdicts = append(verdicts, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetRecordKey(testRecKey)
	ctx := context.Background()
	if err := db.Probe(ctx, time.Now()); err != nil || db.Available() != nil {
		t.Fatalf("with quorum: %v %v", err, db.Available())
	}
	c.Stop(1)
	c.Stop(2)
	start := time.Now()
	_, err = db.GetRequest(ctx, "req_1")
	if !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Fatalf("read without quorum: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a read without quorum took %s", d)
	}
	if err := db.Probe(ctx, time.Now()); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Fatalf("probe without quorum: %v", err)
	}
	if err := db.Available(); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Fatalf("Available without quorum: %v", err)
	}
	c.Restart(1)
	deadline := time.Now().Add(60 * time.Second)
	for db.Available() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still unavailable a minute after the quorum came back: %v", db.Available())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := db.Probe(ctx, time.Now()); err != nil {
		t.Fatalf("probe after recovery: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(verdicts) < 2 || verdicts[0] == nil || verdicts[len(verdicts)-1] != nil {
		t.Fatalf("OnAvailability heard %v, want a failure then a recovery", verdicts)
	}
}

// Watch starts with a ChangeAll and feeds each write to requests/ and
// sessions/ with the record as written (nil when deleted).
func TestWatchFeedsChanges(t *testing.T) {
	c := etcdtest.Start(t, 1)
	db := openOn(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan broker.Change, 100)
	done := make(chan struct{})
	go func() { defer close(done); db.Watch(ctx, func(ch broker.Change) { changes <- ch }) }()
	next := func(what string) broker.Change {
		t.Helper()
		select {
		case ch := <-changes:
			return ch
		case <-time.After(30 * time.Second):
			t.Fatalf("no change: %s", what)
		}
		return broker.Change{}
	}
	if ch := next("start"); ch.Kind != broker.ChangeAll {
		t.Fatalf("first change %+v, want ChangeAll", ch)
	}
	r := &broker.Request{ID: "req_a", Kind: broker.KindAccess, State: broker.StatePending, Requester: broker.Identity{Subject: "alice", Issuer: "corp"}}
	if err := db.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if ch := next("create"); ch.Kind != broker.ChangeRequest || ch.ID != "req_a" || ch.Request == nil || ch.Request.State != broker.StatePending {
		t.Fatalf("create: %+v", ch)
	}
	if err := db.CreateSession(ctx, &broker.SessionRecord{ID: "ses_a", State: "active"}); err != nil {
		t.Fatal(err)
	}
	if ch := next("session"); ch.Kind != broker.ChangeSession || ch.ID != "ses_a" || ch.Session == nil {
		t.Fatalf("session: %+v", ch)
	}
	if _, err := db.DeleteSessions(ctx, func(*broker.SessionRecord) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if ch := next("session delete"); ch.Kind != broker.ChangeSession || ch.Session != nil {
		t.Fatalf("session delete: %+v", ch)
	}
	cancel()
	<-done
}
