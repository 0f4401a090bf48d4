//go:build unix

package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Unix only: the modes pamctl's private files are made with and judged by.
// What pamctl creates for itself is owner-only; a second create of the
// same name is refused, never reopened (a file someone left there keeps
// its owner and mode); CheckPrivate refuses any group or others bit.
func TestPrivateFilesOnUnix(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("MkdirPrivate: %v, %v", fi.Mode(), err)
	}
	if err := CheckPrivate("data dir", dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "key")
	f, err := CreatePrivate(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("CreatePrivate: mode %v", fi.Mode())
	}
	if _, err := CreatePrivate(p); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreatePrivate over a file: %v", err)
	}
	if err := CheckPrivate("key", filepath.Join(dir, "missing"), 0o600); err != nil {
		t.Fatalf("a missing file: %v", err)
	}
	for _, m := range []os.FileMode{0o640, 0o604, 0o610, 0o601} {
		os.Chmod(p, m)
		err := CheckPrivate("master key file", p, 0o600)
		if !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Errorf("mode %04o: %v", m, err)
		}
	}
	os.Chmod(dir, 0o750)
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivate("data dir", dir, 0o700); !errors.Is(err, ErrExposed) {
		t.Errorf("a 0750 data dir (left as it is by MkdirPrivate): %v", err)
	}
}

// MkdirPrivate judges a directory it finds there, whether it existed or
// another process made it first (both reach the same Mkdir's EEXIST),
// instead of trusting it (review r2 M2): refused when others may write it
// without the sticky bit or another user owns it, since they could
// replace what pamctl keeps there; a sticky one, or one readable by
// others (every file pamctl keeps is created 0600), passes. Something
// that is not a directory is refused, and every missing parent is
// created 0700.
func TestMkdirPrivateJudgesWhatItFinds(t *testing.T) {
	base := t.TempDir()
	deep := filepath.Join(base, "p", "q", "data")
	if err := MkdirPrivate(deep); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(base, "p"), filepath.Join(base, "p", "q"), deep} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, %v", p, fi.Mode(), err)
		}
	}
	for mode, refused := range map[os.FileMode]bool{0o777: true, 0o703: true, 0o755: false, 0o700: false, 0o777 | os.ModeSticky: false} {
		d := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		err := MkdirPrivate(d)
		switch {
		case refused && (!errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "chmod o-w "+d)):
			t.Errorf("an existing %v dir: %v", mode, err)
		case !refused && err != nil:
			t.Errorf("an existing %v dir: %v", mode, err)
		}
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirPrivate(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file where the dir should be: %v", err)
	}
	if os.Geteuid() == 0 {
		d := filepath.Join(t.TempDir(), "theirs")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := MkdirPrivate(d); !errors.Is(err, ErrSwappable) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("an existing dir another user owns: %v", err)
		}
	}
}
