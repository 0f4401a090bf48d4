package auditsink_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// TestAnchorFileRefusesSymlink: a symlink at audit.anchor.file is refused
// at start, and one planted after start is not followed: the file it
// points at is never appended to.
func TestAnchorFileRefusesSymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks")
	}
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.txt")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	anchor := filepath.Join(dir, "anchors.jsonl")
	os.Symlink(victim, anchor)
	_, err := auditsink.NewAnchorTarget(auditsink.AnchorConfig{File: anchor})
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlink at start: %v, want a refusal naming the symlink", err)
	}
	// Dangling symlink: the same (O_CREAT would create its target).
	dangling := filepath.Join(dir, "dangling.jsonl")
	os.Symlink(filepath.Join(dir, "created-through-link"), dangling)
	if _, err := auditsink.NewAnchorTarget(auditsink.AnchorConfig{File: dangling}); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("dangling symlink at start: %v", err)
	}
	// A directory at the path is not a file.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	if _, err := auditsink.NewAnchorTarget(auditsink.AnchorConfig{File: sub}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory at start: %v", err)
	}

	// Started on a real path; the path is then swapped for a symlink.
	real := filepath.Join(dir, "real.jsonl")
	tg, err := auditsink.NewAnchorTarget(auditsink.AnchorConfig{File: real})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	head := &audit.SignedHead{Seq: 1, Hash: strings.Repeat("a", 64)}
	if err := tg.Deliver(context.Background(), []auditsink.Record{{Head: head}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(real); !strings.Contains(string(b), `"head"`) {
		t.Fatalf("anchor file holds %q", b)
	}
	os.Remove(real)
	os.Symlink(victim, real)
	err = tg.Deliver(context.Background(), []auditsink.Record{{Head: head}})
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlink planted after start: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	// A FIFO planted at the path: refused, not waited on.
	os.Remove(real)
	if err := mkfifo(real); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tg.Deliver(context.Background(), []auditsink.Record{{Head: head}}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("FIFO at the anchor path accepted")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Deliver blocked on a FIFO")
	}
}

// TestFileSinkRefusesSymlink: a file sink's path that is a symlink is
// refused, not followed.
func TestFileSinkRefusesSymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks")
	}
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.txt")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	path := filepath.Join(dir, "trail.jsonl")
	os.Symlink(victim, path)
	_, err := auditsink.NewTarget(auditsink.SinkConfig{Type: "file", Path: path})
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("file sink on a symlink: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("victim changed: %q", b)
	}
}
