//go:build unix

// Unix only: modes and FIFOs (the Windows rules are safefile's DACL tests).

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeSessionFile puts raw at the session path with mode perm, in a
// private config dir.
func writeSessionFile(t *testing.T, raw string, perm os.FileMode) string {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	p := SessionPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(raw), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

const sessionJSON = `{"server":"http://127.0.0.1:8700","id":"ses_1","token":"pamctl_s_secret","expires_at":"2099-01-01T00:00:00Z",` +
	`"login":{"id_token_file":"/var/run/secrets/other-workload/token"}}`

// The session file is read as the other files pamctl keeps secrets in:
// one that others may read has shown its token (and is refused, with
// what to do), one that others could have written (its directory, or a
// FIFO or a huge file in its place) is never believed: a planted session
// names the server it talks to and the ID token file a step-up reads and
// sends.
func TestLoadSessionRefusesAFileOthersCouldReadOrWrite(t *testing.T) {
	t.Run("private", func(t *testing.T) {
		writeSessionFile(t, sessionJSON, 0o600)
		s, err := loadSession()
		if err != nil || s == nil || s.Token != "pamctl_s_secret" {
			t.Fatalf("a 0600 session: %+v, %v", s, err)
		}
	})
	t.Run("readable by others", func(t *testing.T) {
		p := writeSessionFile(t, sessionJSON, 0o644)
		_, err := loadSession()
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), "pamctl logout") {
			t.Fatalf("a 0644 session: %v", err)
		}
		if strings.Contains(err.Error(), "pamctl_s_secret") {
			t.Fatalf("the error shows the token: %v", err)
		}
	})
	t.Run("group writable", func(t *testing.T) {
		writeSessionFile(t, sessionJSON, 0o620)
		if _, err := loadSession(); err == nil {
			t.Fatal("a group-writable session was believed")
		}
	})
	t.Run("directory others may write", func(t *testing.T) {
		p := writeSessionFile(t, sessionJSON, 0o600)
		if err := os.Chmod(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		_, err := loadSession()
		if err == nil || !strings.Contains(err.Error(), filepath.Dir(p)) {
			t.Fatalf("a session in a 0777 directory: %v", err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		t.Setenv("XDG_CONFIG_HOME", t.TempDir())
		p := SessionPath()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Skip("mkfifo:", err)
		}
		done := make(chan error, 1)
		go func() { _, err := loadSession(); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "regular file") || !strings.Contains(err.Error(), "pamctl login") || strings.Contains(err.Error(), "setting") {
				t.Fatalf("a FIFO session: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reading a FIFO session blocked")
		}
	})
	t.Run("huge", func(t *testing.T) {
		writeSessionFile(t, `{"token":"`+strings.Repeat("a", maxSessionFile)+`"}`, 0o600)
		if _, err := loadSession(); err == nil || !strings.Contains(err.Error(), "too large") {
			t.Fatalf("a huge session: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		t.Setenv("XDG_CONFIG_HOME", t.TempDir())
		if s, err := loadSession(); s != nil || err != nil {
			t.Fatalf("no session: %+v, %v", s, err)
		}
	})
}

// A session file others may read is refused everywhere but logout, which
// is what its error tells to run: logout reads it anyway, ends the
// session on the broker (so a copy someone read dies with it) and forgets
// it.
func TestEndToEndLogoutEndsASessionOthersCouldRead(t *testing.T) {
	s := startServer(t)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	s.copySession(t, "alice", "thief")
	p := filepath.Join(s.dir, "config-alice", "pamctl", "session.json")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.as(t, "alice", "", "whoami")
	if r.code == 0 || !strings.Contains(r.err, "chmod 600") || !strings.Contains(r.err, "pamctl logout") {
		t.Fatalf("whoami with a 0644 session: %+v", r)
	}
	out := s.as(t, "alice", "", "logout").must(t, "logout of a 0644 session")
	if !strings.Contains(out.out+out.err, "the broker ended session") {
		t.Fatalf("logout: %+v", out)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("the session file is still there: %v", err)
	}
	mustLogInAgain(t, s.as(t, "thief", "", "whoami"), "a copy of the exposed session after logout")
}

// Logout ends the session at the broker it was made with, even when the
// configured server has changed since (black-box red team: it sent
// nothing, said "the broker no longer accepted this session", deleted
// the only local record, and a copy kept working). Under `pamctl exec`
// it neither ends nor forgets the session; an expired one is forgotten
// without asking anyone.
func TestEndToEndLogoutEndsTheSessionWhereItWasMade(t *testing.T) {
	s := startServer(t)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	s.copySession(t, "alice", "thief")
	p := filepath.Join(s.dir, "config-alice", "pamctl", "session.json")

	t.Setenv(EnvNoSession, "1")
	if r := s.as(t, "alice", "", "logout"); r.code == 0 {
		t.Fatalf("logout under pamctl exec: %+v", r)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("logout under pamctl exec removed the session: %v", err)
	}
	os.Unsetenv(EnvNoSession)

	broker := s.app.BrokerURL()
	t.Setenv("PAMCTL_SERVER", "http://127.0.0.1:1") // another server configured since
	r := s.as(t, "alice", "", "logout").must(t, "logout with another server configured")
	if !strings.Contains(r.out+r.err, "the broker at "+broker+" ended session") {
		t.Fatalf("logout: %+v", r)
	}
	t.Setenv("PAMCTL_SERVER", broker)
	mustLogInAgain(t, s.as(t, "thief", "", "whoami"), "a copy after logout with another server configured")

	// A dead broker: exit 3, saying until when the session stays valid.
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "ml").must(t, "bob login")
	raw, err := os.ReadFile(filepath.Join(s.dir, "config-bob", "pamctl", "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(raw), broker, "http://127.0.0.1:1", 1)
	if err := os.WriteFile(filepath.Join(s.dir, "config-bob", "pamctl", "session.json"), []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := s.as(t, "bob", "", "logout"); r.code != ExitUnreachable || !strings.Contains(r.err, "stays valid until") || !strings.Contains(r.err, "http://127.0.0.1:1") {
		t.Fatalf("logout with the session's broker down: %+v", r)
	}
}
