package cli

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/tlsconf"
)

// TestCLIFilesRefuseDevices: the exec CA file (and the caller's CA
// bundle), `audit verify --jwks` and `login --id-token-file` pointed at /dev/zero are refused
// at once, not read without end.
func TestCLIFilesRefuseDevices(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /dev/zero")
	}
	zero := filepath.Join(t.TempDir(), "zero")
	os.Symlink("/dev/zero", zero)
	within := func(name string, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still reading /dev/zero after 5s", name)
			return nil
		}
	}
	if err := within("exec ca_file", func() error { _, _, err := childCAEnv(zero, ""); return err }); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("exec ca_file: %v, want ErrNotRegular", err)
	}
	if err := within("login --id-token-file", func() error { _, err := readIDToken(zero, strings.NewReader("")); return err }); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("id token file: %v, want ErrNotRegular", err)
	}
	if err := within("--jwks", func() error { _, _, err := verificationKeys(nil, nil, zero); return err }); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("--jwks: %v, want ErrNotRegular", err)
	}
	// A caller bundle on a device is skipped (the system bundle or the
	// CA alone is used), not read.
	files, err := tlsconf.GenerateDev(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	ca := files.CAFile
	if err := within("caller bundle", func() error {
		_, cleanup, err := childCAEnv(ca, zero)
		if cleanup != nil {
			cleanup()
		}
		return err
	}); err != nil {
		t.Errorf("caller bundle on /dev/zero: %v", err)
	}
}
