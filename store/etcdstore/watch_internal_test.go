package etcdstore

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// A watch that resumes after revisions it missed were compacted away (a
// long partition) sends a ChangeAll, so the broker reloads everything,
// and then goes on feeding changes.
func TestWatchAfterCompactionReloadsEverything(t *testing.T) {
	c := etcdtest.Start(t, 1)
	db, err := Open(context.Background(), Config{Endpoints: c.Endpoints(), Prefix: "/compact/"})
	if err != nil {
		t.Fatal(err)
	}
	db.SetRecordKey(testRecKey)
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen, err := db.revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateSession(ctx, &broker.SessionRecord{ID: "ses_missed", State: "active"}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateSession(ctx, &broker.SessionRecord{ID: "ses_missed_too", State: "active"}); err != nil {
		t.Fatal(err)
	}
	now, err := db.revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.cli.Compact(ctx, now); err != nil {
		t.Fatal(err)
	}
	changes := make(chan broker.Change, 100)
	done := make(chan struct{})
	go func() { defer close(done); db.watchFrom(ctx, seen, func(ch broker.Change) { changes <- ch }) }()
	defer func() { cancel(); <-done }()
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
	if ch := next("resume"); ch.Kind != broker.ChangeAll {
		t.Fatalf("resuming over a compacted gap: %+v, want ChangeAll", ch)
	}
	if err := db.CreateSession(ctx, &broker.SessionRecord{ID: "ses_after", State: "active"}); err != nil {
		t.Fatal(err)
	}
	if ch := next("after"); ch.Kind != broker.ChangeSession || ch.ID != "ses_after" {
		t.Fatalf("after the gap: %+v", ch)
	}
}

// The change feed checks what it passes on: a forged request or session
// put by a writer of the prefix reaches the broker as "changed, re-read
// it" (where the read refuses it), never as a record to apply.
func TestWatchDropsForgedRecords(t *testing.T) {
	db := &DB{prefix: "/p/"}
	db.SetRecordKey(testRecKey)
	forged, err := store.EncodeRecord(&broker.SessionRecord{ID: "ses_x", Identity: broker.Identity{Subject: "eve", Groups: []string{"security"}}})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := testRecKey.Encode("sessions/ses_x", &broker.SessionRecord{ID: "ses_x", Identity: broker.Identity{Subject: "eve"}})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(key string, v []byte) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte("/p/" + key), Value: v}}
	}
	if ch, ok := db.change(ev("sessions/ses_x", forged)); !ok || ch.Kind != broker.ChangeSession || ch.Session != nil {
		t.Fatalf("forged session: %+v %v", ch, ok)
	}
	if ch, ok := db.change(ev("requests/req_x", forged)); !ok || ch.Kind != broker.ChangeRequest || ch.Request != nil {
		t.Fatalf("forged request: %+v %v", ch, ok)
	}
	if ch, _ := db.change(ev("sessions/ses_y", sealed)); ch.Session != nil {
		t.Fatalf("a sealed session moved to another id was passed on: %+v", ch.Session)
	}
	if ch, _ := db.change(ev("sessions/ses_x", sealed)); ch.Session == nil || ch.Session.Identity.Subject != "eve" {
		t.Fatalf("an authentic session was not passed on: %+v", ch)
	}
}
