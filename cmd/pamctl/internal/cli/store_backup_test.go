package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
	"github.com/pamctl/pamctl/store"
)

// restoreInto puts a backup file in place as the data file of a new data
// dir (what docs/operations.md tells an operator to do) and returns it.
func restoreInto(t *testing.T, backup string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, store.FileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// backupEvents returns the store.backup events of the trail in dataDir.
func backupEvents(t *testing.T, dataDir, masterKeyFile string) []audit.Event {
	t.Helper()
	l, err := openExistingLocal(context.Background(), &Config{DataDir: dataDir, MasterKeyFile: masterKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	kr, err := l.keyring(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lg, err := l.db.AuditLog(store.AuditOptions{Signer: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	var out []audit.Event
	lg.Range(context.Background(), 0, func(e audit.Event) bool {
		if e.Type == audit.TypeStoreBackup {
			out = append(out, e)
		}
		return true
	})
	return out
}

// A backup taken while the server appends from many goroutines, signs
// heads (raising the high-water mark) and rotates keys is a consistent
// copy: it opens, `audit verify` passes on it, it holds its own
// store.backup event, and a server starts on it even after the live trail
// moved far past it (the mark inside the copy is the copy's own).
func TestStoreBackupWhileServingUnderAppends(t *testing.T) {
	s := startServer(t)
	mk := s.app.cfg.MasterKeyFile
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var appended atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := s.app.audit.Append(ctx, &audit.Event{Type: audit.TypeConfigReloaded, Decision: "applied", Target: "backup-test"}); err == nil {
					appended.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // heads signed (and the mark raised) while copying
		defer wg.Done()
		for ctx.Err() == nil {
			s.app.audit.SignHead(ctx)
			time.Sleep(time.Millisecond)
		}
	}()
	for appended.Load() < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	s.as(t, "admin", "", "keys", "rotate").must(t, "keys rotate while appending")
	first := filepath.Join(s.dir, "backups", "first.db")
	os.MkdirAll(filepath.Dir(first), 0o700)
	r := s.as(t, "admin", "", "store", "backup", "--to", first).must(t, "backup while serving")
	if !strings.Contains(r.err, "made by the running server") {
		t.Fatalf("backup did not go through the server: %s", r.err)
	}
	second := filepath.Join(s.dir, "backups", "second.db")
	s.as(t, "admin", "", "store", "backup", "--to", second).must(t, "second backup while serving")
	for appended.Load() < 1000 {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	wg.Wait()
	s.as(t, "admin", "", "keys", "rotate").must(t, "keys rotate after the backups")
	s.stop()

	for _, b := range []string{first, second} {
		fi, err := os.Stat(b)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", b, fi.Mode().Perm())
		}
		info, err := store.CheckBackup(b)
		if err != nil {
			t.Fatal(err)
		}
		if info.AuditSeq == 0 || info.Bytes != fi.Size() {
			t.Fatalf("%s: %+v", b, info)
		}
		dir := restoreInto(t, b)
		v := s.as(t, "admin", "", "audit", "verify", "--data-dir", dir, "-o", "json").must(t, "audit verify on the restored "+b)
		if !strings.Contains(v.out, `"ok": true`) {
			t.Fatalf("verify %s: %s", b, v.out)
		}
		evs := backupEvents(t, dir, mk)
		if len(evs) == 0 || evs[len(evs)-1].Target != b || evs[len(evs)-1].Details["via"] != broker.ViaSocket {
			t.Fatalf("%s does not hold its own store.backup event: %+v", b, evs)
		}
	}

	// The live trail is now far past the first copy, and its mark too; a
	// server still starts on the first copy: keys and trail came together.
	live := backupEvents(t, filepath.Join(s.dir, "data"), mk)
	if len(live) != 2 {
		t.Fatalf("live trail has %d store.backup events, want 2", len(live))
	}
	dir := restoreInto(t, first)
	cfg := *s.app.cfg
	cfg.DataDir = dir
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	app, err := NewApp(context.Background(), &cfg, AppOptions{Dev: true})
	if err != nil {
		t.Fatalf("a server does not start on an older backup: %v", err)
	}
	app.Close()
	s.as(t, "admin", "", "audit", "verify", "--data-dir", dir).must(t, "verify the restored first copy after a start")
}

// With no server running, backup opens the data dir, records the event
// (via data-dir), signs the head over it and copies.
func TestStoreBackupWithServerStopped(t *testing.T) {
	s := startServer(t)
	s.stop()
	to := filepath.Join(s.dir, "offline.db")
	r := s.as(t, "admin", "", "store", "backup", "--to", to).must(t, "backup with the server stopped")
	if !strings.Contains(r.err, "made by the data dir") {
		t.Fatalf("backup did not open the data dir: %s", r.err)
	}
	dir := restoreInto(t, to)
	v := s.as(t, "admin", "", "audit", "verify", "--data-dir", dir, "-o", "json").must(t, "verify the offline copy")
	if !strings.Contains(v.out, `"ok": true`) {
		t.Fatalf("verify: %s", v.out)
	}
	evs := backupEvents(t, dir, s.app.cfg.MasterKeyFile)
	if len(evs) != 1 || evs[0].Details["via"] != broker.ViaDataDir || evs[0].Target != to {
		t.Fatalf("store.backup events in the copy: %+v", evs)
	}
}

// Refusals: no --to, an existing file or symlink (never overwritten, never
// followed), a missing directory, a terminal on stdout, and a trail that
// cannot record the event (no copy then, and no file left behind).
func TestStoreBackupRefusals(t *testing.T) {
	s := startServer(t)
	if r := s.as(t, "admin", "", "store", "backup"); r.code != ExitUsage || !strings.Contains(r.err, "--to FILE") {
		t.Fatalf("no --to: %+v", r)
	}
	existing := filepath.Join(s.dir, "existing.db")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	if r := s.as(t, "admin", "", "store", "backup", "--to", existing); r.code != ExitConflict || !strings.Contains(r.err, "never overwrites") {
		t.Fatalf("existing file: %+v", r)
	}
	if raw, _ := os.ReadFile(existing); string(raw) != "keep me" {
		t.Fatalf("existing file changed: %q", raw)
	}
	target := filepath.Join(s.dir, "elsewhere.db")
	link := filepath.Join(s.dir, "link.db")
	os.Symlink(target, link)
	if r := s.as(t, "admin", "", "store", "backup", "--to", link); r.code != ExitConflict {
		t.Fatalf("dangling symlink: %+v", r)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backup followed a symlink: %v", err)
	}
	if r := s.as(t, "admin", "", "store", "backup", "--to", filepath.Join(s.dir, "no", "such", "dir.db")); r.code == 0 || !strings.Contains(r.err, "no such file") {
		t.Fatalf("missing dir: %+v", r)
	}

	// The trail refuses the store.backup event: no copy is made.
	s.app.audit.Close()
	refused := filepath.Join(s.dir, "refused.db")
	if r := s.as(t, "admin", "", "store", "backup", "--to", refused); r.code == 0 || !strings.Contains(r.err, "no backup was made") {
		t.Fatalf("backup with a closed trail: %+v", r)
	}
	if _, err := os.Lstat(refused); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused backup left a file: %v", err)
	}
}

// A terminal on stdout is refused for --to -; a pipe gets the copy.
func TestStoreBackupToStdout(t *testing.T) {
	s := startServer(t)
	ios, _, out, _ := iostreams.Test()
	ios.SetTTY(false, true, false)
	root := NewCmdRoot(NewFactory(ios))
	root.SetArgs([]string{"store", "backup", "--to", "-"})
	if err := root.ExecuteContext(context.Background()); exitCodeOf(err) != ExitUsage || out.Len() != 0 {
		t.Fatalf("--to - on a terminal: %v (%d bytes written)", err, out.Len())
	}
	r := s.as(t, "admin", "", "store", "backup", "--to", "-").must(t, "backup to stdout")
	to := filepath.Join(s.dir, "piped.db")
	os.WriteFile(to, []byte(r.out), 0o600)
	if _, err := store.CheckBackup(to); err != nil {
		t.Fatalf("piped copy: %v", err)
	}
}

// writeBackupFile removes a copy that failed or came out incomplete, so
// nothing that looks like a backup is left behind.
func TestWriteBackupFileRemovesBadCopies(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	if _, err := db.Snapshot(context.Background(), func(int64) (io.Writer, error) { return &full, nil }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cases := map[string]func(io.Writer) (int64, error){
		"stream error": func(w io.Writer) (int64, error) {
			n, _ := w.Write(full.Bytes()[:full.Len()/2])
			return int64(n), errors.New("the backup stream ended early")
		},
		"truncated without error": func(w io.Writer) (int64, error) {
			n, err := w.Write(full.Bytes()[:full.Len()-4096])
			return int64(n), err
		},
		"not a database": func(w io.Writer) (int64, error) {
			n, err := w.Write(bytes.Repeat([]byte("x"), 8192))
			return int64(n), err
		},
	}
	for name, fill := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".db")
		if _, err := writeBackupFile(p, fill); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: left %s behind", name, p)
		}
	}
	p := filepath.Join(dir, "good.db")
	info, err := writeBackupFile(p, func(w io.Writer) (int64, error) { n, err := w.Write(full.Bytes()); return int64(n), err })
	if err != nil || info.Bytes != int64(full.Len()) || info.Schema != store.SchemaVersion {
		t.Fatalf("good copy: %+v %v", info, err)
	}
}
