//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A directory symlink on the path (not the last component) that points
// at another symlink sitting in a world-writable directory: whoever may
// write that directory may repoint the second link, and with it the file
// pamctl reads. linkDirs only follows the last component's links, and the
// walk up covers the named path and the resolved one, never the
// intermediate hop, so the file is not refused.
func TestCheckPermsRefusesIntermediateLinkInWorldWritableDir(t *testing.T) {
	real := mk(t, filepath.Join(t.TempDir(), "real"), os.ModeDir|0o700)
	mk(t, filepath.Join(real, "k"), 0o600)
	ww := mk(t, filepath.Join(t.TempDir(), "ww"), os.ModeDir|0o777) // no sticky bit
	hop := link(t, real, filepath.Join(ww, "hop"))                  // ww/hop -> real
	safe := mk(t, filepath.Join(t.TempDir(), "safe"), os.ModeDir|0o700)
	dirLink := link(t, hop, filepath.Join(safe, "tls")) // safe/tls -> ww/hop
	p := filepath.Join(dirLink, "k")                    // safe/tls/k -> ww/hop/k -> real/k
	if _, err := CheckPerms(p, Secret); !errors.Is(err, ErrSwappable) {
		t.Fatalf("CheckPerms(%s) = %v; want ErrSwappable: %s is world-writable and holds the link %s the path goes through", p, err, ww, hop)
	}
}

// A symlink in a sticky world-writable directory (/tmp) that another
// local user owns: the sticky bit keeps others from replacing what they
// do not own, but the link's owner may replace it and point the name at
// a file of their own. ErrSwappable's contract ("a local user other than
// the file's owner could replace the file") is broken: the target is
// root's, the link is someone else's.
func TestCheckPermsRefusesLinkOwnedByAnotherUserInStickyDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the link to another user")
	}
	target := mk(t, filepath.Join(t.TempDir(), "k"), 0o600)
	sticky := mk(t, filepath.Join(t.TempDir(), "tmp"), os.ModeDir|os.ModeSticky|0o777)
	l := link(t, target, filepath.Join(sticky, "k"))
	if err := os.Lchown(l, 65534, 65534); err != nil { // nobody
		t.Fatal(err)
	}
	if _, err := CheckPerms(l, Public); !errors.Is(err, ErrSwappable) {
		t.Fatalf("CheckPerms(%s) = %v; want ErrSwappable: the link is nobody's, in a sticky directory nobody may write", l, err)
	}
}
