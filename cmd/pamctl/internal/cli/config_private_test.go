package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/safefile"
)

// A file the configuration names but an admin command does not read (an
// audit sink's CA, a Slack webhook file) that others could replace stops
// `serve` and `config check`, never `vault ls`, which only opens the data
// dir and the master key.
func TestNamedFilesStopServeAndConfigCheckOnly(t *testing.T) {
	dir := t.TempDir()
	ca := modeFile(t, dir, 0o666)
	hook := filepath.Join(dir, "hook")
	os.WriteFile(hook, []byte("https://hooks.slack.com/services/T/B/SECRET\n"), 0o600)
	os.Chmod(hook, 0o646)
	file := writeConfig(t, "data_dir: "+filepath.Join(dir, "data")+"\nmaster_key_file: "+filepath.Join(dir, "master.key")+
		"\naudit:\n  sinks:\n    - { type: syslog, addr: tcp+tls://siem.example.com:6514, ca_file: "+ca+" }\nnotify:\n  slack:\n    webhook_url_file: "+hook+"\n")
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	if r := runCLI(t, "vault", "ls", "--config", file); r.code != ExitOK {
		t.Fatalf("vault ls with a replaceable sink CA and webhook file it never reads: exit %d\n%s", r.code, r.err)
	}
	for _, args := range [][]string{{"config", "check"}, {"serve", "--broker-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0"}} {
		r := runCLI(t, append(args, "--config", file)...)
		if r.code != ExitUsage || !strings.Contains(r.err, "audit.sinks[0].ca_file: "+ca) || !strings.Contains(r.err, "notify.slack.webhook_url_file: "+hook) {
			t.Errorf("%v: exit %d, want %d naming both files\n%s", args, r.code, ExitUsage, r.err)
		}
	}
	cfg, err := LoadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Role = RoleProxy
	if _, err := NewApp(t.Context(), cfg, AppOptions{}); err == nil || !strings.Contains(err.Error(), "audit.sinks[0].ca_file: "+ca) {
		t.Errorf("NewApp, proxy role: %v, want the sink CA refused", err)
	}
}

// The data dir is refused when a directory above it, or one holding a
// symlink on the way to it, lets other users replace it, existing or not.
func TestCheckPrivateDataDirWay(t *testing.T) {
	t.Setenv("PAMCTL_MASTER_KEY", "")
	ww := filepath.Join(t.TempDir(), "ww")
	os.Mkdir(ww, 0o700)
	os.Chmod(ww, 0o777)
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"below a 0777 directory", func(t *testing.T) string {
			d := filepath.Join(ww, "data")
			os.Mkdir(d, 0o700)
			return d
		}},
		{"not created yet, below a 0777 directory", func(t *testing.T) string { return filepath.Join(ww, "new", "data") }},
		{"through a link in a 0777 directory", func(t *testing.T) string {
			real := filepath.Join(t.TempDir(), "data")
			os.Mkdir(real, 0o700)
			l := filepath.Join(ww, "link")
			if err := os.Symlink(real, l); err != nil {
				t.Fatal(err)
			}
			return l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.dir(t)
			err := (&Config{DataDir: d}).CheckPrivate()
			if !errors.Is(err, safefile.ErrSwappable) || !strings.Contains(err.Error(), "data dir "+d+": directory "+ww+" ") || !strings.Contains(err.Error(), "chmod o-w "+ww) {
				t.Fatalf("CheckPrivate(data dir %s): %v; want ErrSwappable naming %s and the chmod", d, err, ww)
			}
		})
	}
	safe := filepath.Join(t.TempDir(), "data")
	os.Mkdir(safe, 0o700)
	if err := (&Config{DataDir: safe}).CheckPrivate(); err != nil {
		t.Fatalf("a 0700 data dir in a private directory: %v", err)
	}
}

// The data dir below a directory another user owns is refused.
func TestCheckPrivateDataDirForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	t.Setenv("PAMCTL_MASTER_KEY", "")
	parent := filepath.Join(t.TempDir(), "var-lib")
	os.Mkdir(parent, 0o755)
	if err := os.Chown(parent, 4242, 0); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(parent, "pamctl")
	os.Mkdir(d, 0o700)
	err := (&Config{DataDir: d}).CheckPrivate()
	if !errors.Is(err, safefile.ErrSwappable) || !strings.Contains(err.Error(), "owned by uid 4242") || !strings.Contains(err.Error(), "chown root "+parent) {
		t.Fatalf("data dir below a directory of uid 4242: %v; want ErrSwappable naming it and the chown", err)
	}
}

// A master key file others may write is reported once, by its mode; the
// directory it sits in, when others may write it, is a second problem.
func TestCheckPrivateMasterKeyOnce(t *testing.T) {
	t.Setenv("PAMCTL_MASTER_KEY", "")
	count := func(err error) int {
		if err == nil {
			return 0
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			return len(j.Unwrap())
		}
		return 1
	}
	key := modeFile(t, t.TempDir(), 0o666)
	err := (&Config{MasterKeyFile: key}).CheckPrivate()
	if count(err) != 1 || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Fatalf("a 0666 master key: %v; want one error, the chmod 600", err)
	}
	ww := filepath.Join(t.TempDir(), "ww")
	os.Mkdir(ww, 0o700)
	os.Chmod(ww, 0o777)
	key = modeFile(t, ww, 0o600)
	err = (&Config{MasterKeyFile: key}).CheckPrivate()
	if count(err) != 1 || !errors.Is(err, safefile.ErrSwappable) || !strings.Contains(err.Error(), "master_key_file: "+key+": directory "+ww) {
		t.Fatalf("a 0600 master key in a 0777 directory: %v; want one error naming the directory", err)
	}
	os.Chmod(key, 0o666)
	err = (&Config{MasterKeyFile: key}).CheckPrivate()
	if count(err) != 2 || strings.Count(err.Error(), "writable by every local user") != 1 {
		t.Fatalf("a 0666 master key in a 0777 directory: %v; want its mode and the directory, once each", err)
	}
}
