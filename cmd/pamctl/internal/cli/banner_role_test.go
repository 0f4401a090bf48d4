package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// TestDevBannerBrokerRoleHasNoProxy: `serve --dev --role broker` runs no
// proxy listener, so its banner names no proxy URL and suggests no exec
// (which needs one); the default role still shows both.
func TestDevBannerBrokerRoleHasNoProxy(t *testing.T) {
	t.Setenv("PAMCTL_MASTER_KEY", "")
	for _, role := range []string{RoleBroker, RoleAll} {
		t.Run(role, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
			ios, _, _, errOut := iostreams.Test()
			f := NewFactory(ios)
			cfg, err := LoadConfig("", nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg.DataDir = filepath.Join(dir, "data")
			cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
			if role == RoleBroker {
				cfg.Proxy.Addr = "127.0.0.1:8701" // the default: never bound in this role
			}
			cfg.MasterKeyFile = ""
			cfg.Role = role
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			app, err := NewApp(ctx, cfg, AppOptions{Dev: true})
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			printDevBanner(f, app)
			out := errOut.String()
			hasProxy := strings.Contains(out, "proxy    ") || strings.Contains(out, ":8701") || strings.Contains(out, "pamctl exec")
			if role == RoleBroker && hasProxy {
				t.Fatalf("broker-role banner names a proxy:\n%s", out)
			}
			if role == RoleAll && !hasProxy {
				t.Fatalf("all-role banner lacks the proxy:\n%s", out)
			}
			if !strings.Contains(out, "broker   "+app.BrokerURL()) || !strings.Contains(out, "pamctl login") {
				t.Fatalf("banner lacks the broker or login:\n%s", out)
			}
		})
	}
}
