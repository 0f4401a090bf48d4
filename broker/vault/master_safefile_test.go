package vault_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/vault"
)

// TestMasterKeyFileRefusesDevicesAndHugeFiles: the master key file
// pointed at /dev/zero or holding megabytes is refused, not read whole.
func TestMasterKeyFileRefusesDevicesAndHugeFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /dev/zero")
	}
	dir := t.TempDir()
	zero := filepath.Join(dir, "master.key")
	os.Symlink("/dev/zero", zero)
	done := make(chan error, 1)
	go func() { _, err := vault.LoadMasterKey("", zero); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, safefile.ErrNotRegular) {
			t.Fatalf("master key on /dev/zero: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LoadMasterKey still reading /dev/zero after 5s")
	}
	big := filepath.Join(dir, "big.key")
	os.WriteFile(big, []byte(strings.Repeat(" ", 8<<10)+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), 0o600)
	if _, err := vault.LoadMasterKey("", big); !errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("8 KiB master key file: %v, want ErrTooLarge", err)
	}
}
