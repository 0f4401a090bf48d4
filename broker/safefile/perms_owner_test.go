//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// otherID is a uid and gid no process of this test runs as, nor is a
// member of: another local user (and their group) on the host.
const otherID = 4242

// From a red-team pass: CheckPerms looked only at the "others" write bit. A directory
// on the way to a key or CA file that another local user owns (any mode:
// the owner of a directory may rename anything in it, sticky bit or not),
// or that a group pamctl is not in may write, lets a user other than the
// file's owner put another file in its place: ErrSwappable by its own
// definition. Both layouts were accepted without a word.
func TestCheckPermsRefusesDirsOtherUsersControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	for _, tc := range []struct {
		name     string
		uid, gid int
		mode     os.FileMode
	}{
		{"directory owned by another user", otherID, 0, 0o755},
		{"sticky world-writable directory owned by another user", otherID, 0, os.ModeSticky | 0o777},
		{"directory writable by a group pamctl is not in", 0, otherID, 0o775},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mk(t, filepath.Join(t.TempDir(), "etc-pamctl"), os.ModeDir|tc.mode)
			if err := os.Chown(dir, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			// chown clears nothing on a directory, but be exact.
			if err := os.Chmod(dir, tc.mode&(os.ModePerm|os.ModeSticky)); err != nil {
				t.Fatal(err)
			}
			ca := mk(t, filepath.Join(dir, "ca.pem"), 0o644) // root's file
			for _, kind := range []bool{Public, Secret} {
				_, err := CheckPerms(ca, kind)
				if !errors.Is(err, ErrSwappable) {
					t.Errorf("secret=%v: %s (mode %v, uid %d gid %d): accepted (err %v); uid/gid %d can rename another file over it",
						kind, dir, tc.mode, tc.uid, tc.gid, err, otherID)
				}
			}
			// safefile.Open, which every key and CA read goes through, too.
			if f, err := Open(ca); err == nil {
				f.Close()
				t.Errorf("Open(%s) accepted a file in a directory uid/gid %d controls", ca, otherID)
			}
		})
	}
}

// From a red-team pass: a file another (non-root) local user owns is theirs to
// rewrite: a CA bundle or key they own, say one they planted under a
// sticky /tmp path the config names before pamctl's admin wrote it, is
// accepted as long as it is not world-writable.
func TestCheckPermsRefusesFileOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	ca := mk(t, filepath.Join(t.TempDir(), "ca.pem"), 0o644)
	if err := os.Chown(ca, otherID, otherID); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckPerms(ca, Public); !errors.Is(err, ErrSwappable) {
		t.Errorf("a CA file owned by uid %d (mode 0644) is accepted (err %v): its owner can change who pamctl trusts", otherID, err)
	}
}

// The refusals name what controls the file and the command that fixes
// it; a directory writable by pamctl's own group, or a sticky one another
// group may write, is fine.
func TestCheckPermsOwnershipMessagesAndOwnGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	dir := mk(t, filepath.Join(t.TempDir(), "d"), os.ModeDir|0o755)
	if err := os.Chown(dir, otherID, 0); err != nil {
		t.Fatal(err)
	}
	_, err := CheckPerms(mk(t, filepath.Join(dir, "k"), 0o600), Secret)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 4242") || !strings.Contains(err.Error(), "`chown root "+dir+"`") {
		t.Errorf("directory owned by another user: %v, want its uid and the chown that fixes it", err)
	}
	f := mk(t, filepath.Join(t.TempDir(), "ca.pem"), 0o664)
	if err := os.Chown(f, 0, otherID); err != nil {
		t.Fatal(err)
	}
	_, err = CheckPerms(f, Public)
	if !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "writable by group 4242") || !strings.Contains(err.Error(), "`chmod g-w "+f+"`") {
		t.Errorf("file writable by a foreign group: %v, want ErrSwappable naming the group and chmod g-w", err)
	}
	own := mk(t, filepath.Join(t.TempDir(), "own"), os.ModeDir|0o775)
	if err := os.Chown(own, 0, os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckPerms(mk(t, filepath.Join(own, "ca.pem"), 0o644), Public); err != nil {
		t.Errorf("a directory pamctl's own group may write: %v, want it accepted", err)
	}
	sticky := mk(t, filepath.Join(t.TempDir(), "sticky"), os.ModeDir|0o775)
	if err := os.Chown(sticky, 0, otherID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, os.ModeSticky|0o775); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckPerms(mk(t, filepath.Join(sticky, "ca.pem"), 0o644), Public); err != nil {
		t.Errorf("a sticky directory a foreign group may write (it renames only its own files): %v, want it accepted", err)
	}
}
