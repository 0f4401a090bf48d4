//go:build linux

package cli

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pamctl/pamctl/broker/safefile"
)

// A config bind-mounted read-only into a container keeps the host's owner
// (`docker run -v ./config.yaml:/etc/pamctl/config.yaml:ro`, the image
// runs as 65532) and a ConfigMap may set defaultMode 0666: on a read-only
// mount no one may change it, and serve reads it. The same file mounted
// read-write is refused.
func TestLoadConfigOnAReadOnlyMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount and chown")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "host", "config.yaml")
	os.MkdirAll(filepath.Dir(src), 0o755)
	if err := os.WriteFile(src, []byte("server: https://pam.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(src, 0o666)
	os.Chown(src, otherID, otherID)
	mount := func(ro bool) string {
		dst := filepath.Join(dir, map[bool]string{true: "ro", false: "rw"}[ro], "config.yaml")
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Skipf("cannot bind-mount here: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
		if ro {
			if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
				t.Fatal(err)
			}
		}
		return dst
	}
	rw, ro := mount(false), mount(true)
	if _, err := LoadConfig(rw, nil); !errors.Is(err, safefile.ErrSwappable) {
		t.Fatalf("a 0666 config of another user's mounted read-write: %v; want ErrSwappable", err)
	}
	cfg, err := LoadConfig(ro, nil)
	if err != nil || cfg.Server != "https://pam.example.com" {
		t.Fatalf("the same file mounted read-only: %v", err)
	}
}
