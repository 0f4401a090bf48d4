//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mk writes a file or makes a directory with exactly mode m (no umask).
func mk(t *testing.T, path string, m os.FileMode) string {
	t.Helper()
	var err error
	if m&os.ModeDir != 0 {
		err = os.Mkdir(path, 0o700)
	} else {
		err = os.WriteFile(path, []byte("secret"), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, m&(os.ModePerm|os.ModeSticky)); err != nil {
		t.Fatal(err)
	}
	return path
}

func link(t *testing.T, to, name string) string {
	t.Helper()
	if err := os.Symlink(to, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// secretVolume lays out a Kubernetes secret volume in dir: the volume's
// root (1777), ..TIMESTAMP/key (mode m), ..data -> ..TIMESTAMP and
// key -> ..data/key. It returns the path pamctl is given.
func secretVolume(t *testing.T, m os.FileMode) string {
	t.Helper()
	vol := mk(t, filepath.Join(t.TempDir(), "vol"), os.ModeDir|os.ModeSticky|0o777)
	ts := mk(t, filepath.Join(vol, "..2026_01_01_00_00_00.1"), os.ModeDir|0o755)
	mk(t, filepath.Join(ts, "tls.key"), m)
	link(t, "..2026_01_01_00_00_00.1", filepath.Join(vol, "..data"))
	return link(t, "..data/tls.key", filepath.Join(vol, "tls.key"))
}

func TestCheckPerms(t *testing.T) {
	for _, tc := range []struct {
		name    string
		path    func(t *testing.T) string
		secret  bool
		refused string // substring of the error; "" none
		warned  string // substring of the warning; "" none
	}{
		{"owner only", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "k"), 0o600) }, Secret, "", ""},
		{"read only", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "k"), 0o400) }, Secret, "", ""},
		{"world readable secret", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "k"), 0o644) }, Secret, "", "readable by group or others (mode 0644): run `chmod go-rwx"},
		{"others read only", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "k"), 0o604) }, Secret, "", "readable by every local user (mode 0604)"},
		{"group readable secret", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "k"), 0o640) }, Secret, "", "mode 0640"},
		{"world readable certificate", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "c"), 0o644) }, Public, "", ""},
		{"world writable secret", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "k"), 0o666) }, Secret, "writable by every local user (mode 0666): anyone on this host could change it; run `chmod o-w", ""},
		{"world writable certificate", func(t *testing.T) string { return mk(t, filepath.Join(t.TempDir(), "c"), 0o602) }, Public, "chmod o-w", ""},
		{"world writable directory", func(t *testing.T) string {
			d := mk(t, filepath.Join(t.TempDir(), "d"), os.ModeDir|0o777)
			return mk(t, filepath.Join(d, "k"), 0o600)
		}, Secret, ": directory ", ""},
		{"sticky world writable directory", func(t *testing.T) string {
			d := mk(t, filepath.Join(t.TempDir(), "d"), os.ModeDir|os.ModeSticky|0o777)
			return mk(t, filepath.Join(d, "k"), 0o600)
		}, Secret, "", ""},
		{"link in a world writable directory", func(t *testing.T) string {
			k := mk(t, filepath.Join(t.TempDir(), "k"), 0o600)
			d := mk(t, filepath.Join(t.TempDir(), "d"), os.ModeDir|0o777)
			return link(t, k, filepath.Join(d, "k"))
		}, Secret, ": directory ", ""},
		{"target in a world writable directory", func(t *testing.T) string {
			d := mk(t, filepath.Join(t.TempDir(), "d"), os.ModeDir|0o777)
			k := mk(t, filepath.Join(d, "k"), 0o600)
			return link(t, k, filepath.Join(t.TempDir(), "k"))
		}, Public, ": directory ", ""},
		{"directory link in a world writable directory", func(t *testing.T) string {
			safe := mk(t, filepath.Join(t.TempDir(), "safe"), os.ModeDir|0o700)
			mk(t, filepath.Join(safe, "k"), 0o600)
			ww := mk(t, filepath.Join(t.TempDir(), "ww"), os.ModeDir|0o777)
			return filepath.Join(link(t, safe, filepath.Join(ww, "tls")), "k")
		}, Secret, ": directory ", ""},
		{"below a world writable directory", func(t *testing.T) string {
			ww := mk(t, filepath.Join(t.TempDir(), "ww"), os.ModeDir|0o777)
			d := mk(t, filepath.Join(ww, "d"), os.ModeDir|0o700)
			return mk(t, filepath.Join(d, "k"), 0o600)
		}, Secret, ": directory ", ""},
		{"secret volume 0400", func(t *testing.T) string { return secretVolume(t, 0o400) }, Secret, "", ""},
		{"secret volume default 0644", func(t *testing.T) string { return secretVolume(t, 0o644) }, Secret, "", "defaultMode: 0400"},
		{"secret volume certificate 0644", func(t *testing.T) string { return secretVolume(t, 0o644) }, Public, "", ""},
		{"secret volume writable target", func(t *testing.T) string { return secretVolume(t, 0o646) }, Secret, "..2026_01_01_00_00_00.1/tls.key) is writable by every local user", ""},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, Secret, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path(t)
			w, err := CheckPerms(p, tc.secret)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && (err == nil || !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), p)):
				t.Fatalf("error %v; want ErrSwappable naming %s with %q", err, p, tc.refused)
			}
			switch {
			case tc.warned == "" && w != "":
				t.Fatalf("warned: %s", w)
			case tc.warned != "" && (!strings.Contains(w, tc.warned) || !strings.Contains(w, p)):
				t.Fatalf("warning %q; want %q naming %s", w, tc.warned, p)
			}
		})
	}
}
