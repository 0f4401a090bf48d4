package etcdstore

import (
	"context"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
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
