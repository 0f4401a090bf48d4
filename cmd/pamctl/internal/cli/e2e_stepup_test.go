package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// pendingRequest has user ask for scope and returns the pending request's id.
func (s *testServer) pendingRequest(t *testing.T, user, scope string) string {
	t.Helper()
	r := s.as(t, user, "", "request", "--scope", scope, "--nowait", "-o", "json").must(t, "request")
	var req map[string]any
	if err := json.Unmarshal([]byte(r.out), &req); err != nil {
		t.Fatalf("request json: %v\n%s", err, r.out)
	}
	id, _ := req["id"].(string)
	return id
}

func TestEndToEndStepUpReLogin(t *testing.T) {
	clk := &testClock{}
	s := startServerOpts(t, nil, AppOptions{Dev: true, Now: clk.Now})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	id := s.pendingRequest(t, "alice", "model:gpt-4o")
	id2 := s.pendingRequest(t, "alice", "model:gpt-4o-mini")

	// A fresh login approves at once.
	s.as(t, "bob", "", "approve", id2).must(t, "approve with a fresh login")
	who := s.as(t, "bob", "", "whoami", "-o", "json").must(t, "whoami")
	if !strings.Contains(who.out, `"auth_time"`) {
		t.Fatalf("whoami does not show the auth time:\n%s", who.out)
	}

	clk.Add(40 * time.Minute) // under the idle timeout (1h)
	// Without input, the CLI says why and what to do, and exits 4.
	r := s.as(t, "bob", "", "approve", id, "--no-input")
	if r.code != ExitUnauthenticated || !strings.Contains(r.err, "approving needs a login within the last 10m; your last was 40m ago") ||
		!strings.Contains(r.err, "pamctl login") || !strings.Contains(r.err, "--no-input") {
		t.Fatalf("stale approve with --no-input: exit %d\n%s", r.code, r.err)
	}
	if r := s.as(t, "bob", "", "audit", "tail", "-n", "5", "--no-input"); r.code != ExitUnauthenticated || !strings.Contains(r.err, "reading the audit trail needs a login within the last 10m") {
		t.Fatalf("stale audit tail with --no-input: exit %d\n%s", r.code, r.err)
	}
	// Otherwise it logs in again (here: the dev issuer, as the session
	// was made) and retries once; the old session ends, copies included.
	s.copySession(t, "bob", "thief")
	r = s.as(t, "bob", "", "approve", id, "--reason", "ok").must(t, "approve after re-login")
	mustLogInAgain(t, s.as(t, "thief", "", "whoami"), "a copy of the session the step-up replaced")
	if !strings.Contains(r.err, "approving needs a login within the last 10m; your last was 40m ago; logging in again (development issuer)") || !strings.Contains(r.err, "Approved "+id) {
		t.Fatalf("re-login approve said:\n%s", r.err)
	}
	// The new session is fresh: the audit trail reads without another login.
	r = s.as(t, "bob", "", "audit", "tail", "-n", "50", "--type", "login").must(t, "audit tail")
	if strings.Contains(r.err, "logging in again") || strings.Count(r.out, `"type":"login"`) < 3 {
		t.Fatalf("audit tail after re-login:\nstdout %s\nstderr %s", r.out, r.err)
	}
	// Revoking someone else's grant steps up as well; revoking one's own does not.
	mine := s.pendingRequest(t, "alice", "model:gpt-4o")
	s.as(t, "bob", "", "approve", mine).must(t, "approve")
	clk.Add(11 * time.Minute)
	if r := s.as(t, "bob", "", "revoke", mine, "--no-input"); r.code != ExitUnauthenticated || !strings.Contains(r.err, "revoking another person's grant needs a login within the last 10m") {
		t.Fatalf("stale revoke of alice's grant: %+v", r)
	}
	s.as(t, "alice", "", "revoke", mine, "--no-input").must(t, "revoke my own grant with an old login")
}

