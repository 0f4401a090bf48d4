package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// startTLSServer runs the dev server with both listeners on TLS, with
// certificates of a throwaway CA (as serve --dev --tls does).
func startTLSServer(t *testing.T) (*testServer, tlsconf.DevFiles) {
	t.Helper()
	t.Setenv("PAMCTL_CA_FILE", "")
	files, err := tlsconf.GenerateDev(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, func(c *Config) {
		if err := applyDevTLSFiles(c, files); err != nil {
			t.Fatal(err)
		}
		c.Policies = policy.Set{policy.DevPolicy()}
	})
	return s, files
}

func applyDevTLSFiles(c *Config, f tlsconf.DevFiles) error {
	t := tlsconf.Config{CertFile: f.CertFile, KeyFile: f.KeyFile}
	c.Broker.TLS, c.Proxy.TLS, c.CAFile = t, t, f.CAFile
	return nil
}

func trusting(t *testing.T, caFile string) *http.Client {
	t.Helper()
	hc, err := tlsconf.HTTPClient(caFile, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// TestEndToEndTLS: the CLI logs in through the dev issuer (served by the
// broker, so over HTTPS too), requests, and runs exec against a TLS broker
// and proxy with --ca-file / PAMCTL_CA_FILE; without the CA it refuses
// with a message naming --ca-file; the host checks still hold over TLS.
func TestEndToEndTLS(t *testing.T) {
	s, files := startTLSServer(t)
	broker, proxyURL := s.app.BrokerURL(), s.app.ProxyURL()
	if !strings.HasPrefix(broker, "https://") || !strings.HasPrefix(proxyURL, "https://") {
		t.Fatalf("URLs %s %s, want https", broker, proxyURL)
	}

	// Without the CA: refused, and told what to do.
	r := s.as(t, "alice", "", "login", "--user", "alice")
	if r.code != ExitUnreachable || !strings.Contains(r.err, "--ca-file") {
		t.Fatalf("login without the CA: %+v", r)
	}
	// Plain HTTP to the HTTPS broker: told to use https.
	r = s.as(t, "alice", "", "login", "--user", "alice", "--server", strings.Replace(broker, "https://", "http://", 1))
	if r.code == 0 || !strings.Contains(r.err, "serves HTTPS") {
		t.Fatalf("login over http: %+v", r)
	}
	// A CA file that is not one: a usage error naming the setting.
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a cert"), 0o600)
	if r := s.as(t, "alice", "", "whoami", "--ca-file", junk); r.code != ExitUsage || !strings.Contains(r.err, "ca_file") {
		t.Fatalf("junk --ca-file: %+v", r)
	}

	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml", "--ca-file", files.CAFile).must(t, "login --ca-file")
	t.Setenv("PAMCTL_CA_FILE", files.CAFile)
	s.as(t, "bob", "", "login", "--device", "--user", "bob").must(t, "login --device with PAMCTL_CA_FILE")
	s.as(t, "alice", "", "whoami").must(t, "whoami")

	// exec hands the child the https proxy URL and the CA in the variables SDKs read.
	copied := filepath.Join(t.TempDir(), "bundle-seen-by-child.pem")
	env := s.as(t, "alice", "", "exec", "--scope", "model:gpt-4o-mini", "--", "sh", "-c",
		`env; echo "mode=$(stat -c %a "$SSL_CERT_FILE")"; cp "$SSL_CERT_FILE" `+copied).must(t, "exec")
	vars := map[string]string{}
	for _, l := range strings.Split(env.out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	if vars["OPENAI_BASE_URL"] != proxyURL+"/v1" {
		t.Errorf("OPENAI_BASE_URL=%q, want %s/v1", vars["OPENAI_BASE_URL"], proxyURL)
	}
	if vars["NODE_EXTRA_CA_CERTS"] != files.CAFile {
		t.Errorf("NODE_EXTRA_CA_CERTS=%q, want %s", vars["NODE_EXTRA_CA_CERTS"], files.CAFile)
	}
	bundle := vars["SSL_CERT_FILE"]
	if bundle == "" || vars["REQUESTS_CA_BUNDLE"] != bundle || vars["CURL_CA_BUNDLE"] != bundle || bundle == files.CAFile {
		t.Errorf("bundle variables: SSL_CERT_FILE=%q REQUESTS_CA_BUNDLE=%q CURL_CA_BUNDLE=%q", bundle, vars["REQUESTS_CA_BUNDLE"], vars["CURL_CA_BUNDLE"])
	}
	if vars["mode"] != "600" {
		t.Errorf("bundle mode %q, want 600", vars["mode"])
	}
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Errorf("bundle %s left behind: %v", bundle, err)
	}
	// The bundle the child saw holds the dev CA (after the system roots, when the machine has them).
	ca, _ := os.ReadFile(files.CAFile)
	if seen, err := os.ReadFile(copied); err != nil || !bytes.HasSuffix(seen, ca) {
		t.Errorf("the child's bundle does not end with the dev CA: %v", err)
	}

	// The token works through the TLS proxy; the host checks still refuse rebinding.
	tok := strings.TrimSpace(vars["OPENAI_API_KEY"])
	hc := trusting(t, files.CAFile)
	call := func(host string) int {
		req, _ := http.NewRequest("POST", proxyURL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		if host != "" {
			req.Host = host
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call(""); code != http.StatusOK {
		t.Fatalf("call through the TLS proxy: %d", code)
	}
	if code := call("evil.example.com"); code != http.StatusMisdirectedRequest {
		t.Fatalf("rebound Host through the TLS proxy: %d, want 421", code)
	}
	req, _ := http.NewRequest("GET", broker+"/v1/info", nil)
	req.Host = "evil.example.com"
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("rebound Host on the TLS broker: %d, want 421", resp.StatusCode)
	}
	// The broker serves TLS 1.2 at least.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}}}
	if _, err := old.Get(broker + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

// TestServeCertificateReload: the running server picks up new certificate
// files without a restart; bad files keep the old certificate and show as
// degraded on /readyz until fixed.
func TestServeCertificateReload(t *testing.T) {
	s, files := startTLSServer(t)
	hc := trusting(t, files.CAFile)
	readyz := func() string {
		resp, err := hc.Get(s.app.BrokerURL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz %d: %s", resp.StatusCode, b)
		}
		return string(b)
	}
	serial := func() string {
		resp, err := trusting(t, files.CAFile).Get(s.app.ProxyURL() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	// A wait that ends as soon as ok holds, so its bound can be generous
	// (a loaded machine under -race). It stays well inside hc's 90s idle
	// timeout: hc's one connection must still be open at the end.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if ok() {
				return
			}
		}
		t.Fatalf("not within 30s: %s", what)
	}
	// errorsOf is how many reload failures /readyz counts for check.
	errorsOf := func(r, check string) int {
		for _, l := range strings.Split(r, "\n") {
			if !strings.HasPrefix(l, check+": degraded") {
				continue
			}
			var n int
			if i := strings.Index(l, " ("); i < 0 {
				t.Fatalf("no error count: %s", l)
			} else if _, err := fmt.Sscanf(l[i:], " (%d errors)", &n); err != nil {
				t.Fatalf("error count of %q: %v", l, err)
			}
			return n
		}
		return 0
	}
	before := serial()
	// The next certificate (of another CA, so which one is served is plain).
	fresh, err := tlsconf.GenerateDev(filepath.Join(t.TempDir(), "next"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(fresh.KeyFile)
	cert, _ := os.ReadFile(fresh.CertFile)
	// Garbage first: keep serving, report degraded.
	os.WriteFile(files.CertFile, []byte("garbage"), 0o600)
	eventually("both listeners' TLS degraded on /readyz", func() bool {
		r := readyz()
		return strings.Contains(r, "broker_tls: degraded") && strings.Contains(r, "proxy_tls: degraded")
	})
	if serial() != before {
		t.Fatal("garbage replaced the certificate in force")
	}
	r := readyz()
	brokerErrs, proxyErrs := errorsOf(r, "broker_tls"), errorsOf(r, "proxy_tls")
	// A key that is not the certificate's: still the old one, once both
	// watches read the pair and refused it (a new failure each).
	os.WriteFile(files.CertFile, cert, 0o600)
	eventually("the mismatched pair refused by both listeners", func() bool {
		r := readyz()
		return errorsOf(r, "broker_tls") > brokerErrs && errorsOf(r, "proxy_tls") > proxyErrs
	})
	if serial() != before {
		t.Fatal("a mismatched pair replaced the certificate in force")
	}
	// The matching key arrives: the new certificate is served, health recovers.
	os.WriteFile(files.KeyFile, key, 0o600)
	trustNew := trusting(t, fresh.CAFile)
	eventually("new certificate served", func() bool {
		resp, err := trustNew.Get(s.app.ProxyURL() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String() != before
	})
	// hc's keep-alive connection, opened under the old certificate, still
	// works: a new connection would fail (hc trusts only the old CA).
	if !strings.Contains(readyz(), "ok") {
		t.Fatal("the open connection was dropped by the reload")
	}
	eventually("tls recovered", func() bool {
		resp, err := trustNew.Get(s.app.BrokerURL() + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return !strings.Contains(string(b), "_tls:")
	})
}

// TestPlaintextRefusedOffLoopback: a broker or proxy address other
// machines can reach needs TLS or insecure_plaintext; the refusal names
// the fix and comes before anything is bound.
func TestPlaintextRefusedOffLoopback(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	for _, c := range []struct {
		name   string
		adjust func(*Config)
		want   string
	}{
		{"broker on every address", func(c *Config) { c.Broker.Addr = "0.0.0.0:0" }, "broker.tls.cert_file"},
		{"proxy on every address", func(c *Config) { c.Proxy.Addr = ":0" }, "proxy.tls.cert_file"},
		{"proxy on a LAN address", func(c *Config) { c.Proxy.Addr = "192.0.2.10:8701" }, "proxy.insecure_plaintext: true"},
		{"proxy role on every address", func(c *Config) {
			c.Role, c.Server, c.Proxy.Addr = RoleProxy, "https://broker.example.test", "0.0.0.0:0"
			c.Proxy.Identity.IDTokenFile = filepath.Join(dir, "token")
		}, "proxy.tls.cert_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := LoadConfig("", nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.DataDir, cfg.MasterKeyFile = filepath.Join(t.TempDir(), "data"), ""
			c.adjust(cfg)
			var logs bytes.Buffer
			app, err := NewApp(context.Background(), cfg, AppOptions{Dev: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err == nil {
				app.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), c.want) || exitCodeOf(err) != ExitUsage {
				t.Fatalf("error %q (exit %d) does not name %q", err, exitCodeOf(err), c.want)
			}
		})
	}
}

// TestServeDevTLSFlag: --tls only goes with --dev; the dev certificates are
// written to the data dir and the banner's commands carry the CA.
func TestServeDevTLSFlag(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	ios, _, _, errOut := iostreams.Test()
	f := NewFactory(ios)
	root := NewCmdRoot(f)
	root.SetArgs([]string{"serve", "--tls"})
	if err := root.Execute(); err == nil || exitCodeOf(err) != ExitUsage || !strings.Contains(err.Error(), "broker.tls") {
		t.Fatalf("serve --tls without --dev: %v", err)
	}
	data := filepath.Join(dir, "data")
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = data
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.MasterKeyFile = ""
	if err := applyDevTLS(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.CAFile != filepath.Join(data, "tls", "ca.pem") || !cfg.Broker.TLS.Enabled() || !cfg.Proxy.TLS.Enabled() {
		t.Fatalf("dev TLS config: %+v %+v %s", cfg.Broker.TLS, cfg.Proxy.TLS, cfg.CAFile)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app, err := NewApp(ctx, cfg, AppOptions{Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	printDevBanner(f, app)
	out := errOut.String()
	for _, want := range []string{"ca       " + cfg.CAFile, "pamctl login --user alice --groups ml --server " + app.BrokerURL() + " --ca-file " + cfg.CAFile, "https://"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
}

func TestChildCAEnv(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.GenerateDev(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(dir, "roots.pem")
	os.WriteFile(roots, []byte("-----BEGIN CERTIFICATE-----\nROOTS\n-----END CERTIFICATE-----\n"), 0o644)
	env, cleanup, err := childCAEnv(files.CAFile, roots)
	if err != nil {
		t.Fatal(err)
	}
	var bundle string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "SSL_CERT_FILE="); ok {
			bundle = v
		}
	}
	b, err := os.ReadFile(bundle)
	ca, _ := os.ReadFile(files.CAFile)
	if err != nil || !bytes.Contains(b, []byte("ROOTS")) || !bytes.Contains(b, ca) {
		t.Fatalf("bundle %s: %v\n%s", bundle, err, b)
	}
	if fi, _ := os.Stat(bundle); fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle mode %v", fi.Mode())
	}
	cleanup()
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Fatal("bundle not removed")
	}
	os.WriteFile(files.CAFile, []byte("junk"), 0o600)
	if _, _, err := childCAEnv(files.CAFile, roots); err == nil {
		t.Fatal("junk CA accepted")
	}
}

// TestConfigCheckTLS: config check refuses what serve would: plaintext off
// loopback, unusable certificate files.
func TestConfigCheckTLS(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_DATA_DIR", filepath.Join(dir, "data"))
	files, err := tlsconf.GenerateDev(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.crt")
	os.WriteFile(garbage, []byte("garbage"), 0o600)
	run := func(yaml string) result {
		file := filepath.Join(dir, "config.yaml")
		os.WriteFile(file, []byte(yaml), 0o600)
		ios, _, out, errOut := iostreams.Test()
		root := NewCmdRoot(NewFactory(ios))
		root.SetArgs([]string{"config", "check", "--config", file})
		err := root.Execute()
		r := result{out: out.String(), err: errOut.String()}
		if err != nil {
			r.code, r.err = exitCodeOf(err), r.err+err.Error()
		}
		return r
	}
	good := "broker:\n  addr: 0.0.0.0:8700\n  tls:\n    cert_file: " + files.CertFile + "\n    key_file: " + files.KeyFile + "\nproxy:\n  addr: 0.0.0.0:8701\n  insecure_plaintext: true\nca_file: " + files.CAFile + "\n"
	if r := run(good); r.code != 0 {
		t.Fatalf("good config: %+v", r)
	}
	for _, c := range []struct{ yaml, want string }{
		{"broker:\n  addr: 0.0.0.0:8700\n", "broker.tls.cert_file"},
		{"broker:\n  tls:\n    cert_file: " + garbage + "\n    key_file: " + files.KeyFile + "\n", "broker.tls"},
		{"proxy:\n  tls:\n    cert_file: " + files.CertFile + "\n", "key_file"},
		{"proxy:\n  tls:\n    cert_file: " + files.CertFile + "\n    key_file: " + files.KeyFile + "\n    client_ca_file: " + garbage + "\n", "client_ca_file"},
		{"ca_file: " + garbage + "\n", "ca_file"},
		{"broker:\n  tls:\n    certfile: x\n", `did you mean "cert_file"`},
	} {
		if r := run(c.yaml); r.code != ExitUsage || !strings.Contains(r.err, c.want) {
			t.Errorf("%s: %+v, want exit 2 naming %q", c.yaml, r, c.want)
		}
	}
}

// TestServeDevTLSProcess runs `pamctl serve --dev --tls` as a process and
// the commands its banner prints, as printed: they must work with the
// https URLs and the --ca-file the banner gives.
func TestServeDevTLSProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home+"/config")
	t.Setenv("XDG_DATA_HOME", home+"/data")
	t.Setenv("PAMCTL_MASTER_KEY", "")
	t.Setenv("PAMCTL_SERVER", "")
	t.Setenv("PAMCTL_CA_FILE", "")
	t.Setenv("PAMCTL_DATA_DIR", "")
	srv, out := pamctlProcess(t, "serve", "--dev", "--tls", "--broker-addr", freePort(t), "--proxy-addr", freePort(t))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	if !out.waitFor("pamctl audit tail") {
		t.Fatalf("no dev banner:\n%s", out.String())
	}
	var login, request, execLine, dataDir string
	for _, l := range strings.Split(out.String(), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "pamctl login "):
			login = l
		case strings.HasPrefix(l, "pamctl request "):
			request = l
		case strings.HasPrefix(l, "pamctl exec "):
			execLine = l
		case strings.HasPrefix(l, "data "):
			dataDir = strings.TrimSpace(strings.TrimPrefix(l, "data "))
		}
	}
	if !strings.Contains(login, "--server https://") || !strings.Contains(login, "--ca-file "+dataDir+"/tls/ca.pem") {
		t.Fatalf("banner login line %q lacks the https server or the CA:\n%s", login, out.String())
	}
	run := func(args ...string) result {
		t.Helper()
		ios, _, o, e := iostreams.Test()
		root := NewCmdRoot(NewFactory(ios))
		root.SetArgs(args)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := root.ExecuteContext(ctx)
		r := result{out: o.String(), err: e.String()}
		if err != nil {
			r.code, r.err = exitCodeOf(err), r.err+err.Error()
		}
		return r
	}
	run(strings.Fields(login)[1:]...).must(t, login)
	// request's --reason 'first try' is quoted for the shell.
	req := strings.Fields(strings.Replace(request, "'first try'", "first-try", 1))
	run(req[1:]...).must(t, request)
	if _, err := exec.LookPath("curl"); err == nil {
		head, script, ok := strings.Cut(execLine, " -- sh -c '")
		if !ok || !strings.HasSuffix(script, "'") {
			t.Fatalf("exec line %q", execLine)
		}
		args := append(strings.Fields(head)[1:], "--", "sh", "-c", strings.TrimSuffix(script, "'"))
		r := run(args...).must(t, execLine)
		if !strings.Contains(r.out, "pamctl mock upstream") {
			t.Fatalf("the banner's exec through the TLS proxy: %+v", r)
		}
	}
	srv.Process.Signal(syscall.SIGINT)
	if err := srv.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("temporary data dir (with the dev CA) left behind: %v", err)
	}
}

// TestInsecurePlaintextWarns: insecure_plaintext lets a listener off
// loopback serve plain HTTP (a TLS-terminating load balancer in front),
// and the server says so in its log. Checked without binding.
func TestInsecurePlaintextWarns(t *testing.T) {
	var logs bytes.Buffer
	a := &App{log: slog.New(slog.NewTextHandler(&logs, nil)), health: newHealth(slog.New(slog.DiscardHandler))}
	s, err := a.tlsFor("proxy", "0.0.0.0:8701", tlsconf.Config{}, true)
	if err != nil || s != nil {
		t.Fatalf("tlsFor: %v %v", s, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "proxy.insecure_plaintext: true") {
		t.Fatalf("no warning logged: %s", logs.String())
	}
	logs.Reset()
	if _, err := a.tlsFor("proxy", "127.0.0.1:8701", tlsconf.Config{}, true); err != nil || logs.Len() != 0 {
		t.Fatalf("loopback with insecure_plaintext: %v, logged %q", err, logs.String())
	}
}
