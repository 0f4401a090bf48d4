package cli

import (
	"os"
	"path/filepath"
	"strings"
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

// Saving the session tries a bounded number of temporary names: when
// every name it draws is taken (here the same one, planted) it stops with
// an error naming the directory, instead of looping for ever (review r2
// L7), and a name that becomes free is used.
func TestCreateSessionTempIsBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "session.json")
	if err := os.WriteFile(p+".taken.tmp", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tries := 0
	f, err := createTempBeside(p, func() string { tries++; return "taken" })
	if err == nil {
		f.Close()
		t.Fatal("created a file over a taken name")
	}
	if tries != tempTries || !strings.Contains(err.Error(), "all taken") || !strings.Contains(err.Error(), filepath.Dir(p)) {
		t.Fatalf("after %d tries: %v", tries, err)
	}
	tries = 0
	f, err = createTempBeside(p, func() string {
		if tries++; tries < 3 {
			return "taken"
		}
		return "free"
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if f.Name() != p+".free.tmp" || tries != 3 {
		t.Fatalf("created %s after %d tries", f.Name(), tries)
	}
}
