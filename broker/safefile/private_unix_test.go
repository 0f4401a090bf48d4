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
