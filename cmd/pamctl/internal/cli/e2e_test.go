package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// testServer runs a whole pamctl server (broker, proxy, admin socket, dev
// issuer and mock upstream) in process on random loopback ports.
type testServer struct {
	app    *App
	reload atomic.Pointer[func() (*Config, error)] // what a config reload reads (default: the start config)
	cancel context.CancelFunc
	done   chan error
	dir    string
}

var e2ePolicies = policy.Set{
	{
		Name: "ml-models", Subjects: policy.Subjects{Groups: []string{"ml"}},
		Scopes: []string{"model:gpt-4o", "model:gpt-4o-mini"}, MaxTTL: time.Hour,
		Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
	},
	{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{"audit:read"}},
}

func startServer(t *testing.T) *testServer { t.Helper(); return startServerWith(t, nil) }

// startServerWith lets a test adjust the config before the server starts.
func startServerWith(t *testing.T, adjust func(*Config)) *testServer {
	t.Helper()
	return startServerOpts(t, adjust, AppOptions{Dev: true})
}

// startServerOpts also sets the App's options (e.g. the broker's clock).
func startServerOpts(t testing.TB, adjust func(*Config), opts AppOptions) *testServer {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	cfg.Policies = e2ePolicies
	if adjust != nil {
		adjust(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := NewApp(ctx, cfg, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &testServer{app: app, cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() {
		s.done <- app.Serve(ctx, func() (*Config, error) {
			if f := s.reload.Load(); f != nil {
				return (*f)()
			}
			return cfg, nil
		})
	}()
	t.Cleanup(s.stop)
	t.Setenv("PAMCTL_SERVER", app.BrokerURL())
	t.Setenv("PAMCTL_DATA_DIR", cfg.DataDir)
	t.Setenv("PAMCTL_MASTER_KEY_FILE", cfg.MasterKeyFile)
	return s
}

func (s *testServer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		panic("server did not stop")
	}
}

type result struct {
	out, err string
	code     int
}

// as runs one CLI command as user (each user has their own config dir and
// so their own session file).
func (s *testServer) as(t testing.TB, user, stdin string, args ...string) result {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(s.dir, "config-"+user))
	ios, in, out, errOut := iostreams.Test()
	in.WriteString(stdin)
	return execRoot(context.Background(), NewFactory(ios), out, errOut, args...)
}

// execRoot runs `pamctl args…` with f under ctx (and a 30s limit), as Main
// does, and returns what it printed (out and errOut are f's streams; the
// error as Main prints it) and its exit code.
func execRoot(ctx context.Context, f *Factory, out, errOut *bytes.Buffer, args ...string) result {
	root := NewCmdRoot(f)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	code := ExitOK
	if err != nil {
		code = exitCodeOf(err)
		if !errors.Is(err, errSilent) {
			errOut.WriteString("error: " + err.Error() + "\n")
		}
	}
	return result{out: out.String(), err: errOut.String(), code: code}
}

func (r result) must(t testing.TB, what string) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.out, r.err)
	}
	return r
}

