//go:build linux

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// asOther makes path (not following a symlink) belong to otherID, the
// local user playing the attacker.
func asOther(t *testing.T, path string) string {
	t.Helper()
	if err := os.Lchown(path, otherID, otherID); err != nil {
		t.Fatal(err)
	}
	return path
}

// From red-team pass 3: walk starts from filepath.Abs(path), and Abs
// cleans the path lexically, so "link/.." is dropped before any link is
// read. The kernel resolves "link/.." through the link: to the parent of
// the link's target. The walk then judges another file than the one that
// is read (safe/k, root's, when it exists), or fails (safe/k does not
// exist) and CheckPerms takes the failure for "it moved since Stat" and
// accepts. Either way the file read sits in a directory another user owns.
func TestCheckPermsDotDotAfterALinkIsTheKernels(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	for _, decoy := range []bool{false, true} {
		name := "no file at the lexical path"
		if decoy {
			name = "root's file at the lexical path"
		}
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			safe := mk(t, filepath.Join(base, "safe"), os.ModeDir|0o755)             // root's
			home := asOther(t, mk(t, filepath.Join(base, "home"), os.ModeDir|0o755)) // the other user's
			keys := asOther(t, mk(t, filepath.Join(home, "keys"), os.ModeDir|0o755))
			// root's file (a hard link the other user made, or one they will
			// rename away): what counts is the directory they own.
			if err := os.WriteFile(filepath.Join(home, "k"), []byte("attacker"), 0o600); err != nil {
				t.Fatal(err)
			}
			link(t, keys, filepath.Join(safe, "tls")) // root's link, in root's directory
			if decoy {
				mk(t, filepath.Join(safe, "k"), 0o600)
			}
			p := filepath.Join(safe, "tls") + "/../k" // the kernel: home/keys/.. = home, then k
			if b, err := os.ReadFile(p); err != nil || string(b) != "attacker" {
				t.Fatalf("the kernel reads %s as %q, %v; want the other user's file", p, b, err)
			}
			for _, kind := range []bool{Public, Secret} {
				if _, err := CheckPerms(p, kind); !errors.Is(err, ErrSwappable) {
					t.Errorf("CheckPerms(%s, secret=%v) = %v; want ErrSwappable: the file read is in uid %d's directory %s",
						p, kind, err, otherID, home)
				}
			}
			if b, err := Read(p, 0); err == nil {
				t.Errorf("Read(%s) = %q: read a file in uid %d's directory", p, b, otherID)
			}
			// The data dir's way, likewise: home/keys/../data is made in home.
			if err := CheckWay(filepath.Join(safe, "tls") + "/../data"); !errors.Is(err, ErrSwappable) {
				t.Errorf("CheckWay(%s/tls/../data) = %v; want ErrSwappable naming %s", safe, err, home)
			}
		})
	}
}

// From red-team pass 3: any error of the walk is taken as "the file moved
// since Stat" (CheckPerms) or "opening it reports that" (CheckWay, unless
// the name is missing), and accepted without a check. Another user who
// owns a directory on the way (exactly what CheckPerms is there to refuse)
// makes the walk fail while the kernel still opens the file: links whose
// targets, resolved one after the other, give an absolute path longer
// than PATH_MAX (4096). The kernel never builds that path; the walk's
// Lstat of it fails with ENAMETOOLONG, and the check is skipped.
func TestCheckPermsWalkFailureIsNoPass(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	home := asOther(t, mk(t, filepath.Join(t.TempDir(), "shared"), os.ModeDir|0o755)) // configured as pamctl's, owned by uid 4242
	long := strings.Repeat("d", 250)
	deep := func(dirfd int, n int) (int, string) {
		t.Helper()
		var rel []string
		for range n {
			if err := syscall.Mkdirat(dirfd, long, 0o755); err != nil {
				t.Fatal(err)
			}
			fd, err := syscall.Openat(dirfd, long, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			syscall.Close(dirfd)
			dirfd = fd
			rel = append(rel, long)
		}
		return dirfd, strings.Join(rel, "/")
	}
	root, err := syscall.Open(home, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	mid, rel1 := deep(root, 10) // home/d…(10 × 251 bytes)
	link(t, rel1, filepath.Join(home, "l1"))
	end, rel2 := deep(dupDir(t, mid), 10)
	link(t, rel2, filepath.Join(home, rel1, "l2")) // a path of some 2,500 bytes
	syscall.Close(mid)
	fd, err := syscall.Openat(end, "k", syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Write(fd, []byte("attacker"))
	syscall.Close(fd)
	syscall.Close(end)
	t.Cleanup(func() { os.RemoveAll(home) }) // RemoveAll copes with the depth; TempDir's cleanup too

	p := filepath.Join(home, "l1", "l2", "k") // short: what the config names
	if b, err := os.ReadFile(p); err != nil || string(b) != "attacker" {
		t.Fatalf("the kernel reads %s as %q, %v", p, b, err)
	}
	if _, err := CheckPerms(p, Secret); !errors.Is(err, ErrSwappable) {
		t.Errorf("CheckPerms(%s) = %v; want ErrSwappable: %s, on its way, is uid %d's", p, err, home, otherID)
	}
	if b, err := Read(p, 0); err == nil {
		t.Errorf("Read(%s) = %q: read through uid %d's directory", p, b, otherID)
	}
	if err := CheckWay(filepath.Join(home, "l1", "l2", "data")); !errors.Is(err, ErrSwappable) {
		t.Errorf("CheckWay(%s/l1/l2/data) = %v; want ErrSwappable: %s is uid %d's", home, err, home, otherID)
	}
}

func dupDir(t *testing.T, fd int) int {
	t.Helper()
	d, err := syscall.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
