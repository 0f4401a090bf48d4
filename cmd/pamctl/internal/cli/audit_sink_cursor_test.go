package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/store"
)

// startWithFileSink starts a server whose trail goes to a file sink and
// appends an event (a vault set) for it to deliver.
func startWithFileSink(t *testing.T) (s *testServer, cfg *Config, name, sink string) {
	t.Helper()
	dir := t.TempDir()
	sink = filepath.Join(dir, "trail.jsonl")
	conf := filepath.Join(dir, "config.yaml")
	os.WriteFile(conf, []byte("audit:\n  sinks:\n    - { type: file, path: "+sink+" }\n"), 0o600)
	t.Setenv("PAMCTL_CONFIG", conf)
	s = startServerWith(t, func(c *Config) { cfg = c })
	s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", "key1").must(t, "vault set")
	return s, cfg, cfg.Audit.Sinks[0].ID(), sink
}

// The red team's attack: with the server stopped, a program that can
// write the data dir (no master key) moves every sink cursor far past the
// trail. `pamctl audit sinks` on the stopped dir says the cursor is not
// trusted; the restarted server does not follow it: the sink gets the
// trail again from the first event (its file holds everything, once), and
// the status and readiness say why.
func TestForgedSinkCursorIsNotFollowed(t *testing.T) {
	s, cfg, name, sink := startWithFileSink(t)
	sinks := func(what string) []auditsink.Status {
		t.Helper()
		var st []auditsink.Status
		r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, what)
		if err := json.Unmarshal([]byte(r.out), &st); err != nil || len(st) != 1 {
			t.Fatalf("%s: %v\n%s", what, err, r.out)
		}
		return st
	}
	deadline := time.Now().Add(15 * time.Second)
	for st := sinks("audit sinks"); st[0].Cursor.Seq == 0 || st[0].Lag != 0; st = sinks("audit sinks") {
		if time.Now().After(deadline) {
			t.Fatalf("the sink never caught up: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()

	db, err := store.Open(cfg.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := db.SinkCursors(context.Background())
	if stored[name].MAC == "" {
		t.Fatalf("the server saved an unauthenticated cursor: %+v", stored[name])
	}
	if err := db.SaveSinkCursor(context.Background(), name, auditsink.Cursor{Seq: 1 << 40, HeadSeq: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	st := sinks("audit sinks (stopped, forged)")[0]
	if !strings.Contains(st.CursorError, "past the end of the trail") || st.Cursor.Seq != 0 || st.Lag == 0 {
		t.Fatalf("stopped status of a forged cursor: %+v", st)
	}
	table := s.as(t, "admin", "", "audit", "sinks").must(t, "audit sinks (table)")
	if !strings.Contains(table.out, "cursor not trusted") {
		t.Fatalf("audit sinks table:\n%s", table.out)
	}

	// Restart on the same data dir.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app, err := NewApp(ctx, cfg, AppOptions{Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	deadline = time.Now().Add(15 * time.Second)
	for {
		st := app.SinkStatus()[0]
		if st.CursorError != "" && st.Lag == 0 && st.Cursor.Seq > 0 {
			if err := st.Problem(time.Now(), sinkLagBudget); err == nil || !strings.Contains(err.Error(), "past the end") {
				t.Fatalf("readiness of a sink whose cursor was rejected: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted sink: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The file holds every event once, from seq 1.
	f, err := os.Open(sink)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := audit.VerifyJSONL(bufio.NewReader(f), nil)
	if err != nil || rep.First != 1 || rep.Last != app.SinkStatus()[0].Cursor.Seq {
		t.Fatalf("sink file after the redelivery: %+v %v", rep, err)
	}
	// The trail records it (and the sink received that too).
	events, err := app.auditLog.Last(context.Background(), 50)
	if err != nil {
		t.Fatal(err)
	}
	var found []audit.Event
	for _, e := range events {
		if e.Type == audit.TypeAuditCursor {
			found = append(found, e)
		}
	}
	if len(found) != 1 || found[0].Target != name || found[0].Decision != "rejected" || !strings.Contains(found[0].Error, "past the end of the trail") {
		t.Fatalf("audit.cursor events in the trail: %+v", found)
	}
	waitUntil(t, "the sink to receive the audit.cursor event", 10*time.Second, func() bool {
		raw, _ := os.ReadFile(sink)
		return strings.Contains(string(raw), `"type":"audit.cursor"`)
	})
}

// After the upgrade (this data dir's signing-key records say its records
// are sealed), a writer without the master key who strips every cursor's
// authenticator is not taken for an older pamctl: `pamctl audit sinks` on
// the stopped dir says the cursor is not trusted (a review found it
// adopting it while serve rejects it), and the restarted server rejects
// it instead of adopting it as legacy.
func TestStrippedSinkCursorIsRejectedAfterTheUpgrade(t *testing.T) {
	s, cfg, name, _ := startWithFileSink(t)
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
	c.MAC = "" // within the trail, authenticator stripped
	if err := db.SaveSinkCursor(context.Background(), name, c); err != nil {
		t.Fatal(err)
	}
	db.Close()

	r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, "audit sinks (stopped)")
	var offline []auditsink.Status
	if err := json.Unmarshal([]byte(r.out), &offline); err != nil || len(offline) != 1 {
		t.Fatalf("%v\n%s", err, r.out)
	}
	if offline[0].CursorError == "" {
		t.Fatalf("offline status accepts a stripped cursor that the next serve rejects: note %q, cursor %+v", offline[0].CursorNote, offline[0].Cursor)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app, err := NewApp(ctx, cfg, AppOptions{Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	waitUntil(t, "the stripped cursor to be rejected", 15*time.Second, func() bool {
		st := app.SinkStatus()[0]
		if st.CursorNote != "" {
			t.Fatalf("a stripped cursor was adopted as legacy after the upgrade: %+v", st)
		}
		return strings.Contains(st.CursorError, "no authenticator")
	})
}
