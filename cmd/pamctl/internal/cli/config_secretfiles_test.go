package cli

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/oidc"
)

// secretVolumeFile lays out a Kubernetes secret volume (root 1777,
// name -> ..data/name, ..data -> ..TIMESTAMP) holding one file of mode m,
// and returns the path a pod's configuration names.
func secretVolumeFile(t *testing.T, m os.FileMode) string {
	t.Helper()
	vol := filepath.Join(t.TempDir(), "secret")
	ts := filepath.Join(vol, "..2026_01_01_00_00_00.1")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(vol, 0o777|os.ModeSticky)
	os.WriteFile(filepath.Join(ts, "f"), []byte("x"), 0o600)
	os.Chmod(filepath.Join(ts, "f"), m)
	os.Symlink(filepath.Base(ts), filepath.Join(vol, "..data"))
	os.Symlink("..data/f", filepath.Join(vol, "f"))
	return filepath.Join(vol, "f")
}

// TestCheckNamedFiles: every file the configuration names is
// refused when any local user could replace it (world-writable, or in a
// world-writable directory), and each secret among them is warned about,
// not refused, when group or others may read it; certificates and CA
// bundles may be world-readable. Kubernetes' symlinked secret volumes are
// judged by their target. CheckPrivate, which admin commands run, judges
// none of them.
func TestCheckNamedFiles(t *testing.T) {
	t.Setenv("PAMCTL_MASTER_KEY", "")
	for _, f := range []struct {
		key    string
		secret bool
		set    func(c *Config, p string)
	}{
		{"ca_file", false, func(c *Config, p string) { c.CAFile = p }},
		{"client_cert_file", false, func(c *Config, p string) { c.ClientCertFile = p }},
		{"client_key_file", true, func(c *Config, p string) { c.ClientKeyFile = p }},
		{"broker.tls.cert_file", false, func(c *Config, p string) { c.Broker.TLS.CertFile = p }},
		{"broker.tls.key_file", true, func(c *Config, p string) { c.Broker.TLS.KeyFile = p }},
		{"broker.tls.client_ca_file", false, func(c *Config, p string) { c.Broker.TLS.ClientCAFile = p }},
		{"proxy.tls.key_file", true, func(c *Config, p string) { c.Proxy.TLS.KeyFile = p }},
		{"proxy.tls.cert_file", false, func(c *Config, p string) { c.Proxy.TLS.CertFile = p }},
		{"metrics.tls.key_file", true, func(c *Config, p string) { c.Metrics.TLS.KeyFile = p }},
		{"metrics.tls.client_ca_file", false, func(c *Config, p string) { c.Metrics.TLS.ClientCAFile = p }},
		{"proxy.identity.id_token_file", true, func(c *Config, p string) { c.Proxy.Identity.IDTokenFile = p }},
		{"store.etcd.tls.ca_file", false, func(c *Config, p string) { c.Store.Etcd.TLS.CAFile = p }},
		{"store.etcd.tls.cert_file", false, func(c *Config, p string) { c.Store.Etcd.TLS.CertFile = p }},
		{"store.etcd.tls.key_file", true, func(c *Config, p string) { c.Store.Etcd.TLS.KeyFile = p }},
		{"store.etcd.password_file", true, func(c *Config, p string) { c.Store.Etcd.PasswordFile = p }},
		{"issuers[1].client_secret_file", true, func(c *Config, p string) {
			c.Issuers = []oidc.IssuerConfig{{Name: "a"}, {Name: "b", ClientSecretFile: p}}
		}},
		{"audit.sinks[0].headers_file", true, func(c *Config, p string) { c.Audit.Sinks = []auditsink.SinkConfig{{HeadersFile: p}} }},
		{"audit.sinks[0].url_file", true, func(c *Config, p string) { c.Audit.Sinks = []auditsink.SinkConfig{{URLFile: p}} }},
		{"audit.anchor.url_file", true, func(c *Config, p string) { c.Audit.Anchor.URLFile = p }},
		{"audit.sinks[0].ca_file", false, func(c *Config, p string) { c.Audit.Sinks = []auditsink.SinkConfig{{CAFile: p}} }},
		{"audit.anchor.headers_file", true, func(c *Config, p string) { c.Audit.Anchor.HeadersFile = p }},
		{"audit.anchor.ca_file", false, func(c *Config, p string) { c.Audit.Anchor.CAFile = p }},
		{"notify.slack.webhook_url_file", true, func(c *Config, p string) { c.Notify.Slack.WebhookURLFile = p }},
		{"notify.teams.webhook_url_file", true, func(c *Config, p string) { c.Notify.Teams.WebhookURLFile = p }},
	} {
		for _, tc := range []struct {
			name            string
			path            func(t *testing.T) string
			refused, warned bool
		}{
			{"0600", func(t *testing.T) string { return modeFile(t, t.TempDir(), 0o600) }, false, false},
			{"0644", func(t *testing.T) string { return modeFile(t, t.TempDir(), 0o644) }, false, f.secret},
			{"0666", func(t *testing.T) string { return modeFile(t, t.TempDir(), 0o666) }, true, false},
			{"in a 0777 directory", func(t *testing.T) string {
				d := filepath.Join(t.TempDir(), "d")
				os.Mkdir(d, 0o700)
				os.Chmod(d, 0o777)
				return modeFile(t, d, 0o600)
			}, true, false},
			{"secret volume 0400", func(t *testing.T) string { return secretVolumeFile(t, 0o400) }, false, false},
			{"secret volume 0644", func(t *testing.T) string { return secretVolumeFile(t, 0o644) }, false, f.secret},
			{"secret volume 0666", func(t *testing.T) string { return secretVolumeFile(t, 0o666) }, true, false},
		} {
			t.Run(f.key+"/"+tc.name, func(t *testing.T) {
				p := tc.path(t)
				c := &Config{}
				f.set(c, p)
				w, err := c.CheckNamedFiles()
				if tc.refused != (err != nil) {
					t.Fatalf("CheckNamedFiles: %v; want refused=%v", err, tc.refused)
				}
				if err != nil && (!strings.Contains(err.Error(), f.key+": "+p) || !strings.Contains(err.Error(), "chmod o-w")) {
					t.Fatalf("error %q does not name %s: %s and the chmod", err, f.key, p)
				}
				if err := c.CheckPrivate(); err != nil {
					t.Fatalf("CheckPrivate judged %s: %v", f.key, err)
				}
				if tc.warned != (len(w) > 0) {
					t.Fatalf("warnings %q; want warned=%v", w, tc.warned)
				}
				if tc.warned && (len(w) != 1 || !strings.HasPrefix(w[0], f.key+": "+p) || !strings.Contains(w[0], "chmod go-rwx") || !strings.Contains(w[0], "defaultMode: 0400")) {
					t.Fatalf("warning %q does not name %s: %s, the chmod and defaultMode", w, f.key, p)
				}
			})
		}
	}
}

