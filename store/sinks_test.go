package store

import (
	"context"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// Sink cursors are durable per name, survive a reopen, and a DB that never
// had one (or a read-only inspection) reads as empty.
func TestSinkCursors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.SinkCursors(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("fresh db: %v %v", got, err)
	}
	now := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	if err := db.SaveSinkCursor(ctx, "syslog:tcp://siem:514", auditsink.Cursor{Seq: 10, HeadSeq: 9, Updated: now}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveSinkCursor(ctx, "anchor:file:/a", auditsink.Cursor{Seq: 9, HeadSeq: 9, Updated: now}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveSinkCursor(ctx, "syslog:tcp://siem:514", auditsink.Cursor{Seq: 12, HeadSeq: 9, Updated: now}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveSinkCursor(ctx, "", auditsink.Cursor{}); err == nil {
		t.Fatal("a cursor without a name was saved")
	}
	db.Close()
	db, err = Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err = db.SinkCursors(ctx)
	if err != nil || len(got) != 2 || got["syslog:tcp://siem:514"].Seq != 12 || got["anchor:file:/a"].HeadSeq != 9 || !got["anchor:file:/a"].Updated.Equal(now) {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
}
