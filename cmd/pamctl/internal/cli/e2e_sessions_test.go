package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// copySession copies user's session.json to other's config dir: a stolen
// or backed-up copy of the file.
func (s *testServer) copySession(t *testing.T, user, other string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.dir, "config-"+user, "pamctl", "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.dir, "config-"+other, "pamctl")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "session.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustLogInAgain(t *testing.T, r result, what string) {
	t.Helper()
	if r.code != ExitUnauthenticated || !strings.Contains(r.err, "log in again") {
		t.Fatalf("%s: exit %d, want %d with \"log in again\"\nstderr: %s", what, r.code, ExitUnauthenticated, r.err)
	}
}

func TestEndToEndLogoutEndsCopiedSessions(t *testing.T) {
	s := startServer(t)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	s.copySession(t, "alice", "thief")
	s.as(t, "thief", "", "whoami").must(t, "the copy works while the session is open")

	list := s.as(t, "alice", "", "sessions", "-o", "json").must(t, "sessions")
	var rs []broker.SessionRecord
	if err := json.Unmarshal([]byte(list.out), &rs); err != nil || len(rs) != 1 {
		t.Fatalf("sessions json: %v\n%s", err, list.out)
	}
	if rs[0].Identity.Subject != "alice" || rs[0].ClientAddr != "127.0.0.1" || !strings.HasPrefix(rs[0].UserAgent, "pamctl/") || rs[0].State != "active" {
		t.Fatalf("session %+v", rs[0])
	}
	who := s.as(t, "alice", "", "whoami").must(t, "whoami")
	if !strings.Contains(who.out, rs[0].ID) {
		t.Fatalf("whoami does not name the session:\n%s", who.out)
	}

	s.as(t, "alice", "", "logout").must(t, "logout")
	mustLogInAgain(t, s.as(t, "thief", "", "whoami"), "copied session after logout")
	mustLogInAgain(t, s.as(t, "thief", "", "requests"), "copied session after logout")
	if r := s.as(t, "alice", "", "whoami"); r.code != ExitUnauthenticated || !strings.Contains(r.err, "not logged in") {
		t.Fatalf("whoami after logout: %+v", r)
	}
	// Logging out the copy is harmless and says so.
	s.as(t, "thief", "", "logout").must(t, "logout of an ended copy")
}

func TestEndToEndAdminRevokesUserAndGrants(t *testing.T) {
	s := startServer(t)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--nowait", "-o", "json")
	var req map[string]any
	json.Unmarshal([]byte(r.out), &req)
	id, _ := req["id"].(string)
	s.as(t, "bob", "", "approve", id).must(t, "approve")
	tok := strings.TrimSpace(s.as(t, "alice", "", "token", id).must(t, "token").out)
	if c := chat(t, s.app.ProxyURL(), tok, "hello"); c.status != http.StatusOK {
		t.Fatalf("call before revoke: %+v", c)
	}

	// bob is no sessions admin (no policy grants him sessions:admin).
	if r := s.as(t, "bob", "", "sessions", "--all"); r.code != ExitForbidden || !strings.Contains(r.err, "sessions:admin") {
		t.Fatalf("bob listed everyone: %+v", r)
	}
	if r := s.as(t, "bob", "", "sessions", "revoke", "--user", "alice", "--grants"); r.code != ExitForbidden {
		t.Fatalf("bob revoked alice: %+v", r)
	}
	if r := s.as(t, "bob", "", "sessions", "revoke"); r.code != ExitUsage {
		t.Fatalf("revoke without target: %+v", r)
	}

	// The owner of the data dir, through the admin socket.
	all := s.as(t, "admin", "", "sessions", "--admin", "-o", "json").must(t, "admin sessions")
	var rs []broker.SessionRecord
	json.Unmarshal([]byte(all.out), &rs)
	if len(rs) != 2 {
		t.Fatalf("admin listing:\n%s", all.out)
	}
	out := s.as(t, "admin", "", "sessions", "revoke", "--user", "alice", "--grants", "--reason", "laptop stolen").must(t, "admin revoke")
	if !strings.Contains(out.err, "Ended 1 session") || !strings.Contains(out.err, id) {
		t.Fatalf("revoke said:\n%s", out.err)
	}
	mustLogInAgain(t, s.as(t, "alice", "", "requests"), "revoked session")
	if c := chat(t, s.app.ProxyURL(), tok, "hello"); c.status != http.StatusUnauthorized {
		t.Fatalf("the revoked grant's token still works at the proxy: %+v", c)
	}
	s.as(t, "bob", "", "whoami").must(t, "bob is unaffected")

	// Both ends are in the trail, by the local admin.
	tail := s.as(t, "bob", "", "audit", "tail", "-n", "50", "--type", "session.revoked").must(t, "audit tail")
	if !strings.Contains(tail.out, `"type":"session.revoked"`) || !strings.Contains(tail.out, `"target":"alice"`) || !strings.Contains(tail.out, "local-admin") || !strings.Contains(tail.out, "laptop stolen") {
		t.Fatalf("session.revoked not audited:\n%s", tail.out)
	}
	tail = s.as(t, "bob", "", "audit", "tail", "-n", "50", "--type", "grant.revoked").must(t, "audit tail")
	if !strings.Contains(tail.out, id) {
		t.Fatalf("grant.revoked not audited:\n%s", tail.out)
	}
}

// testClock is a settable clock for the broker.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func TestEndToEndIdleTimeoutAndWorkloadSessions(t *testing.T) {
	clk := &testClock{}
	s := startServerOpts(t, func(c *Config) { c.Sessions.IdleTimeout = 30 * time.Minute }, AppOptions{Dev: true, Now: clk.Now})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	// A workload logs in with an ID token file: a session like any other.
	raw, err := s.app.devIss.Mint(devissuer.Claims{Subject: "repo:org/app:ref:refs/heads/main", Groups: []string{"ml"}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(s.dir, "idtoken")
	os.WriteFile(file, []byte(raw), 0o600)
	s.as(t, "ci", "", "login", "--id-token-file", file).must(t, "workload login")
	ws := s.as(t, "ci", "", "sessions", "-o", "json").must(t, "workload sessions")
	if !strings.Contains(ws.out, `"subject": "repo:org/app:ref:refs/heads/main"`) {
		t.Fatalf("workload session not listed:\n%s", ws.out)
	}

	clk.Add(20 * time.Minute)
	s.as(t, "alice", "", "whoami").must(t, "within the idle timeout")
	clk.Add(31 * time.Minute)
	mustLogInAgain(t, s.as(t, "alice", "", "whoami"), "idle alice")
	mustLogInAgain(t, s.as(t, "ci", "", "whoami"), "idle workload")
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "log in again")
	s.as(t, "alice", "", "whoami").must(t, "after logging in again")
}