func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(jwt), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEndToEndGrantFlow(t *testing.T) {
	s := startServer(t)

	// alice logs in through the dev issuer's code flow; bob through the device flow.
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--device", "--user", "bob", "--groups", "security").must(t, "bob login")
	who := s.as(t, "alice", "", "whoami", "-o", "json").must(t, "whoami")
	var me map[string]any
	json.Unmarshal([]byte(who.out), &me)
	if me["subject"] != "alice" || me["issuer"] != DevIssuerName {
		t.Fatalf("whoami: %s", who.out)
	}
	fi, err := os.Stat(filepath.Join(s.dir, "config-alice", "pamctl", "session.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v %v", err, fi)
	}

	// Out of policy: refused at once, listing what alice may ask for.
	r := s.as(t, "alice", "", "request", "--scope", "model:o1")
	if r.code != ExitForbidden || !strings.Contains(r.err, "model:gpt-4o") {
		t.Fatalf("out-of-policy request: %+v", r)
	}

	r = s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--ttl", "2h", "--reason", "eval", "--nowait", "-o", "json")
	if r.code != ExitOK { // --nowait: created is success; the state is in the JSON
		t.Fatalf("request: %+v", r)
	}
	if !strings.Contains(r.err, "ttl clamped to 1h0m0s") {
		t.Fatalf("clamp not said: %s", r.err)
	}
	var req map[string]any
	json.Unmarshal([]byte(r.out), &req)
	id, _ := req["id"].(string)
	if id == "" || req["state"] != "pending" {
		t.Fatalf("request json: %s", r.out)
	}

	// Pending: no token yet; alice cannot approve her own request.
	if r := s.as(t, "alice", "", "token", id); r.code != ExitPending {
		t.Fatalf("token while pending: %+v", r)
	}
	if r := s.as(t, "alice", "", "approve", id); r.code != ExitForbidden || !strings.Contains(r.err, "own request") {
		t.Fatalf("self-approval: %+v", r)
	}
	// bob sees it pending and approves.
	list := s.as(t, "bob", "", "requests", "--pending", "-o", "json").must(t, "bob requests")
	if !strings.Contains(list.out, id) {
		t.Fatalf("bob's pending list lacks %s: %s", id, list.out)
	}
	s.as(t, "bob", "", "approve", id, "--reason", "ok").must(t, "bob approve")

	tok := s.as(t, "alice", "", "token").must(t, "alice token")
	c := claimsOf(t, tok.out)
	if c["sub"] != "alice" || fmt.Sprint(c["aud"]) != "[pamctl-proxy]" || c["scope"] != "model:gpt-4o" || c["req"] != id || c["jti"] == nil || c["iss"] != s.app.BrokerURL() {
		t.Fatalf("token claims: %v", c)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat > 3600 || exp-iat < 3590 {
		t.Fatalf("token lifetime %v, want the clamped 1h", exp-iat)
	}

	// exec puts both variables in the child's environment only.
	env := s.as(t, "alice", "", "exec", "--request", id, "--", "env").must(t, "exec env")
	if !strings.Contains(env.out, "OPENAI_BASE_URL="+s.app.ProxyURL()+"/v1\n") || !strings.Contains(env.out, "OPENAI_API_KEY=ey") || !strings.Contains(env.out, "OPENAI_AGENTS_DISABLE_TRACING=1") {
		t.Fatalf("exec env:\n%s", env.out)
	}
	if r := s.as(t, "alice", "", "exec", "--", "sh", "-c", "exit 3"); r.code != 3 {
		t.Fatalf("exec exit code: %+v", r)
	}

	// The token works against the proxy (mock upstream) and the call is audited.
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`
	hreq, _ := http.NewRequest("POST", s.app.ProxyURL()+"/v1/chat/completions", strings.NewReader(body))
	hreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.out))
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(answer), devMockPrefix) {
		t.Fatalf("proxy call: %d %s", resp.StatusCode, answer)
	}
	tail := s.as(t, "bob", "", "audit", "tail", "-n", "100", "--type", "proxy.call").must(t, "audit tail")
	if !strings.Contains(tail.out, `"type":"proxy.call"`) || !strings.Contains(tail.out, id) {
		t.Fatalf("audit tail:\n%s", tail.out)
	}
	if r := s.as(t, "alice", "", "audit", "tail"); r.code != ExitForbidden {
		t.Fatalf("alice read the audit trail: %+v", r)
	}

	// logout is audited and forgets the session.
	s.as(t, "carol", "", "login", "--user", "carol").must(t, "carol login")
	s.as(t, "carol", "", "logout").must(t, "logout")
	if r := s.as(t, "carol", "", "whoami"); r.code != ExitUnauthenticated {
		t.Fatalf("whoami after logout: %+v", r)
	}
	if lo := s.as(t, "bob", "", "audit", "tail", "--type", "logout", "--actor", "carol"); !strings.Contains(lo.out, `"type":"logout"`) {
		t.Fatalf("logout not audited: %+v", lo)
	}

	// Revoke: the proxy refuses the token on the next call.
	s.as(t, "alice", "", "revoke", id).must(t, "revoke")
	hreq, _ = http.NewRequest("POST", s.app.ProxyURL()+"/v1/chat/completions", strings.NewReader(body))
	hreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.out))
	resp, err = http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", resp.StatusCode)
	}
	if list := s.as(t, "alice", "", "requests").must(t, "requests"); !strings.Contains(list.out, "revoked by alice") {
		t.Fatalf("the list does not say who revoked the grant:\n%s", list.out)
	}
}

const devMockPrefix = "[pamctl mock upstream]"

func TestEndToEndIDTokenFileAndLoginRefusals(t *testing.T) {
	s := startServer(t)
	raw, err := s.app.devIss.Mint(devissuer.Claims{Subject: "repo:org/app:ref:refs/heads/main", Groups: []string{"ml"}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(s.dir, "idtoken")
	os.WriteFile(file, []byte(raw+"\n"), 0o600)
	s.as(t, "ci", "", "login", "--id-token-file", file).must(t, "id-token-file login")
	if r := s.as(t, "ci", "", "whoami", "-o", "json"); !strings.Contains(r.out, "repo:org/app:ref:refs/heads/main") {
		t.Fatalf("workload whoami: %+v", r)
	}
	// The dev issuer vouches for people: its ID token logs in once, so
	// the same token again (a copy from a log, a shell history) opens
	// nothing. A fresh one on stdin works.
	if r := s.as(t, "ci2", raw, "login", "--id-token-file", "-"); r.code != ExitUnauthenticated || !strings.Contains(r.err, "already opened a session") {
		t.Fatalf("the same ID token again: %+v", r)
	}
	fresh, err := s.app.devIss.Mint(devissuer.Claims{Subject: "repo:org/app:ref:refs/heads/main", Groups: []string{"ml"}})
	if err != nil {
		t.Fatal(err)
	}
	s.as(t, "ci2", fresh, "login", "--id-token-file", "-").must(t, "id token on stdin")

	forged, _ := s.app.devIss.Forge().AlgNone(devissuer.Claims{Subject: "mallory"})
	if r := s.as(t, "mallory", forged, "login", "--id-token-file", "-"); r.code != ExitUnauthenticated || strings.Contains(r.err, forged) {
		t.Fatalf("alg none login: %+v", r)
	}
	if r := s.as(t, "nobody", "", "requests"); r.code != ExitUnauthenticated || !strings.Contains(r.err, "pamctl login") {
		t.Fatalf("not logged in: %+v", r)
	}
	if r := s.as(t, "nobody", "", "request"); r.code != ExitUsage {
		t.Fatalf("request without scope: %+v", r)
	}
}

func TestEndToEndVaultThroughSocketAndDirect(t *testing.T) {
	s := startServer(t)
	const secret = "sk-test-0123456789abcdefghij"
	r := s.as(t, "admin", secret, "vault", "set", "openai").must(t, "vault set via socket")
	if strings.Contains(r.out+r.err, secret) {
		t.Fatal("vault set printed the secret")
	}
	ls := s.as(t, "admin", "", "vault", "ls", "-o", "json").must(t, "vault ls")
	if !strings.Contains(ls.out, `"name": "openai"`) || !strings.Contains(ls.out, `"fingerprint": "hmac:`) || strings.Contains(ls.out, "ghij") || strings.Contains(ls.out, secret) {
		t.Fatalf("vault ls: %s", ls.out)
	}
	rot := s.as(t, "admin", "", "keys", "rotate").must(t, "keys rotate")
	resp, err := http.Get(s.app.BrokerURL() + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct{ Keys []map[string]string }
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if len(jwks.Keys) != 2 || !strings.Contains(rot.err, jwks.Keys[0]["kid"]) {
		t.Fatalf("jwks after rotate: %+v (%s)", jwks, rot.err)
	}

	// With the server stopped, the same commands open the data dir directly.
	s.stop()
	ls = s.as(t, "admin", "", "vault", "ls").must(t, "vault ls offline")
	if !strings.Contains(ls.out, "openai") {
		t.Fatalf("offline ls: %s", ls.out)
	}
	s.as(t, "admin", "", "vault", "rm", "openai").must(t, "vault rm offline")
	if r := s.as(t, "admin", "", "vault", "rm", "openai"); r.code != ExitNotFound {
		t.Fatalf("rm missing: %+v", r)
	}
	db, _ := os.ReadFile(filepath.Join(s.dir, "data", "pamctl.db"))
	if bytes.Contains(db, []byte(secret)) {
		t.Fatal("secret in the data dir in clear")
	}
	// A different master key is refused clearly.
	t.Setenv("PAMCTL_MASTER_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	if r := s.as(t, "admin", "", "vault", "ls"); r.code == 0 || !strings.Contains(r.err, "master key does not match") {
		t.Fatalf("wrong master key: %+v", r)
	}
	// The audit trail is intact after all of it, in place and exported.
	t.Setenv("PAMCTL_MASTER_KEY", "")
	s.as(t, "admin", "", "audit", "verify").must(t, "audit verify offline")
	full, part := filepath.Join(s.dir, "trail.jsonl"), filepath.Join(s.dir, "recent.jsonl")
	s.as(t, "admin", "", "audit", "export", "--file", full).must(t, "export")
	s.as(t, "admin", "", "audit", "export", "--since", "1h", "--file", part).must(t, "export --since")
	for _, f := range []string{full, part} {
		v := s.as(t, "admin", "", "audit", "verify", "--file", f, "-o", "json").must(t, "verify "+f)
		if !strings.Contains(v.out, `"ok": true`) || !strings.Contains(v.out, `"signed": true`) {
			t.Fatalf("verify %s: %s", f, v.out)
		}
	}
	raw, _ := os.ReadFile(full)
	edited := strings.Replace(string(raw), `"type":"vault.set"`, `"type":"vault.removed"`, 1)
	os.WriteFile(full, []byte(edited), 0o600)
	if r := s.as(t, "admin", "", "audit", "verify", "--file", full); r.code == 0 || !strings.Contains(r.err, "chain broken at seq") {
		t.Fatalf("edited export verified: %+v", r)
	}
}
