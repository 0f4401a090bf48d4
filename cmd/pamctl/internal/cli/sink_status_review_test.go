package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/store"
)

// Review finding: commit 72198e7 made serve reject a stored sink cursor
// without an authenticator once the deployment is past the upgrade
// (Options.LegacyCursorsEnded), but `pamctl audit sinks` with no server
// running (storedSinkStatus, documented as checking "each stored cursor
// ... as a starting server would") still decides legacyOK from the
// cursors alone. After a writer without the master key strips every
// cursor's authenticator and moves it forward, the offline status shows
// the forged position as accepted (a note) while the server will reject
// it: the operator checking before a restart is told nothing is wrong.
func TestReviewOfflineSinkStatusAdoptsStrippedCursorAfterUpgrade(t *testing.T) {
	var cfg *Config
	dir := t.TempDir()
	sink := filepath.Join(dir, "trail.jsonl")
	conf := filepath.Join(dir, "config.yaml")
	os.WriteFile(conf, []byte("audit:\n  sinks:\n    - { type: file, path: "+sink+" }\n"), 0o600)
	t.Setenv("PAMCTL_CONFIG", conf)
	s := startServerWith(t, func(c *Config) { cfg = c })
	name := cfg.Audit.Sinks[0].ID()
	s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", "key1").must(t, "vault set")
	waitUntil(t, "the sink to catch up", 15*time.Second, func() bool {
		st := s.app.SinkStatus()
		return len(st) == 1 && st[0].Cursor.Seq > 0 && st[0].Lag == 0
	})
	s.stop()

	db, err := store.Open(cfg.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := db.SinkCursors(context.Background())
	c := stored[name]
	if c.MAC == "" {
		t.Fatalf("the server saved an unauthenticated cursor: %+v", c)
	}
	c.MAC = ""
	if err := db.SaveSinkCursor(context.Background(), name, c); err != nil {
		t.Fatal(err)
	}
	db.Close()

	r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, "audit sinks (stopped)")
	var st []auditsink.Status
	if err := json.Unmarshal([]byte(r.out), &st); err != nil || len(st) != 1 {
		t.Fatalf("%v\n%s", err, r.out)
	}
	if st[0].CursorError == "" {
		t.Fatalf("offline status accepts a stripped cursor that the next serve rejects: note %q, cursor %+v", st[0].CursorNote, st[0].Cursor)
	}
}
