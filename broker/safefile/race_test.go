//go:build linux || darwin || freebsd || netbsd || openbsd

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The file read is the file judged. CheckPerms judged a path and Open
// then opened it by path again: whoever could change what the path names
// between the two (another user who controls a component, or a race in a
// directory judged) had pamctl read a file the rules refuse. Each test
// swaps something on the way once, at a point of the walk (testHook),
// for a file the rules refuse (world-writable, or another user's), and
// the read must refuse or return the bytes of the file judged.

// onceAt runs swap the first time the walk reaches at (a resolved path,
// or "open": after judging, before opening), and reports whether it ran.
func onceAt(t *testing.T, at string, swap func()) *bool {
	t.Helper()
	ran := new(bool)
	testHook = func(where string) {
		if where == at && !*ran {
			*ran = true
			swap()
		}
	}
	t.Cleanup(func() { testHook = nil })
	return ran
}

// readJudged reads p and fails the test on the swapped-in file's bytes.
func readJudged(t *testing.T, p string, ran *bool) {
	t.Helper()
	b, err := Read(p, 0)
	if !*ran {
		t.Fatal("the swap never ran: the test no longer reaches its point of the walk")
	}
	switch {
	case err == nil && string(b) == "judged":
	case err != nil && (errors.Is(err, ErrSwappable) || errors.Is(err, ErrNotRegular)):
	case err == nil:
		t.Fatalf("Read(%s) = %q: read the file swapped in after judging, not the one judged", p, b)
	default:
		t.Fatalf("Read(%s): %v; want the judged file's bytes or a refusal", p, err)
	}
}

// base is a root-owned (0755) directory with no symlink in its path, so
// that the walk's resolved paths are its own.
func base(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return mk(t, filepath.Join(d, "base"), os.ModeDir|0o755)
}

func write(t *testing.T, p, content string, m os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
	return p
}

// swappedIn makes a directory dir holding k, "swapped", that the rules
// refuse: the file world-writable or another user's, or (way) the
// directory itself world-writable or another user's.
type swappedIn struct {
	name string
	way  bool // the directory is refused, not the file
	make func(t *testing.T, dir string)
}

func swappedIns(t *testing.T) []swappedIn {
	ins := []swappedIn{
		{"world-writable file", false, func(t *testing.T, dir string) {
			write(t, filepath.Join(mk(t, dir, os.ModeDir|0o755), "k"), "swapped", 0o666)
		}},
		{"world-writable directory", true, func(t *testing.T, dir string) {
			write(t, filepath.Join(mk(t, dir, os.ModeDir|0o777), "k"), "swapped", 0o600)
		}},
	}
	if os.Geteuid() != 0 {
		return ins
	}
	chown := func(t *testing.T, p string) {
		if err := os.Chown(p, otherID, otherID); err != nil {
			t.Fatal(err)
		}
	}
	return append(ins,
		swappedIn{"another user's file", false, func(t *testing.T, dir string) {
			chown(t, write(t, filepath.Join(mk(t, dir, os.ModeDir|0o755), "k"), "swapped", 0o644))
		}},
		swappedIn{"another user's directory", true, func(t *testing.T, dir string) {
			d := mk(t, dir, os.ModeDir|0o755)
			write(t, filepath.Join(d, "k"), "swapped", 0o600)
			chown(t, d)
		}})
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// The file itself renamed over after it was judged: what was opened is
// judged again, by fstat.
func TestReadRaceFileSwappedAfterJudging(t *testing.T) {
	for _, in := range swappedIns(t) {
		if in.way {
			continue // the file is swapped, not its way
		}
		t.Run(in.name, func(t *testing.T) {
			b := base(t)
			p := write(t, filepath.Join(b, "k"), "judged", 0o600)
			in.make(t, filepath.Join(b, "evil"))
			readJudged(t, p, onceAt(t, "open", func() { rename(t, filepath.Join(b, "evil", "k"), p) }))
		})
	}
}

// The directory holding the file replaced by another, after the walk
// (at "open") or as soon as the walk looked it up (between components):
// the walk holds the directory it judged open, and opens the file in it.
func TestReadRaceDirectorySwappedAfterJudging(t *testing.T) {
	for _, in := range swappedIns(t) {
		for _, at := range []string{"open", "conf"} {
			t.Run(in.name+"/at "+at, func(t *testing.T) {
				b := base(t)
				conf := mk(t, filepath.Join(b, "conf"), os.ModeDir|0o755)
				p := write(t, filepath.Join(conf, "k"), "judged", 0o600)
				other := filepath.Join(b, "other")
				in.make(t, other)
				if at == "conf" {
					at = conf
				}
				readJudged(t, p, onceAt(t, at, func() {
					rename(t, conf, filepath.Join(b, "conf.old"))
					rename(t, other, conf)
				}))
			})
		}
	}
}

// A symlink on the way repointed after the walk looked it up (before it
// is read) or after the walk (at "open"): the link read is the link
// judged (on Linux readlinkat of the O_PATH fd the walk opened), and the
// file is opened in the directory it led to.
func TestReadRaceSymlinkSwappedAfterJudging(t *testing.T) {
	for _, in := range swappedIns(t) {
		for _, at := range []string{"open", "cur"} {
			t.Run(in.name+"/at "+at, func(t *testing.T) {
				b := base(t)
				good := mk(t, filepath.Join(b, "good"), os.ModeDir|0o755)
				write(t, filepath.Join(good, "k"), "judged", 0o600)
				other := filepath.Join(b, "other")
				in.make(t, other)
				cur := link(t, good, filepath.Join(b, "cur"))
				if at == "cur" {
					at = cur
				}
				readJudged(t, filepath.Join(cur, "k"), onceAt(t, at, func() {
					link(t, other, filepath.Join(b, "cur.new"))
					rename(t, filepath.Join(b, "cur.new"), cur)
				}))
			})
		}
	}
}

// The walk closes every directory and link it opens, on every way out.
func TestWalkClosesWhatItOpens(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	b := base(t)
	k := write(t, filepath.Join(b, "k"), "judged", 0o600)
	link(t, "k", filepath.Join(b, "l"))
	link(t, "loop", filepath.Join(b, "loop"))
	ww := mk(t, filepath.Join(b, "ww"), os.ModeDir|0o777)
	write(t, filepath.Join(ww, "k"), "x", 0o600)
	paths := []string{k, filepath.Join(b, "l"), filepath.Join(b, "loop"), filepath.Join(b, "none"),
		filepath.Join(k, "x"), filepath.Join(ww, "k"), b, b + "/..", "/dev/null", "k"}
	count := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	t.Chdir(b)
	run := func() {
		for _, p := range paths {
			Read(p, 0)
			CheckPerms(p, Secret)
			CheckWay(p)
		}
	}
	run() // anything opened once, lazily, by the runtime
	before := count()
	for range 20 {
		run()
	}
	if after := count(); after != before {
		t.Fatalf("%d fds open after 20 rounds, %d before: the walk leaks", after, before)
	}
}
