package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
)

// SessionsOptions are the inputs of `pamctl sessions`.
type SessionsOptions struct {
	f      *Factory
	All    bool
	User   string
	Ended  bool
	Admin  bool
	Output string
}

// NewCmdSessions builds `pamctl sessions` and `pamctl sessions revoke`.
func NewCmdSessions(f *Factory, runF func(*cobra.Command, *SessionsOptions) error, revokeF func(*cobra.Command, *SessionsRevokeOptions) error) *cobra.Command {
	o := &SessionsOptions{f: f}
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List broker sessions: yours, or (admins) anyone's",
		Long: `List broker sessions. Each login opens one, recorded by the broker with
the client's address and user agent; it ends at logout, when revoked, after
sessions.idle_timeout without use, or at sessions.max_lifetime.

Without flags you see your own active sessions. --all and --user SUBJECT
list anyone's and need the admin socket (--admin, or no session at hand on
the server's host) or the sessions:admin scope.`,
		Example: `  pamctl sessions
  pamctl sessions --user alice --ended -o json
  pamctl sessions --admin            # on the server host, as its owner`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return sessionsRun(cmd, o)
		},
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "everyone's sessions (admin)")
	cmd.Flags().StringVar(&o.User, "user", "", "the sessions of this subject (admin, unless it is you)")
	cmd.Flags().BoolVar(&o.Ended, "ended", false, "include sessions that ended or expired in the last 24 hours")
	cmd.Flags().BoolVar(&o.Admin, "admin", false, "act as the local admin through the running server's admin socket")
	addOutputFlag(cmd, &o.Output)
	cmd.AddCommand(NewCmdSessionsRevoke(f, revokeF))
	return cmd
}

// sessionsClient is the session client, or the admin socket with --admin
// or when there is no usable session.
func sessionsClient(f *Factory, cfg *Config, forceAdmin bool) (c *api.Client, mine *SessionFile, admin bool, err error) {
	if !forceAdmin {
		c, mine, err = f.BrokerClient(cfg)
		if err == nil {
			return c, mine, false, nil
		}
	}
	if ac := f.AdminClient(cfg); ac != nil {
		return ac, nil, true, nil
	}
	if forceAdmin {
		return nil, nil, false, withCode(ExitUnreachable, fmt.Errorf("--admin needs a running server's admin socket in %s (run this on the server host as its owner, with the same --data-dir)", cfg.DataDir))
	}
	return nil, nil, false, err
}

func sessionsRun(cmd *cobra.Command, o *SessionsOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, mine, admin, err := sessionsClient(o.f, cfg, o.Admin)
	if err != nil {
		return err
	}
	rs, err := c.Sessions(cmd.Context(), o.User, o.All, o.Ended, admin)
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	ios := o.f.IO
	if o.Output == "json" {
		if rs == nil {
			rs = []*broker.SessionRecord{}
		}
		return ios.JSON(rs)
	}
	if len(rs) == 0 {
		ios.Notef("No sessions.")
		return nil
	}
	st := ios.Styles()
	t := ios.NewTable("ID", "SUBJECT", "ISSUER", "STATE", "CLIENT", "USER AGENT", "CREATED", "LAST USED", "ENDS")
	t.Style(3, func(s string) string {
		if s == broker.SessionActive {
			return st.Success.Render(s)
		}
		return st.Muted.Render(s)
	})
	now := o.f.Now()
	for _, r := range rs {
		id := r.ID
		if mine != nil && mine.ID == r.ID {
			id += " (this)"
		}
		ends := r.ExpiresAt
		if r.IdleExpiresAt != nil && r.IdleExpiresAt.Before(ends) {
			ends = *r.IdleExpiresAt
		}
		endCol := "in " + humanDuration(ends.Sub(now))
		if r.EndedAt != nil {
			endCol = "ended " + humanDuration(now.Sub(*r.EndedAt)) + " ago"
		} else if !now.Before(ends) {
			endCol = "ended"
		}
		t.Row(id, r.Identity.Subject, r.Identity.Issuer, r.State, dash(r.ClientAddr), dash(truncate(r.UserAgent, 32)),
			humanDuration(now.Sub(r.CreatedAt))+" ago", humanDuration(now.Sub(r.LastUsedAt))+" ago", endCol)
	}
	return t.Render()
}

