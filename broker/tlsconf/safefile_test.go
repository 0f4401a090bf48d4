package tlsconf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/tlsconf/tlstest"
)

// TestReloadRefusesDevicesAndHugeFiles: a certificate, key or client CA
// path pointed at /dev/zero, a FIFO, a file over safefile.MaxSize or a
// file other local users could replace is refused without reading it whole (nor blocking), reported once, and
// the certificate in force keeps serving.
func TestReloadRefusesDevicesAndHugeFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /dev/zero and FIFOs")
	}
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	c1, k1 := ca.Issue(t, "v1", time.Now().Add(time.Hour))
	cfg := writePair(t, dir, c1, k1)
	cfg.ClientCAFile = filepath.Join(dir, "client-ca.PEM")
	replace(t, cfg.ClientCAFile, ca.PEM)
	ev := newEvents()
	s, err := NewServer(cfg, ev.opts())
	if err != nil {
		t.Fatal(err)
	}
	huge := append(bytes.Clone(c1), bytes.Repeat([]byte("\n"), safefile.MaxSize)...)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile} {
		good, _ := os.ReadFile(file)
		for _, bad := range []struct {
			name string
			set  func()
			want error
		}{
			{"symlink to /dev/zero", func() { os.Remove(file); os.Symlink("/dev/zero", file) }, safefile.ErrNotRegular},
			{"symlink to a FIFO", func() { os.Remove(file); os.Symlink(fifo, file) }, safefile.ErrNotRegular},
			{"over 1 MiB", func() { os.Remove(file); replace(t, file, huge) }, safefile.ErrTooLarge},
			// Any local user could have put their own key or CA there.
			{"world writable", func() { os.Remove(file); replace(t, file, good); os.Chmod(file, 0o666) }, safefile.ErrSwappable},
			{"symlink into a world-writable directory", func() {
				os.Remove(file)
				ww := filepath.Join(t.TempDir(), "ww")
				os.Mkdir(ww, 0o700)
				os.Chmod(ww, 0o777)
				replace(t, filepath.Join(ww, "f"), good)
				os.Symlink(filepath.Join(ww, "f"), file)
			}, safefile.ErrSwappable},
		} {
			t.Run(filepath.Base(file)+"/"+bad.name, func(t *testing.T) {
				bad.set()
				before := ev.errCount()
				done := make(chan error, 1)
				go func() { done <- s.Reload() }()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("Reload did not return")
				}
				if !errors.Is(err, bad.want) || !strings.Contains(err.Error(), file) {
					t.Fatalf("Reload: %v, want %v naming %s", err, bad.want, file)
				}
				_ = s.Reload()
				if n := ev.errCount() - before; n != 1 {
					t.Fatalf("reported %d times, want once", n)
				}
				if s.Leaf().Subject.CommonName != "v1" {
					t.Fatal("certificate in force changed")
				}
				if _, err := NewServer(cfg, Options{Poll: -1}); !errors.Is(err, bad.want) {
					t.Fatalf("NewServer: %v, want %v", err, bad.want)
				}
			})
		}
		os.Remove(file)
		replace(t, file, good)
		if err := s.Reload(); err != nil {
			t.Fatalf("good files back: %v", err)
		}
	}
}

// TestClientFilesRefuseDevices: the client's CA file and mTLS certificate
// and key go through the same checks.
func TestClientFilesRefuseDevices(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /dev/zero")
	}
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	c, k := ca.Issue(t, "cli", time.Now().Add(time.Hour))
	cfg := writePair(t, dir, c, k)
	caFile := filepath.Join(dir, "ca.PEM")
	os.WriteFile(caFile, ca.PEM, 0o600)
	zero := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", zero)
	for name, f := range map[string]ClientFiles{
		"ca_file":   {CAFile: zero},
		"cert_file": {CAFile: caFile, CertFile: zero, KeyFile: cfg.KeyFile},
		"key_file":  {CAFile: caFile, CertFile: cfg.CertFile, KeyFile: zero},
	} {
		if _, err := NewClientConfig(f); !errors.Is(err, safefile.ErrNotRegular) {
			t.Errorf("%s on /dev/zero: %v, want ErrNotRegular", name, err)
		}
	}
	if _, err := HTTPClient(zero, time.Second); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("HTTPClient CA on /dev/zero: %v", err)
	}
	if _, err := NewClientConfig(ClientFiles{CAFile: caFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}); err != nil {
		t.Fatalf("good files: %v", err)
	}
}
