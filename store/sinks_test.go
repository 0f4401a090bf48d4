package store

import (
	"context"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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

// A stored cursor that does not decode is named in the error the way a
// sink is named now: an old key holding a collector's path token never
// shows it.
func TestUnreadableSinkCursorErrorHidesTheToken(t *testing.T) {
	db, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const token = "ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR"
	name := "http:https://collectors.sumologic.com/receiver/v1/http/" + token
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSinkCursors)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), []byte("not a record"))
	}); err != nil {
		t.Fatal(err)
	}
	_, err = db.SinkCursors(context.Background())
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "collectors.sumologic.com/receiver/v1/http/…#") {
		t.Fatalf("error: %v", err)
	}
}
