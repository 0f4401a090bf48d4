package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `config check` judges a file sink's path as serve's start does (it had
// passed a path serve could not open); a good path passes and is not
// created by the check.
func TestConfigCheckJudgesAFileSinkPath(t *testing.T) {
	dir := t.TempDir()
	base := "data_dir: " + filepath.Join(dir, "data") + "\nmaster_key_file: " + filepath.Join(dir, "master.key") + "\n"
	isDir := filepath.Join(dir, "a-directory")
	if err := os.Mkdir(isDir, 0o700); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "new", "audit.jsonl")
	for _, tc := range []struct {
		path string
		code int
	}{
		{isDir, ExitUsage},
		{fresh, ExitOK},
	} {
		r := runCLI(t, "config", "check", "--config", writeConfig(t, base+"audit:\n  sinks:\n    - { type: file, path: '"+tc.path+"' }\n"))
		if r.code != tc.code {
			t.Fatalf("path %s: exit %d, want %d:\n%s", tc.path, r.code, tc.code, r.err)
		}
		if tc.code == ExitUsage && (!strings.Contains(r.err, "audit.sinks[0] (file)") || !strings.Contains(r.err, "not a regular file")) {
			t.Fatalf("the error does not name the entry and the fault:\n%s", r.err)
		}
	}
	if _, err := os.Stat(filepath.Dir(fresh)); err == nil {
		t.Fatal("config check created the file sink's directory")
	}
}
