package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/store"
)

// A sink (and the anchor) whose name changed when its URL's path token
// was hidden shows, on a stopped data dir, the cursor stored under its old
// name, as the next start adopts it; and the anchor's URL is shown with the
// token hidden, as the running server shows it.
func TestStoppedSinkStatusAdoptsRenamedCursors(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lg, err := db.AuditLog(store.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	for range 5 {
		if err := lg.Append(ctx, &audit.Event{Type: audit.TypeLogout, Actor: &audit.Actor{Subject: "alice"}}); err != nil {
			t.Fatal(err)
		}
	}
	const token = "ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR"
	key := []byte("0123456789abcdef0123456789abcdef")
	sink := auditsink.SinkConfig{Type: "http", URL: "https://collector.example/receiver/v1/http/" + token}
	anchor := auditsink.AnchorConfig{URL: "https://anchor.example/heads/" + token}
	for _, legacy := range []string{"http:" + sink.URL, "anchor:" + anchor.URL} { // the names before
		if err := db.SaveSinkCursor(ctx, legacy, auditsink.SealCursor(key, legacy, auditsink.Cursor{Seq: 4, Updated: time.Now()})); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &Config{}
	cfg.Audit.Sinks = []auditsink.SinkConfig{sink}
	cfg.Audit.Anchor = anchor
	st, err := storedSinkStatus(ctx, db, lg, cfg, key, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 {
		t.Fatalf("status: %+v", st)
	}
	for _, s := range st {
		if s.Cursor.Seq != 4 || s.CursorError != "" || s.CursorNote != "" {
			t.Errorf("%s: cursor %d, error %q, note %q: want the cursor stored under the old name (4), trusted", s.Name, s.Cursor.Seq, s.CursorError, s.CursorNote)
		}
		if strings.Contains(s.Name+s.Destination, token) {
			t.Errorf("the path token is shown: %s %s", s.Name, s.Destination)
		}
	}
}
