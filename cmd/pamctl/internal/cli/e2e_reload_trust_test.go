//go:build unix

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A reload of a config file that became writable by others is refused
// and the running config kept, loudly (the trail's config.reloaded,
// refused, names the file, why and the fix); the file's owner is in every
// config.reloaded event (black-box red team: another local user rewrote
// the policy, the reload picked it up, and the event had no actor).
func TestEndToEndReloadRefusesAConfigOthersMayWrite(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(reloadConfigV1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := reloadServer(t, file)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")

	// The V2 policy (embeddings for ml) lands in a file anyone may write,
	// as an editor's rename over the old one.
	if err := os.WriteFile(file+".tmp", []byte(reloadConfigV2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file+".tmp", 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
	waitForReload(t, s, "refused", 1)
	waitForReload(t, s, "applied", 0)
	e := lastReload(t, s)
	for _, want := range []string{file, "writable by every local user", "chmod o-w " + file} {
		if !strings.Contains(e.Error, want) {
			t.Errorf("the refused reload's error does not say %q: %q", want, e.Error)
		}
	}
	owner := fmt.Sprintf("uid %d", os.Geteuid())
	if e.Details["trigger"] != "file change" || e.Details["file_owner"] != owner {
		t.Errorf("refused reload details %v; want trigger file change, file_owner %q", e.Details, owner)
	}
	if r := s.as(t, "alice", "", "request", "--scope", "model:text-embedding-3-small", "--nowait"); r.code != ExitForbidden {
		t.Fatalf("the policy of a file others may write was applied: %+v", r)
	}
	// Loudly: health says it (degraded, not unready: the old config
	// serves) until a reload applies.
	ready, lines := s.app.health.Report()
	if !ready || !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "config_reload: degraded") }) {
		t.Errorf("health after a refused reload: ready %v, %q", ready, lines)
	}

	// Fixed (chmod does not change the content: the next write does).
	rewrite(t, file, reloadConfigV2)
	waitForReload(t, s, "applied", 1)
	if got := lastReload(t, s).Details["file_owner"]; got != owner {
		t.Errorf("applied reload file_owner %q, want %q", got, owner)
	}
	s.as(t, "alice", "", "request", "--scope", "model:text-embedding-3-small", "--nowait").must(t, "after the fix")
	if _, lines := s.app.health.Report(); slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "config_reload") }) {
		t.Errorf("health after an applied reload: %q", lines)
	}
}
