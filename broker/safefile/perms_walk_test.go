//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Links anywhere on the path count, whichever way they are written: the
// directory of each one met is checked, not only of the last component's.
func TestCheckPermsFollowsEveryLinkOnTheWay(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(t *testing.T, real, ww, safe string) string
	}{
		{"relative link to a link", func(t *testing.T, real, ww, safe string) string {
			link(t, real, filepath.Join(ww, "hop"))
			rel, err := filepath.Rel(safe, filepath.Join(ww, "hop"))
			if err != nil {
				t.Fatal(err)
			}
			return filepath.Join(link(t, rel, filepath.Join(safe, "tls")), "k") // safe/tls -> ../../ww/hop
		}},
		{"link whose target climbs out through ..", func(t *testing.T, real, ww, safe string) string {
			link(t, real, filepath.Join(ww, "hop"))
			sub := mk(t, filepath.Join(ww, "sub"), os.ModeDir|0o700)
			return filepath.Join(link(t, filepath.Join(sub, "..", "hop"), filepath.Join(safe, "tls")), "k")
		}},
		{".. in the named path after a link", func(t *testing.T, real, ww, safe string) string {
			link(t, real, filepath.Join(ww, "hop"))
			link(t, filepath.Join(ww, "hop"), filepath.Join(safe, "tls"))
			mk(t, filepath.Join(safe, "x"), os.ModeDir|0o700)
			return filepath.Join(safe, "x", "..", "tls", "k")
		}},
		{"link in the middle of a relative link's target", func(t *testing.T, real, ww, safe string) string {
			link(t, real, filepath.Join(ww, "hop"))
			return link(t, filepath.Join(ww, "hop", "k"), filepath.Join(safe, "k")) // safe/k -> ww/hop/k
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			real := mk(t, filepath.Join(t.TempDir(), "real"), os.ModeDir|0o700)
			mk(t, filepath.Join(real, "k"), 0o600)
			ww := mk(t, filepath.Join(t.TempDir(), "ww"), os.ModeDir|0o777)
			safe := mk(t, filepath.Join(t.TempDir(), "safe"), os.ModeDir|0o700)
			p := tc.path(t, real, ww, safe)
			_, err := CheckPerms(p, Secret)
			if !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "directory "+ww+" ") {
				t.Fatalf("CheckPerms(%s) = %v; want ErrSwappable naming %s", p, err, ww)
			}
			os.Chmod(ww, 0o755)
			if _, err := CheckPerms(p, Secret); err != nil {
				t.Fatalf("with %s 0755: %v", ww, err)
			}
		})
	}
}

// The walk ends on a symlink loop instead of running forever.
func TestWalkBoundsLoops(t *testing.T) {
	d := t.TempDir()
	link(t, "b", filepath.Join(d, "a"))
	link(t, "a", filepath.Join(d, "b"))
	if _, err := walk(filepath.Join(d, "a", "k")); err == nil || !strings.Contains(err.Error(), "symlinks") {
		t.Fatalf("walk through a loop: %v, want too many symlinks", err)
	}
	if _, err := CheckPerms(filepath.Join(d, "a"), Secret); err != nil {
		t.Fatalf("CheckPerms of a loop: %v, want nothing (reading it reports the loop)", err)
	}
}

// A link another user owns is refused wherever on the path it is, naming
// the link and `chown -h`; a link's group and mode (always 0777) mean
// nothing: one of root's in a foreign group is fine.
func TestCheckPermsLinkOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a link to another user")
	}
	real := mk(t, filepath.Join(t.TempDir(), "real"), os.ModeDir|0o700)
	mk(t, filepath.Join(real, "k"), 0o600)
	safe := mk(t, filepath.Join(t.TempDir(), "safe"), os.ModeDir|0o755)
	l := link(t, real, filepath.Join(safe, "tls"))
	p := filepath.Join(l, "k") // the link is not the last component
	if err := os.Lchown(l, otherID, 0); err != nil {
		t.Fatal(err)
	}
	_, err := CheckPerms(p, Public)
	if !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "symlink "+l+" on its way is owned by uid 4242") || !strings.Contains(err.Error(), "`chown -h root "+l+"`") {
		t.Fatalf("CheckPerms(%s) through a link of uid %d: %v; want ErrSwappable naming the link and chown -h", p, otherID, err)
	}
	if err := os.Lchown(l, 0, otherID); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckPerms(p, Public); err != nil {
		t.Fatalf("a link of root's in group %d: %v; want it accepted", otherID, err)
	}
}

// CheckWay judges the way to a directory, not the directory itself, and
// what exists of it when the directory is still to be made.
func TestCheckWay(t *testing.T) {
	ww := mk(t, filepath.Join(t.TempDir(), "ww"), os.ModeDir|0o777)
	for _, p := range []string{ww, filepath.Join(ww, "data"), filepath.Join(ww, "new", "data")} {
		err := CheckWay(filepath.Join(p, "x"))
		if !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "directory "+ww+" ") {
			t.Errorf("CheckWay(%s/x): %v; want ErrSwappable naming %s", p, err, ww)
		}
	}
	if err := CheckWay(ww); err != nil {
		t.Errorf("CheckWay(%s) judged the directory itself: %v", ww, err)
	}
	d := t.TempDir()
	link(t, "b", filepath.Join(d, "a"))
	link(t, "a", filepath.Join(d, "b"))
	if err := CheckWay(filepath.Join(d, "a", "data")); !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "cannot check") {
		t.Errorf("CheckWay through a loop: %v; want it refused: a way that cannot be checked does not pass", err)
	}
}
