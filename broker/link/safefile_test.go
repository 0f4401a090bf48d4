package link

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
)

// TestIDTokenFileRefusesDevices: proxy.identity.id_token_file pointed at
// /dev/zero is refused, not read without end.
func TestIDTokenFileRefusesDevices(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /dev/zero")
	}
	link := filepath.Join(t.TempDir(), "token")
	os.Symlink("/dev/zero", link)
	c, err := NewClient(ClientOptions{BrokerURL: "http://127.0.0.1:1", IDTokenFile: link, Spool: &memSpool{}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.login(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, safefile.ErrNotRegular) {
			t.Fatalf("login: %v, want ErrNotRegular", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("login still reading /dev/zero after 5s")
	}
}
