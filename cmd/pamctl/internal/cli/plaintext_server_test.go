package cli

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// runCLIDialer runs the root command with a broker client whose every
// dial is counted (and fails), so a test can assert nothing was sent.
func runCLIDialer(t *testing.T, dials *atomic.Int32, args ...string) result {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := NewFactory(ios)
	f.HTTP = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("test: no dial expected")
		},
	}}
	root := NewCmdRoot(f)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	r := result{out: out.String(), err: errOut.String()}
	if err != nil {
		r.code = exitCodeOf(err)
		r.err += "error: " + err.Error() + "\n"
	}
	return r
}

// Every command that contacts the broker refuses http:// to a non-loopback
// host before dialing, whether server comes from --server, PAMCTL_SERVER or
// the file, and even with a stored session for that server.
func TestPlaintextServerRefusedBeforeAnyDial(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	idTok := filepath.Join(dir, "pa.jwt")
	if err := os.WriteFile(idTok, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const remote = "http://192.0.2.1:18730" // TEST-NET-1: never dialed
	if err := saveSession(&SessionFile{Server: remote, Token: "pamctl_s_test", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cfgFile := writeConfig(t, "server: "+remote+"\n")
	for _, tc := range []struct {
		name string
		env  string
		args []string
	}{
		{"login --server", "", []string{"login", "--id-token-file", idTok, "--server", remote}},
		{"login IPv6 --server", "", []string{"login", "--id-token-file", idTok, "--server", "http://[2001:db8::1]:18730"}},
		{"login name --server", "", []string{"login", "--id-token-file", idTok, "--server", "http://broker.internal:8730"}},
		{"login localhost lookalike", "", []string{"login", "--id-token-file", idTok, "--server", "http://localhost.evil.example:8730"}},
		{"login PAMCTL_SERVER", remote, []string{"login", "--id-token-file", idTok}},
		{"login file", "", []string{"--config", cfgFile, "login", "--id-token-file", idTok}},
		{"whoami", "", []string{"whoami", "--server", remote}},
		{"requests", remote, []string{"requests"}},
		{"request", remote, []string{"request", "--scope", "openai"}},
		{"token", remote, []string{"token", "req_1"}},
		{"exec", remote, []string{"exec", "--scope", "openai", "--", "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PAMCTL_SERVER", tc.env)
			if tc.env == "" {
				os.Unsetenv("PAMCTL_SERVER")
			}
			var dials atomic.Int32
			r := runCLIDialer(t, &dials, tc.args...)
			if r.code != ExitUsage || !strings.Contains(r.err, "use https://") ||
				!strings.Contains(r.err, "pamctl sends ID tokens and sessions to the broker") {
				t.Fatalf("want exit %d and the https fix, got %d: %s", ExitUsage, r.code, r.err)
			}
			if strings.Contains(r.err, "pamctl_s_test") || strings.Contains(r.err, "eyJ") {
				t.Fatalf("a credential was printed: %s", r.err)
			}
			if n := dials.Load(); n != 0 {
				t.Fatalf("%d dials before the refusal", n)
			}
		})
	}
}

// http:// to loopback stays accepted: the refusal is not a blanket one.
func TestPlaintextLoopbackServerAccepted(t *testing.T) {
	for _, s := range []string{"http://127.0.0.1:8730", "http://127.8.9.10:1", "http://localhost:8730", "http://LOCALHOST.:8730", "http://[::1]:8730", "https://broker.example.com"} {
		if err := checkServer(s); err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
}

// The proxy role logs in and ships prompts and audit events to server: a
// plain http:// broker off loopback is refused by config validation.
func TestProxyRolePlaintextServerRefused(t *testing.T) {
	dir := t.TempDir()
	base := "role: proxy\nproxy:\n  identity:\n    id_token_file: " + filepath.Join(dir, "tok") + "\n"
	for _, s := range []string{"http://10.255.255.1:18730", "http://broker:8730", "http://[2001:db8::1]:8730"} {
		cfg, err := LoadConfig(writeConfig(t, base+"server: "+s+"\n"), nil)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "server (role: proxy)") || !strings.Contains(err.Error(), "use https://") {
			t.Errorf("%s: got %v", s, err)
		}
	}
	for _, s := range []string{"http://127.0.0.1:8730", "https://broker.example.com:8730"} {
		cfg, err := LoadConfig(writeConfig(t, base+"server: "+s+"\n"), nil)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
}

// The proxy role's link follows no redirect from its https broker to
// http:// (or another host): its ID token and session stay with the broker.
func TestProxyRoleFollowsNoRedirectOffOrigin(t *testing.T) {
	var leaked, asked atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { leaked.Add(1) }))
	defer plain.Close()
	broker := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer broker.Close()
	dir := t.TempDir()
	tok := filepath.Join(dir, "id.jwt")
	if err := os.WriteFile(tok, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Role, cfg.Server, cfg.Proxy.Addr, cfg.DataDir = RoleProxy, broker.URL, "127.0.0.1:0", filepath.Join(dir, "data")
	cfg.MasterKeyFile = filepath.Join(dir, "no-master.key")
	cfg.Proxy.Identity.IDTokenFile = tok
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app, err := NewApp(ctx, cfg, AppOptions{BrokerHTTP: broker.Client()})
	if err != nil {
		t.Fatal(err)
	}
	app.link.SetRetry(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, nil) }()
	waitUntil(t, "the link to try the broker", 15*time.Second, func() bool { return asked.Load() >= 3 })
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not stop")
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("%d requests followed the redirect to %s", n, plain.URL)
	}
}
