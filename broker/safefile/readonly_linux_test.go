//go:build linux

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// bindMount mounts src at dst (read-only when ro) for the test's life;
// it skips the test where this process may not mount (not root, no
// CAP_SYS_ADMIN).
func bindMount(t *testing.T, src, dst string, ro bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount and chown")
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
	if ro {
		if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount %s read-only: %v", dst, err)
		}
	}
}

// A file, a directory and a symlink on a read-only mount pass whatever
// their mode and owner: no one may change them there (a container's
// `-v config.yaml:/etc/pamctl/config.yaml:ro` keeps the host's owner; a
// ConfigMap's defaultMode may be 0666). The same files through a mount
// that is not read-only, and the way above the mount point, are judged
// as ever; a secret others may read still warns.
func TestReadOnlyMountPasses(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.Mkdir(src, 0o777); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(src, "config.yaml")
	if err := os.WriteFile(f, []byte("x: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := filepath.Join(src, "link.yaml")
	if err := os.Symlink("config.yaml", l); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount and chown")
	}
	for _, p := range []string{src, f} {
		os.Chmod(p, 0o777)
		os.Chown(p, otherID, otherID)
	}
	os.Chmod(f, 0o666)
	os.Lchown(l, otherID, otherID)

	ro := filepath.Join(base, "ro")
	rw := filepath.Join(base, "rw")
	for _, d := range []string{ro, rw} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bindMount(t, src, rw, false)
	bindMount(t, src, ro, true)

	for _, name := range []string{"config.yaml", "link.yaml"} {
		if _, err := CheckPerms(filepath.Join(rw, name), Public); !errors.Is(err, ErrSwappable) {
			t.Errorf("%s on a read-write mount: %v; want ErrSwappable", name, err)
		}
		p := filepath.Join(ro, name)
		if _, err := CheckPerms(p, Public); err != nil {
			t.Errorf("%s on a read-only mount: %v", name, err)
		}
		if b, err := ReadFile(p); err != nil || string(b) != "x: 1\n" {
			t.Errorf("ReadFile(%s) on a read-only mount: %q, %v", p, b, err)
		}
		if w, err := CheckPerms(p, Secret); err != nil || !strings.Contains(w, "readable by") {
			t.Errorf("a secret every user may read on a read-only mount: warning %q, %v", w, err)
		}
	}
	if err := CheckWay(filepath.Join(ro, "config.yaml")); err != nil {
		t.Errorf("CheckWay through a read-only mount: %v", err)
	}

	// The way to the mount point is judged as ever: whoever may write
	// the directory holding it may put another file in its place.
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(open, "ro")
	os.Mkdir(mp, 0o755)
	bindMount(t, src, mp, true)
	os.Chmod(open, 0o777)
	if _, err := CheckPerms(filepath.Join(mp, "config.yaml"), Public); !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "directory "+open) {
		t.Errorf("a read-only mount in a 0777 directory: %v; want the directory refused", err)
	}
}