func modeFile(t *testing.T, dir string, m os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigCheckAndServeJudgeSecretFiles: `config check` warns about a
// readable secret file and exits 2 on a replaceable one; serve logs the
// warning and refuses to start on the other.
func TestConfigCheckAndServeJudgeSecretFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pamctl.yaml")
	hook := filepath.Join(dir, "slack-hook")
	os.WriteFile(hook, []byte("https://hooks.slack.com/services/T/B/SECRET\n"), 0o600)
	os.WriteFile(file, []byte("notify:\n  slack:\n    webhook_url_file: "+hook+"\n"), 0o600)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("PAMCTL_MASTER_KEY_FILE", filepath.Join(dir, "master.key"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	warning := "notify.slack.webhook_url_file: " + hook + " holds a secret and is readable"
	if r := runCLI(t, "config", "check", "--config", file); r.code != 0 || strings.Contains(r.err, warning) {
		t.Fatalf("config check of a 0600 file: exit %d\n%s", r.code, r.err)
	}
	os.Chmod(hook, 0o644)
	if r := runCLI(t, "config", "check", "--config", file); r.code != 0 || !strings.Contains(r.err, warning) {
		t.Fatalf("config check of a 0644 file: exit %d, want 0 and %q\n%s", r.code, warning, r.err)
	}
	os.Chmod(hook, 0o646)
	if r := runCLI(t, "config", "check", "--config", file); r.code != ExitUsage || !strings.Contains(r.err, "chmod o-w "+hook) {
		t.Fatalf("config check of a 0646 file: exit %d, want %d and the chmod\n%s", r.code, ExitUsage, r.err)
	}

	start := func(m os.FileMode) (string, error) {
		os.Chmod(hook, m)
		cfg, err := LoadConfig("", nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.DataDir, cfg.MasterKeyFile = filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "master.key")
		cfg.Notify.Slack.WebhookURLFile = hook
		var logs bytes.Buffer
		app, err := NewApp(context.Background(), cfg, AppOptions{Dev: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err == nil {
			app.Close()
		}
		return logs.String(), err
	}
	if logs, err := start(0o640); err != nil || !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "notify.slack.webhook_url_file: "+hook) {
		t.Fatalf("serve with a 0640 hook file: %v\n%s", err, logs)
	}
	if logs, err := start(0o400); err != nil || strings.Contains(logs, "webhook_url_file") {
		t.Fatalf("serve with a 0400 hook file: %v\n%s", err, logs)
	}
	if _, err := start(0o602); err == nil || !strings.Contains(err.Error(), "notify.slack.webhook_url_file: "+hook) {
		t.Fatalf("serve with a 0602 hook file: %v", err)
	}
}
