//go:build unix

package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// otherID is a uid and gid no process of the tests runs as.
const otherID = 54321

// The config file decides whom pamctl trusts (policies, issuers, the
// broker the CLI sends ID tokens to): LoadConfig, which serve, every
// reload, `config check` and the CLI read it through, refuses one another
// local user may write or replace, naming the fix (black-box red team: a
// 0666 config passed `config check` and serve, and another user granted
// themselves audit:read; a nobody-owned config.yaml in a sticky XDG dir
// named a fake broker to `pamctl login`).
func TestLoadConfigRefusesAFileOthersMayChange(t *testing.T) {
	const body = "server: https://pam.example.com\n"
	type setup func(t *testing.T, dir string) string // returns the path given
	write := func(t *testing.T, p string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	chown := func(t *testing.T, p string, uid, gid int) {
		t.Helper()
		if err := os.Lchown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	root := os.Geteuid() == 0
	for _, tc := range []struct {
		name     string
		needRoot bool
		setup    setup
		fix      string // in the error
	}{
		{"mode 0666", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "config.yaml")
			write(t, p, 0o666)
			return p
		}, "chmod o-w"},
		{"group-writable by a group pamctl is not in", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "config.yaml")
			write(t, p, 0o664)
			chown(t, p, 0, otherID)
			return p
		}, "chmod g-w"},
		{"owned by another user", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "config.yaml")
			write(t, p, 0o644)
			chown(t, p, otherID, otherID)
			return p
		}, "chown root"},
		{"in a 0777 directory", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "etc", "config.yaml")
			write(t, p, 0o644)
			os.Chmod(filepath.Dir(p), 0o777)
			return p
		}, "chmod o-w"},
		{"below a 0777 directory", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "open", "pamctl", "config.yaml")
			write(t, p, 0o644)
			os.Chmod(filepath.Join(dir, "open"), 0o777)
			return p
		}, "chmod o-w"},
		{"in a directory another user owns", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "theirs", "config.yaml")
			write(t, p, 0o644)
			chown(t, filepath.Dir(p), otherID, otherID)
			return p
		}, "chown root"},
		{"a symlink into a 0777 directory", false, func(t *testing.T, dir string) string {
			real := filepath.Join(dir, "open", "real.yaml")
			write(t, real, 0o644)
			os.Chmod(filepath.Dir(real), 0o777)
			p := filepath.Join(dir, "etc", "config.yaml")
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.Symlink(real, p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "chmod o-w"},
		{"a symlink another user owns", true, func(t *testing.T, dir string) string {
			real := filepath.Join(dir, "real.yaml")
			write(t, real, 0o644)
			p := filepath.Join(dir, "etc", "config.yaml")
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.Symlink(real, p); err != nil {
				t.Fatal(err)
			}
			chown(t, p, otherID, otherID)
			return p
		}, "chown -h root"},
		{"another user's file in a sticky 1777 directory", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "sticky", "config.yaml")
			write(t, p, 0o644)
			os.Chmod(filepath.Dir(p), 0o777|os.ModeSticky)
			chown(t, p, 65534, 65534)
			return p
		}, "chown root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot && !root {
				t.Skip("needs root to chown")
			}
			p := tc.setup(t, t.TempDir())
			_, err := LoadConfig(p, nil)
			if !errors.Is(err, safefile.ErrSwappable) {
				t.Fatalf("LoadConfig(%s) = %v; want a refusal wrapping ErrSwappable", p, err)
			}
			for _, want := range []string{p, tc.fix} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q:\n%v", want, err)
				}
			}
		})
	}
}

