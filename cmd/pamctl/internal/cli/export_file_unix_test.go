//go:build !windows

package cli

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An export's --file ends private to pamctl's user whatever was there: a
// regular file is replaced whole (new inode, mode 0600), never written
// through a link, never left half-written; pipes and devices are written
// as they are.
func TestExportFileIsPrivateAndWhole(t *testing.T) {
	fill := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	failing := func(w io.Writer) error {
		io.WriteString(w, "half")
		return errors.New("store went away")
	}
	private := func(t *testing.T, p, want string) {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s is %v, want a regular file with mode 0600", p, fi.Mode())
		}
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Fatalf("%s holds %q, want %q", p, b, want)
		}
	}
	noTemps := func(t *testing.T, dir string) {
		t.Helper()
		m, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
		if len(m) > 0 {
			t.Fatalf("temporary files left: %v", m)
		}
	}

	t.Run("new file", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "trail.jsonl")
		old := syscall.Umask(0)
		err := writeExportFile(p, false, fill("line\n"))
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		private(t, p, "line\n")
	})
	t.Run("a readable file someone left, open elsewhere", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "trail.jsonl")
		if err := os.WriteFile(p, []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o644)
		reader, err := os.Open(p) // another user's descriptor, opened while it was 0644
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		if err := writeExportFile(p, false, fill("secret excerpt\n")); err != nil {
			t.Fatal(err)
		}
		private(t, p, "secret excerpt\n")
		if b, _ := io.ReadAll(reader); string(b) != "old\n" {
			t.Fatalf("a descriptor opened before the export reads %q: the export went into the old file", b)
		}
		noTemps(t, dir)
	})
	t.Run("a failed export keeps the old file", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "trail.jsonl")
		os.WriteFile(p, []byte("last week\n"), 0o600)
		if err := writeExportFile(p, false, failing); err == nil {
			t.Fatal("a failed export succeeded")
		}
		private(t, p, "last week\n")
		noTemps(t, dir)
	})
	t.Run("a link to a regular file", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "elsewhere")
		os.WriteFile(target, []byte("theirs\n"), 0o644)
		p := filepath.Join(dir, "trail.jsonl")
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		err := writeExportFile(p, false, fill("x\n"))
		if err == nil || exitCodeOf(err) != ExitUsage || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("export through a link: %v", err)
		}
		if b, _ := os.ReadFile(target); string(b) != "theirs\n" {
			t.Fatalf("the link's target now holds %q", b)
		}
		if fi, _ := os.Lstat(p); fi.Mode()&os.ModeSymlink == 0 {
			t.Fatal("the link was replaced")
		}
	})
	t.Run("a dangling link", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "trail.jsonl")
		os.Symlink(filepath.Join(dir, "nowhere"), p)
		if err := writeExportFile(p, false, fill("x\n")); err == nil {
			t.Fatal("export through a dangling link succeeded")
		}
		if _, err := os.Lstat(filepath.Join(dir, "nowhere")); err == nil {
			t.Fatal("the export created the link's target")
		}
	})
	t.Run("a directory", func(t *testing.T) {
		if err := writeExportFile(t.TempDir(), false, fill("x\n")); err == nil || !strings.Contains(err.Error(), "directory") {
			t.Fatalf("export to a directory: %v", err)
		}
	})
	t.Run("a device", func(t *testing.T) {
		if err := writeExportFile(os.DevNull, false, fill("x\n")); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Fatalf("%s is no longer a device: %v", os.DevNull, err)
		}
	})
	t.Run("a pipe", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Skip(err)
		}
		got := make(chan string)
		go func() {
			f, err := os.Open(p)
			if err != nil {
				got <- err.Error()
				return
			}
			b, _ := io.ReadAll(f)
			f.Close()
			got <- string(b)
		}()
		if err := writeExportFile(p, false, fill("piped\n")); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s != "piped\n" {
			t.Fatalf("the pipe's reader got %q", s)
		}
	})
}

// The command itself: an export over a file another user could read ends
// private, and through a link to a file refuses.
func TestAuditExportFileReplacesALooseFile(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "trail.jsonl")
	os.WriteFile(p, []byte("old\n"), 0o644)
	os.Chmod(p, 0o644)
	s.as(t, "admin", "", "audit", "export", "--file", p).must(t, "export over a loose file")
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after the export %s is %v (%v), want mode 0600", p, fi.Mode(), err)
	}
	link := filepath.Join(dir, "link.jsonl")
	os.Symlink(p, link)
	if r := s.as(t, "admin", "", "audit", "export", "--file", link); r.code != ExitUsage || !strings.Contains(r.err, "symbolic link") {
		t.Fatalf("export through a link: %+v", r)
	}
}

// Red team (bb5): another user's FIFO, a directory others may write, a
// block device: the export goes nowhere another user chose.
func TestExportFileRefusesPlacesOthersChose(t *testing.T) {
	fill := func(w io.Writer) error { _, err := io.WriteString(w, "trail\n"); return err }
	t.Run("a directory others may write", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "open")
		os.Mkdir(dir, 0o777)
		os.Chmod(dir, 0o777)
		p := filepath.Join(dir, "trail.jsonl")
		if err := writeExportFile(p, false, fill); err == nil || exitCodeOf(err) != ExitUsage {
			t.Fatalf("export into a 0777 directory: %v", err)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Fatal("the export was written there")
		}
	})
	t.Run("a sticky directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "sticky")
		os.Mkdir(dir, 0o777)
		os.Chmod(dir, 0o777|os.ModeSticky)
		if err := writeExportFile(filepath.Join(dir, "trail.jsonl"), false, fill); err != nil {
			t.Fatalf("export into a sticky directory: %v", err)
		}
	})
	t.Run("another user's FIFO", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "fifo.jsonl")
		if err := syscall.Mkfifo(p, 0o622); err != nil {
			t.Skip(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Skipf("cannot give the FIFO to another user: %v", err)
		}
		os.Chmod(p, 0o622)
		done := make(chan struct{})
		go func() { // a reader, so a wrongly opened FIFO does not block
			defer close(done)
			if f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
				time.Sleep(200 * time.Millisecond)
				f.Close()
			}
		}()
		err := writeExportFile(p, false, fill)
		<-done
		if err == nil || exitCodeOf(err) != ExitUsage || !strings.Contains(err.Error(), "another user") {
			t.Fatalf("export into another user's FIFO: %v", err)
		}
	})
	t.Run("a block device", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "blk")
		// loop device 200: absent on any test machine, so a wrong open
		// fails rather than writing a disk.
		if err := syscall.Mknod(p, syscall.S_IFBLK|0o600, int(7<<8|200)); err != nil {
			t.Skipf("cannot make a block device node: %v", err)
		}
		if err := writeExportFile(p, false, fill); err == nil || !strings.Contains(err.Error(), "block device") {
			t.Fatalf("export to a block device: %v", err)
		}
	})
}
