package auditsink_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// TestAnchorFileJudgedAsAFileSinkIs: audit.anchor.file was judged for
// symlinks and its directory's existence, not for who else may write it:
// an anchor file every local user may write, or one in a directory others
// may write without the sticky bit (they could rename their own file over
// it), passed config check and start, so another local user could drop
// the signed heads the off-host copy is for. Both now refuse it, as they
// refuse such a file sink path, naming the fix.
func TestAnchorFileJudgedAsAFileSinkIs(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("modes need Unix here")
	}
	mkdir := func(t *testing.T, d string, mode os.FileMode) {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the anchor file
		want  []string                              // in the error; nil passes
	}{
		{"a private directory", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "anchors.jsonl")
		}, nil},
		{"an existing private file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "anchors.jsonl")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, nil},
		{"a sticky directory every local user may write", func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "shared")
			mkdir(t, d, 0o777|os.ModeSticky)
			return filepath.Join(d, "anchors.jsonl")
		}, nil},
		{"a file every local user may write", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "anchors.jsonl")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, 0o666); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{"writable by every local user", "chmod"}},
		{"its directory every local user may write", func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "open")
			mkdir(t, d, 0o777)
			return filepath.Join(d, "anchors.jsonl")
		}, []string{"writable by every local user", "chmod"}},
		{"a directory above every local user may write", func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "open")
			mkdir(t, d, 0o777)
			mkdir(t, filepath.Join(d, "mnt"), 0o700)
			return filepath.Join(d, "mnt", "anchors.jsonl")
		}, []string{"writable by every local user", "chmod"}},
		{"a symlinked directory every local user may write", func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "open")
			mkdir(t, d, 0o777)
			if err := os.Symlink(d, filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "link", "anchors.jsonl")
		}, []string{"writable by every local user", "chmod"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tc.setup(t, dir)
			before := tree(t, dir)
			anchor := auditsink.AnchorConfig{File: path}
			errs := auditsink.CheckTargets(nil, anchor, nil)
			if after := tree(t, dir); after != before {
				t.Errorf("the check changed the directory:\nbefore %s\nafter  %s", before, after)
			}
			target, startErr := auditsink.NewAnchorTarget(anchor)
			if startErr == nil {
				target.Close()
			}
			if tc.want == nil {
				if len(errs) != 0 || startErr != nil {
					t.Fatalf("check: %v; start: %v; want both to pass", errs, startErr)
				}
				return
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "audit.anchor: ") {
				t.Fatalf("check: %v; want one error naming audit.anchor", errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs[0].Error(), w) {
					t.Errorf("check: %v; want %q in it", errs[0], w)
				}
				if startErr == nil || !strings.Contains(startErr.Error(), w) {
					t.Errorf("start: %v; want %q in it", startErr, w)
				}
			}
		})
	}
}
