package safefile

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestReadRegularAndSymlink(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.pem")
	if err := os.WriteFile(p, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Kubernetes layout: name -> ..data/name, ..data -> timestamped dir.
	ts := filepath.Join(dir, "..2026_01_01")
	os.Mkdir(ts, 0o700)
	os.WriteFile(filepath.Join(ts, "b.pem"), []byte("world"), 0o600)
	os.Symlink("..2026_01_01", filepath.Join(dir, "..data"))
	os.Symlink(filepath.Join("..data", "b.pem"), filepath.Join(dir, "b.pem"))
	for path, want := range map[string]string{p: "hello", filepath.Join(dir, "b.pem"): "world"} {
		b, err := ReadFile(path)
		if err != nil || string(b) != want {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", path, b, err, want)
		}
	}
}

func TestReadRefusesDevicesAndDirs(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no /dev/zero")
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "tls.crt")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", "/dev/null", link, dir} {
		done := make(chan error, 1)
		go func() { _, err := ReadFile(p); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("ReadFile(%s) = %v; want ErrNotRegular", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("ReadFile(%s) did not return", p)
		}
	}
}

func TestReadRefusesFIFOWithoutBlocking(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no FIFOs")
	}
	p := filepath.Join(t.TempDir(), "fifo")
	if err := mkfifo(p); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadFile(p); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReadFile(fifo) = %v; want ErrNotRegular", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFile on a FIFO blocked")
	}
}

func TestReadRefusesSocket(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix sockets")
	}
	p := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Skip(err)
	}
	defer l.Close()
	if _, err := ReadFile(p); !errors.Is(err, ErrNotRegular) {
		t.Errorf("ReadFile(socket) = %v; want ErrNotRegular", err)
	}
}

func TestReadCapsSize(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big")
	if err := os.WriteFile(p, bytes.Repeat([]byte{'a'}, MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile(MaxSize+1) = %v; want ErrTooLarge", err)
	}
	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, bytes.Repeat([]byte{'a'}, MaxSize), 0o600)
	if b, err := ReadFile(ok); err != nil || len(b) != MaxSize {
		t.Errorf("ReadFile(MaxSize) = %d bytes, %v", len(b), err)
	}
	if _, err := Read(ok, 10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read(max 10) = %v; want ErrTooLarge", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestErrorNamesTheKind(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no /dev/zero")
	}
	for p, want := range map[string]string{"/dev/zero": "a character device", t.TempDir(): "a directory"} {
		if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("ReadFile(%s) = %v, want it to name %s and the path", p, err, want)
		}
	}
}