// A child of pamctl exec cannot approve or read the trail as its person:
// pamctl in it refuses the session, and a copied session stops working for
// approvals once the person's login is older than approvals.reauth_after.
func TestEndToEndExecChildCannotActAsItsPerson(t *testing.T) {
	clk := &testClock{}
	s := startServerOpts(t, nil, AppOptions{Dev: true, Now: clk.Now})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	id := s.pendingRequest(t, "alice", "model:gpt-4o")
	s.as(t, "bob", "", "request", "--scope", "audit:read").must(t, "bob's grant for the agent")

	// The child is this test binary acting as pamctl. The server URL is
	// no secret, so the child is given it; the session file stays where
	// it is, readable.
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := func(args string, env ...string) result {
		script := strings.Join(append(env, "PAMCTL_TEST_MAIN=1", "PAMCTL_SERVER="+s.app.BrokerURL(), "PAMCTL_TEST_ARGS='"+args+"'", bin), " ")
		return s.as(t, "bob", "", "exec", "--", "sh", "-c", "env | grep -c '^PAMCTL_NO_SESSION=1$'; "+script)
	}
	r := child("approve " + id)
	if r.code != ExitUnauthenticated || !strings.HasPrefix(r.out, "1\n") || !strings.Contains(r.err, "runs under `pamctl exec`") {
		t.Fatalf("approve from the child: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := child("audit tail -n 5"); r.code != ExitUnauthenticated || !strings.Contains(r.err, "cannot read the audit trail") {
		t.Fatalf("audit tail from the child: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := child("login --user mallory --groups security"); r.code != ExitUnauthenticated {
		t.Fatalf("login from the child (it would replace the person's session file): exit %d\n%s%s", r.code, r.out, r.err)
	}
	raw, _ := os.ReadFile(filepath.Join(s.dir, "config-bob", "pamctl", "session.json"))
	if strings.Contains(string(raw), "mallory") {
		t.Fatal("the child replaced the person's session")
	}
	// The variable is a guard rail: a same-user process can unset it and
	// use the session file. What stops it is step-up: exec marked the
	// session as running an agent, so it cannot show a recent login even
	// right after the person's (--no-input: a real IdP would need the
	// person; the dev issuer consents to anyone).
	if r := child("approve "+id+" --no-input", "PAMCTL_NO_SESSION="); r.code != ExitUnauthenticated || !strings.Contains(r.err, "approving needs a login within the last 10m; this session cannot show a recent login (it started an agent with `pamctl exec`") {
		t.Fatalf("approve with the session file right after login: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := child("audit tail -n 5 --no-input", "PAMCTL_NO_SESSION="); r.code != ExitUnauthenticated || !strings.Contains(r.err, "reading the audit trail needs a login") {
		t.Fatalf("audit tail with the session file: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// Other uses of the session go on; the person approves after a new
	// login (which also ends the marked session).
	s.as(t, "bob", "", "requests").must(t, "the session still lists requests")
	if r := s.as(t, "bob", "", "approve", id, "--no-input"); r.code != ExitUnauthenticated {
		t.Fatalf("the marked session approved: %+v", r)
	}
	r = s.as(t, "bob", "", "approve", id).must(t, "approve after logging in again")
	if !strings.Contains(r.err, "logging in again") {
		t.Fatalf("approve said:\n%s", r.err)
	}
	s.as(t, "bob", "", "audit", "tail", "-n", "1", "--no-input").must(t, "the new session reads the trail")
}

// recordingTransport records the URLs the CLI requests.
type recordingTransport struct {
	mu   sync.Mutex
	urls []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.urls = append(rt.urls, r.URL.String())
	rt.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (rt *recordingTransport) authorize(t *testing.T) url.Values {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, u := range rt.urls {
		if strings.Contains(u, "/authorize?") {
			p, _ := url.Parse(u)
			return p.Query()
		}
	}
	t.Fatalf("no authorization request among %v", rt.urls)
	return nil
}

// asRecording is testServer.as with the CLI's HTTP requests recorded.
func (s *testServer) asRecording(t *testing.T, user string, args ...string) (result, *recordingTransport) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(s.dir, "config-"+user))
	ios, _, out, errOut := iostreams.Test()
	f := NewFactory(ios)
	rt := &recordingTransport{}
	f.HTTP.Transport = rt
	return execRoot(context.Background(), f, out, errOut, args...), rt
}

func TestFreshAuthParams(t *testing.T) {
	for _, c := range []struct {
		reauth, stepUp int64
		dev            bool
		want           string
	}{
		{600, 0, false, "map[max_age:600]"},
		{0, 0, false, "map[]"},
		{600, 300, false, "map[max_age:300 prompt:login]"},
		{600, 300, true, "map[max_age:300]"},
	} {
		if got := fmt.Sprint(freshAuthParams(c.reauth, c.stepUp, c.dev)); got != c.want {
			t.Errorf("freshAuthParams(%d, %d, %v) = %s, want %s", c.reauth, c.stepUp, c.dev, got, c.want)
		}
	}
}

// pamctl login asks the IdP for an authentication no older than
// reauth_after (max_age); a step-up login also asks it to authenticate the
// person now (prompt=login).
func TestEndToEndLoginAsksForFreshAuthentication(t *testing.T) {
	clk := &testClock{}
	s := startServerOpts(t, func(c *Config) { c.Approvals.ReauthAfter = 5 * time.Minute }, AppOptions{Dev: true, Now: clk.Now})
	r, rt := s.asRecording(t, "bob", "login", "--user", "bob", "--groups", "security")
	r.must(t, "login")
	if q := rt.authorize(t); q.Get("max_age") != "300" || q.Get("prompt") != "" {
		t.Fatalf("plain login's authorization request: %v", q)
	}
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	id := s.pendingRequest(t, "alice", "model:gpt-4o")
	clk.Add(6 * time.Minute)
	r, rt = s.asRecording(t, "bob", "deny", id)
	r.must(t, "deny after a step-up login")
	// The dev issuer authenticates afresh on every request (and answers
	// prompt=login with a form for browsers), so it is sent max_age only;
	// a real IdP gets prompt=login too (TestFreshAuthParams).
	if q := rt.authorize(t); q.Get("max_age") != "300" || q.Get("prompt") != "" {
		t.Fatalf("step-up login's authorization request: %v", q)
	}
	if !strings.Contains(r.err, "denying needs a login within the last 5m; your last was 6m ago; logging in again") {
		t.Fatalf("deny said:\n%s", r.err)
	}
}
