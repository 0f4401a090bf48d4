package cli

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The session file is written through a fresh temporary file: one left
// at the old fixed name (session.json.tmp) with a loose mode, or as a
// link elsewhere, neither widens the saved session's mode nor receives it.
func TestSaveSessionIgnoresAPlantedTempFile(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	p := SessionPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(t.TempDir(), "catch")
	if err := os.WriteFile(planted, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(planted, p+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := saveSession(&SessionFile{Server: "http://127.0.0.1:8700", Token: "pamctl_s_secret", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(planted); len(b) != 0 {
		t.Fatalf("the session went through the planted file: %q", b)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeType != 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session file mode %v, want a regular 0600 file", fi.Mode())
	}
	left, _ := filepath.Glob(p + ".*.tmp")
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