// SessionsRevokeOptions are the inputs of `pamctl sessions revoke`.
type SessionsRevokeOptions struct {
	f      *Factory
	ID     string
	User   string
	Grants bool
	Reason string
	Admin  bool
	Output string
	StepUp StepUpOptions
}

// NewCmdSessionsRevoke builds `pamctl sessions revoke`.
func NewCmdSessionsRevoke(f *Factory, runF func(*cobra.Command, *SessionsRevokeOptions) error) *cobra.Command {
	o := &SessionsRevokeOptions{f: f}
	cmd := &cobra.Command{
		Use:   "revoke [ID | --user SUBJECT]",
		Short: "End sessions at once (and with --grants, their owners' live grants)",
		Long: `End one session by ID, or every active session of --user SUBJECT. The
broker refuses their tokens from the next call. With --grants the live
grants of the sessions' owners are revoked too, so the proxy refuses their
access tokens as well. You may end your own sessions; anyone else's needs
the admin socket (--admin), or the sessions:admin scope and a recent login
at the identity provider (step-up: pamctl asks to log in again). Every session and
grant ended is an audit event (session.revoked, grant.revoked).`,
		Example: `  pamctl sessions revoke ses_3f9c2a71d04b8e65a1c0f7d2
  pamctl sessions revoke --user alice --grants --reason "laptop stolen"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.ID = args[0]
			}
			if (o.ID == "") == (o.User == "") {
				return withCode(ExitUsage, errors.New("name one session ID or --user SUBJECT (list sessions with: pamctl sessions)"))
			}
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return sessionsRevokeRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.User, "user", "", "end every active session of this subject")
	cmd.Flags().BoolVar(&o.Grants, "grants", false, "also revoke the live grants of the sessions' owners")
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why (recorded in the audit trail)")
	cmd.Flags().BoolVar(&o.Admin, "admin", false, "act as the local admin through the running server's admin socket")
	addStepUpFlags(cmd, &o.StepUp, false)
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func sessionsRevokeRun(cmd *cobra.Command, o *SessionsRevokeOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, _, admin, err := sessionsClient(o.f, cfg, o.Admin)
	if err != nil {
		return err
	}
	var res *broker.RevokeResult
	// Ending another person's sessions or grants needs a recent login
	// (step-up); the target follows the action's name ("ending another
	// person's session ses_…").
	o.StepUp.Target = func(context.Context) string {
		what := o.ID
		if o.User != "" {
			what = "(every session of " + o.User + ")"
		}
		if o.Grants {
			what += " and their owners' grants"
		}
		return what
	}
	err = o.f.withStepUp(cmd, cfg, c, &o.StepUp, func() (err error) {
		res, err = c.RevokeSessions(cmd.Context(), api.RevokeSessionsRequest{ID: o.ID, User: o.User, Grants: o.Grants, Reason: o.Reason}, admin)
		return err
	})
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	ios := o.f.IO
	if o.Output == "json" {
		return ios.JSON(res)
	}
	msg := fmt.Sprintf("Ended %d session(s)", len(res.Sessions))
	if len(res.Sessions) > 0 {
		msg += ": " + strings.Join(res.Sessions, ", ")
	}
	if o.Grants {
		msg += fmt.Sprintf("; revoked %d grant(s)", len(res.Grants))
		if len(res.Grants) > 0 {
			msg += ": " + strings.Join(res.Grants, ", ")
		}
	}
	ios.Successf("%s", msg)
	return nil
}
