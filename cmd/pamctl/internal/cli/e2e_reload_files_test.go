//go:build unix

// Unix only: modes.

package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A reload judges the files the new configuration names as a start does
// (CheckNamedFiles): a secret file others may read, or a file others could
// replace, is logged and written to the config.reloaded event
// (file_problems), not passed over in silence until the next start refuses
// it. The reload still applies what it applies (policies, rules, masking):
// those files are read where they are used, and refused there.
// file_problems is a JSON list, one entry a file (review: the entries
// were joined with "; ", so a path holding "; " read as two entries; one
// holding a line break was split in two).
func TestEndToEndReloadReportsLooseNamedFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(reloadConfigV1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := reloadServer(t, file)
	// Serve watches the file once it runs: a login waits for that.
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")

	// Directories whose names read as a separator of entries.
	readable := filepath.Join(dir, "a; notify.x: is fine; b", "slack-hook")
	writable := filepath.Join(dir, "c\nnotify.y: d", "teams-hook")
	for p, mode := range map[string]os.FileMode{readable: 0o644, writable: 0o666} {
		if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("https://hooks.example.com/secret-path\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	notify := "notify:\n  slack: { webhook_url_file: " + strconv.Quote(readable) + " }\n  teams: { webhook_url_file: " + strconv.Quote(writable) + " }\n"
	rewrite(t, file, reloadConfigV1+notify)
	waitForReload(t, s, "applied", 1)
	got := lastReload(t, s).Details["file_problems"]
	var entries []string
	if err := json.Unmarshal([]byte(got), &entries); err != nil {
		t.Fatalf("file_problems is not a JSON list: %v: %q", err, got)
	}
	if len(entries) != 2 {
		t.Fatalf("file_problems has %d entries for 2 files: %q", len(entries), entries)
	}
	for _, want := range [][2]string{{"notify.slack.webhook_url_file: ", readable}, {"notify.teams.webhook_url_file: ", writable}} {
		if !slices.ContainsFunc(entries, func(e string) bool { return strings.HasPrefix(e, want[0]) && strings.Contains(e, want[1]) }) {
			t.Fatalf("no entry of file_problems names %q and %q: %q", want[0], want[1], entries)
		}
	}
	if strings.Contains(got, "secret-path") {
		t.Fatalf("file_problems shows a file's content: %q", got)
	}

	// Fixed, the next reload says nothing of them.
	for _, p := range []string{readable, writable} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(t, file, reloadConfigV1+notify+"# fixed\n")
	waitForReload(t, s, "applied", 2)
	if p, ok := lastReload(t, s).Details["file_problems"]; ok {
		t.Fatalf("file_problems after the fix: %q", p)
	}
}

// A config named by a relative path (--config c.yaml) reloads on a change
// of the file as an absolute one does (black-box red team: the watch
// reported ./c.yaml, which was compared with c.yaml, and no edit was ever
// applied; SIGHUP was).
func TestEndToEndReloadFollowsARelativeConfigPath(t *testing.T) {
	t.Chdir(t.TempDir())
	const file = "config.yaml"
	if err := os.WriteFile(file, []byte(reloadConfigV1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := reloadServer(t, file)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	rewrite(t, file, reloadConfigV1+"# edited\n")
	waitForReload(t, s, "applied", 1)
	if err := os.WriteFile(file, []byte(reloadConfigV1+"# edited in place\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitForReload(t, s, "applied", 2)
}
