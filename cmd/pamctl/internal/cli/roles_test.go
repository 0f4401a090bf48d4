package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

func TestRoleConfig(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "# empty\n"), nil)
	if err != nil || cfg.Role != RoleAll {
		t.Fatalf("default role: %q %v", cfg.Role, err)
	}
	for _, tc := range []struct{ body, want string }{
		{"role: edge\n", `role: "edge" must be all, broker or proxy`},
		{"role: proxy\n", "proxy.identity.id_token_file is required with role: proxy"},
		{"proxy: { revocation_staleness: 100ms }\n", "proxy.revocation_staleness: 100ms is below the minimum 1s"},
		{"proxy: { revocation_staleness: 2h }\n", "proxy.revocation_staleness: 2h is above the maximum 1h"},
		{"proxy: { spool_max: -1 }\n", "proxy.spool_max must not be negative"},
	} {
		cfg, err := LoadConfig(writeConfig(t, tc.body), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.body, err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	cfg, err = LoadConfig(writeConfig(t, "role: proxy\nserver: https://pamctl.example.com\nproxy:\n  identity: { id_token_file: /var/run/secrets/tokens/pamctl }\n  revocation_staleness: 10s\n  spool_max: 1073741824\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Proxy.Identity.IDTokenFile != "/var/run/secrets/tokens/pamctl" || cfg.Proxy.RevocationStaleness.String() != "10s" || cfg.Proxy.SpoolMax != 1<<30 {
		t.Fatalf("decoded: %+v", cfg.Proxy)
	}
	t.Setenv("PAMCTL_ROLE", "broker")
	if cfg, err := LoadConfig(writeConfig(t, "# empty\n"), nil); err != nil || cfg.Role != RoleBroker {
		t.Fatalf("PAMCTL_ROLE: %q %v", cfg.Role, err)
	}
}

func TestServeRoleFlagAndProxiesFlags(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := NewFactory(ios)
	var role string
	cmd := NewCmdServe(f, func(c *cobra.Command, o *ServeOptions) error {
		cfg, err := f.Config(c)
		if err == nil {
			role = cfg.Role
		}
		return err
	})
	usageArgs(cmd)
	cmd.SetArgs([]string{"--role", "proxy"})
	if err := cmd.Execute(); err != nil || role != RoleProxy {
		t.Fatalf("serve --role proxy: %q %v", role, err)
	}

	var got *ProxiesOptions
	var rev *ProxiesRevokeOptions
	run := func(args ...string) error {
		got, rev = nil, nil
		cmd := NewCmdProxies(f,
			func(_ *cobra.Command, o *ProxiesOptions) error { got = o; return nil },
			func(_ *cobra.Command, o *ProxiesRevokeOptions) error { rev = o; return nil })
		usageArgs(cmd)
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		return cmd.Execute()
	}
	if err := run("-o", "json"); err != nil || got == nil || got.Output != "json" {
		t.Fatalf("proxies -o json: %v %+v", err, got)
	}
	if err := run("ls"); err != nil || got == nil {
		t.Fatalf("proxies ls: %v", err)
	}
	if err := run("revoke", "p1"); err != nil || rev == nil || rev.ID != "p1" {
		t.Fatalf("proxies revoke: %v %+v", err, rev)
	}
	for _, bad := range [][]string{{"revoke"}, {"revoke", "a", "b"}, {"-o", "yaml"}} {
		if err := run(bad...); exitCodeOf(err) != ExitUsage || rev != nil {
			t.Fatalf("%v: %v", bad, err)
		}
	}
}
