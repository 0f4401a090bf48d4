package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/link"
)

// ProxiesOptions are the inputs of `pamctl proxies`.
type ProxiesOptions struct {
	f      *Factory
	Output string
}

// NewCmdProxies builds `pamctl proxies` (alias `proxies ls`) and
// `pamctl proxies revoke ID`.
func NewCmdProxies(f *Factory, runF func(*cobra.Command, *ProxiesOptions) error, revokeF func(*cobra.Command, *ProxiesRevokeOptions) error) *cobra.Command {
	o := &ProxiesOptions{f: f}
	run := func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(o.Output); err != nil {
			return err
		}
		if runF != nil {
			return runF(cmd, o)
		}
		return proxiesRun(cmd, o)
	}
	cmd := &cobra.Command{
		Use:   "proxies",
		Short: "List the local proxies enrolled with this broker",
		Long: `List the local proxies (pamctl serve --role proxy) enrolled with this
broker: their workload identity, version, address, the configuration
version they run, and when they last made contact. FINGERPRINT is how the
broker's /metrics names a proxy (pamctl_proxy_last_contact_timestamp_seconds),
which does not show enrollment ids. Runs on the broker host
as its owner, through the admin socket in the data dir.`,
		Example: `  pamctl proxies
  pamctl proxies -o json
  pamctl proxies revoke 3f9c2a71d04b8e65`,
		Args: cobra.NoArgs,
		RunE: run,
	}
	addOutputFlag(cmd, &o.Output)
	ls := &cobra.Command{Use: "ls", Short: "List enrolled proxies (same as pamctl proxies)", Args: cobra.NoArgs, RunE: run}
	addOutputFlag(ls, &o.Output)
	cmd.AddCommand(ls, NewCmdProxiesRevoke(f, revokeF))
	return cmd
}

func proxiesAdmin(f *Factory, cfg *Config) (*api.Client, error) {
	c := f.AdminClient(cfg)
	if c == nil {
		return nil, withCode(ExitUnreachable, fmt.Errorf("no running broker's admin socket in %s: run this on the broker host as its owner, with the same --data-dir", cfg.DataDir))
	}
	return c, nil
}

func proxiesRun(cmd *cobra.Command, o *ProxiesOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, err := proxiesAdmin(o.f, cfg)
	if err != nil {
		return err
	}
	es, err := c.Proxies(cmd.Context())
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	ios := o.f.IO
	if o.Output == "json" {
		if es == nil {
			es = []*link.Enrollment{}
		}
		out := make([]listedProxy, 0, len(es))
		for _, e := range es {
			e.PublicKey = nil // not useful to people; keep listings short
			out = append(out, listedProxy{e, link.Fingerprint(e.ID)})
		}
		return ios.JSON(out)
	}
	if len(es) == 0 {
		ios.Notef("No proxies enrolled.")
		return nil
	}
	st := ios.Styles()
	t := ios.NewTable("ID", "FINGERPRINT", "IDENTITY", "STATE", "VERSION", "ADDRESS", "CONFIG", "LAST CONTACT", "UNTIL")
	t.Style(3, func(s string) string {
		if s == "active" {
			return st.Success.Render(s)
		}
		return st.Muted.Render(s)
	})
	now := o.f.Now()
	for _, e := range es {
		state := "active"
		switch {
		case e.RevokedAt != nil:
			state = "revoked"
		case !now.Before(e.ExpiresAt):
			state = "expired"
		}
		t.Row(e.ID, link.Fingerprint(e.ID), e.Subject, state, dash(e.Version), dash(e.Address), dash(e.ConfigVersion),
			humanDuration(now.Sub(e.LastContact))+" ago", e.ExpiresAt.Local().Format("2006-01-02 15:04"))
	}
	return t.Render()
}

// listedProxy is an enrollment as `pamctl proxies -o json` lists it, with
// the fingerprint the broker's /metrics names it by.
type listedProxy struct {
	*link.Enrollment
	Fingerprint string `json:"fingerprint"`
}

// ProxiesRevokeOptions are the inputs of `pamctl proxies revoke`.
type ProxiesRevokeOptions struct {
	f      *Factory
	ID     string
	Output string
}

// NewCmdProxiesRevoke builds `pamctl proxies revoke ID`.
func NewCmdProxiesRevoke(f *Factory, runF func(*cobra.Command, *ProxiesRevokeOptions) error) *cobra.Command {
	o := &ProxiesRevokeOptions{f: f}
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Cut one local proxy off at once",
		Long: `Revoke a local proxy's enrollment: its revocation stream ends at once, so
it stops serving calls (503) and every later call it makes to the broker is
refused. Recorded as a proxy.revoked audit event. To let it serve again,
start it with a fresh data dir so it enrolls anew.`,
		Example: `  pamctl proxies revoke 3f9c2a71d04b8e65`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return withCode(ExitUsage, errors.New("name the proxy ID to revoke (list them with: pamctl proxies)"))
			}
			o.ID = args[0]
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return proxiesRevokeRun(cmd, o)
		},
	}
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func proxiesRevokeRun(cmd *cobra.Command, o *ProxiesRevokeOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, err := proxiesAdmin(o.f, cfg)
	if err != nil {
		return err
	}
	e, err := c.RevokeProxy(cmd.Context(), o.ID)
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	if o.Output == "json" {
		e.PublicKey = nil
		return o.f.IO.JSON(e)
	}
	o.f.IO.Successf("Revoked proxy %s (%s)", e.ID, e.Subject)
	return nil
}