// What passes: a file of pamctl's user (or root's) that only they may
// write, group-writable by a group pamctl is in, in a sticky directory
// when the file is its own, and through a symlink root owns (a Kubernetes
// ConfigMap's name -> ..data/name).
func TestLoadConfigAcceptsFilesOnlyTrustedUsersMayChange(t *testing.T) {
	dir := t.TempDir()
	mk := func(p string, mode os.FileMode) string {
		t.Helper()
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("server: https://pam.example.com\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	own := mk(filepath.Join(dir, "own.yaml"), 0o644)
	group := mk(filepath.Join(dir, "group.yaml"), 0o664) // our own group
	sticky := mk(filepath.Join(dir, "sticky", "config.yaml"), 0o644)
	os.Chmod(filepath.Dir(sticky), 0o777|os.ModeSticky)
	data := mk(filepath.Join(dir, "cm", "..2026_01_01", "config.yaml"), 0o644)
	os.Symlink("..2026_01_01", filepath.Join(dir, "cm", "..data"))
	link := filepath.Join(dir, "cm", "config.yaml")
	os.Symlink("..data/config.yaml", link)
	_ = data
	for _, p := range []string{own, group, sticky, link} {
		cfg, err := LoadConfig(p, nil)
		if err != nil {
			t.Errorf("LoadConfig(%s): %v", p, err)
			continue
		}
		if cfg.Server != "https://pam.example.com" {
			t.Errorf("LoadConfig(%s): server %q", p, cfg.Server)
		}
	}
}

// The CLI's own config file ($XDG_CONFIG_HOME/pamctl/config.yaml, or
// PAMCTL_CONFIG) is judged as --config is: the red team's nobody-owned
// file in a sticky XDG pamctl directory named a fake broker to `pamctl
// login`.
func TestLoadConfigJudgesTheDefaultAndEnvConfigFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("PAMCTL_CONFIG", "")
	d := filepath.Join(home, "pamctl")
	if err := os.Mkdir(d, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o777|os.ModeSticky)
	p := filepath.Join(d, "config.yaml")
	if err := os.WriteFile(p, []byte("server: https://evil.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if cfg, err := LoadConfig("", nil); !errors.Is(err, safefile.ErrSwappable) {
		t.Fatalf("default config file owned by nobody: %v (server %q); want ErrSwappable", err, serverOf(cfg))
	}
	t.Setenv("PAMCTL_CONFIG", p)
	if cfg, err := LoadConfig("", nil); !errors.Is(err, safefile.ErrSwappable) {
		t.Fatalf("PAMCTL_CONFIG owned by nobody: %v (server %q); want ErrSwappable", err, serverOf(cfg))
	}
	// The CLI end to end: login never reaches the server the file names.
	r := runCLI(t, "login", "--no-browser")
	if r.code == ExitOK || !strings.Contains(r.err, p) || !strings.Contains(r.err, "chown root") {
		t.Fatalf("login with a planted config: %+v", r)
	}
}

func serverOf(c *Config) string {
	if c == nil {
		return ""
	}
	return c.Server
}

// `config check` and `serve --config` refuse a config file others may
// write (the red team's 0666 file passed "✓ valid" and started serve).
func TestConfigCheckAndServeRefuseAFileOthersMayWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte("data_dir: "+filepath.Join(dir, "data")+"\nmaster_key_file: "+filepath.Join(dir, "master.key")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "config", "check", "--config", p); r.code != ExitOK {
		t.Fatalf("config check of a private file: %+v", r)
	}
	os.Chmod(p, 0o666)
	for _, args := range [][]string{{"config", "check", "--config", p}, {"serve", "--config", p}} {
		// A serve that starts would run until the context ends: 20 s
		// bound the failure.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		r := runCLIContext(ctx, args...)
		cancel()
		if r.code != ExitUsage || !strings.Contains(r.err, "chmod o-w "+p) || strings.Contains(r.out+r.err, "valid") {
			t.Errorf("%v with a 0666 config: %+v", args, r)
		}
	}
}

// runCLIContext is runCLI under ctx.
func runCLIContext(ctx context.Context, args ...string) result {
	ios, _, out, errOut := iostreams.Test()
	root := NewCmdRoot(NewFactory(ios))
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := ExitOK
	if err != nil {
		code = exitCodeOf(err)
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	return result{out: out.String(), err: errOut.String(), code: code}
}
