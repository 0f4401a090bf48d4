//go:build unix

// Unix only: /dev/zero and FIFOs (syscall.Mkfifo) exist only there.

package oidc

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClientSecretFileRefusesFIFOWithoutBlocking: a client_secret_file
// that is a FIFO (or a symlink to /dev/zero) is refused at once; opening
// a FIFO must not wait for a writer.
func TestClientSecretFileRefusesFIFOWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "secret")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", zero)
	for _, p := range []string{fifo, zero} {
		done := make(chan error, 1)
		go func() { _, err := ReadClientSecretFile(p); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v, want not a regular file", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadClientSecretFile blocked", p)
		}
	}
}
