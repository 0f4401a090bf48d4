package store

import (
	"context"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/safetext"
)

// An unreadable stored cursor's name is in the error as it is (bounded),
// not quoted Go-style: the CLI escapes the error where it prints it, once,
// so a U+202E in the name reads \u202e there, never \\u202e (an escape
// escaped again, which reads as the six characters someone typed).
func TestUnreadableCursorNameIsEscapedOnceWhereShown(t *testing.T) {
	db := openTest(t, t.TempDir())
	name := "file:/var/log/a\u202ecod.jsonl"
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSinkCursors)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), []byte("not a cursor"))
	}); err != nil {
		t.Fatal(err)
	}
	_, err := db.SinkCursors(context.Background())
	if err == nil {
		t.Fatal("an unreadable cursor was read")
	}
	if !strings.Contains(err.Error(), name) {
		t.Errorf("the error does not name the cursor as it is stored: %q", err)
	}
	if shown := safetext.Escape(err.Error()); !strings.Contains(shown, `a\u202ecod.jsonl`) || strings.Contains(shown, `\\u202e`) {
		t.Errorf("the error as the CLI shows it does not read \\u202e once: %s", shown)
	}
}
