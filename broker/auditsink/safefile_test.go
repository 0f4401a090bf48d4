//go:build unix

// Unix only: /dev/zero and FIFOs (syscall.Mkfifo) exist only there.

package auditsink

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
)

// TestConfigFilesRefuseDevices: headers_file and ca_file pointed at
// /dev/zero (directly or by a symlink) or a FIFO are refused at once,
// not read without end or waited on.
func TestConfigFilesRefuseDevices(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", link, fifo} {
		for name, read := range map[string]func() error{
			"headers_file": func() error { _, err := readHeaders(p); return err },
			"ca_file":      func() error { _, err := tlsConfig(p, ""); return err },
		} {
			done := make(chan error, 1)
			go func() { done <- read() }()
			select {
			case err := <-done:
				if !errors.Is(err, safefile.ErrNotRegular) {
					t.Errorf("%s %s: %v, want ErrNotRegular", name, p, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s %s: still reading after 5s", name, p)
			}
		}
	}
}
