package auditsink_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// `config check` judged a file sink's path not at all (it did not build
// file sinks, which creates their directory and file), so a path under a
// regular file, a directory, a symlink or a file holding a line that does
// not read passed the check and stopped serve. CheckTargets now says what
// start would, and creates and changes nothing.
func TestCheckTargetsJudgesAFileSinkPathAsStartDoes(t *testing.T) {
	valid := func(t *testing.T, path string) {
		tr := newTrail(t, 1000)
		m := tr.start(t, []auditsink.SinkConfig{{Type: "file", Path: path}}, auditsink.AnchorConfig{})
		tr.add(t, 3, "written by a sink")
		waitFor(t, "3 events shipped", func() bool { return m.Status()[0].Cursor.Seq == 3 })
		m.Close()
	}
	write := func(t *testing.T, path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		unix  bool
		setup func(t *testing.T, dir string) string // returns the sink's path
		want  string                                // in the error; "" passes
	}{
		{"new file in new directories", false, func(t *testing.T, dir string) string {
			return filepath.Join(dir, "a", "b", "audit.jsonl")
		}, ""},
		{"existing file written by a sink", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			valid(t, p)
			return p
		}, ""},
		{"a last line a crash left unfinished", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			valid(t, p)
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"seq":4,"ha`)
			f.Close()
			return p
		}, ""},
		{"empty file", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			write(t, p, "")
			return p
		}, ""},
		{"directory under a regular file", false, func(t *testing.T, dir string) string {
			write(t, filepath.Join(dir, "plain"), "x")
			return filepath.Join(dir, "plain", "sub", "audit.jsonl")
		}, "is not a directory"},
		{"path is a directory", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, "not a regular file"},
		{"path is a symlink to a file", true, func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "real.jsonl")
			write(t, target, "")
			p := filepath.Join(dir, "audit.jsonl")
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "symlink"},
		{"path is a dangling symlink", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			if err := os.Symlink(filepath.Join(dir, "nowhere"), p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "symlink"},
		{"path is a FIFO", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			if err := mkfifo(p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "not a regular file"},
		{"a file every local user may write", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			write(t, p, "")
			if err := os.Chmod(p, 0o666); err != nil {
				t.Fatal(err)
			}
			return p
		}, "writable by every local user"},
		{"a directory every local user may write", true, func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "open")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "sub", "audit.jsonl")
		}, "writable by every local user"},
		{"an event line that does not read", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			write(t, p, "{\"seq\":\"one\",\"hash\":1}\n")
			return p
		}, "move it aside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.unix && runtime.GOOS == "windows" {
				t.Skip("symlinks, FIFOs and modes need Unix here")
			}
			dir := t.TempDir()
			path := tc.setup(t, dir)
			before := tree(t, dir)
			sink := auditsink.SinkConfig{Type: "file", Path: path}
			errs := auditsink.CheckTargets([]auditsink.SinkConfig{sink}, auditsink.AnchorConfig{}, nil)
			if after := tree(t, dir); after != before {
				t.Errorf("the check changed the directory:\nbefore %s\nafter  %s", before, after)
			}
			target, startErr := auditsink.NewTarget(sink)
			if startErr == nil {
				target.Close()
			}
			if tc.want == "" {
				if len(errs) != 0 || startErr != nil {
					t.Fatalf("check: %v; start: %v; want both to pass", errs, startErr)
				}
				return
			}
			if startErr == nil {
				t.Fatalf("start passed; the case is wrong")
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) || !strings.HasPrefix(errs[0].Error(), "audit.sinks[0] (file): ") {
				t.Fatalf("check: %v; want one error naming the entry and %q (start: %v)", errs, tc.want, startErr)
			}
		})
	}
}

// tree lists what is under dir with each entry's size and mode, to see
// that a check changed nothing.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + strconv.FormatInt(fi.Size(), 10) + "; ")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
