// Package cli holds pamctl's commands: one file per command, each an
// Options struct, a NewCmdX constructor that only parses flags, and an xRun
// function that calls into broker/, proxy/ or the app and prints. Config is
// read once through viper into a typed Config.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// Exit codes. They are part of the CLI contract.
const (
	ExitOK              = 0
	ExitError           = 1
	ExitUsage           = 2
	ExitUnreachable     = 3
	ExitUnauthenticated = 4
	ExitForbidden       = 5
	ExitNotFound        = 6
	ExitConflict        = 7
	ExitPending         = 8
)

// ExitError carries a specific exit code with a message already printed or
// to print.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode attaches an exit code to err.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Main runs the CLI and returns the process exit code.
func Main() int {
	ios := iostreams.System()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewCmdRoot(NewFactory(ios))
	root.SetArgs(os.Args[1:])
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCodeOf(err)
	if code < 0 { // a child killed by a signal
		code = ExitError
	}
	if !errors.Is(err, errSilent) {
		printError(ios, err)
	}
	return code
}

func printError(ios *iostreams.IOStreams, err error) {
	st := ios.Styles()
	fmt.Fprintf(ios.ErrOut, "%s %s\n", st.Error.Render("error:"), errorText(err))
	if os.Getenv("PAMCTL_DEBUG") != "" {
		var be *broker.Error
		if errors.As(err, &be) && be.Err != nil {
			fmt.Fprintf(ios.ErrOut, "%s %s\n", st.Muted.Render("detail:"), errorText(be.Err))
		}
	}
}

// errorText is err's message made safe to print: errors quote servers,
// IdPs and config files, so control characters are escaped, and lines after
// the first are indented so no line of a message can pass for another
// "error:" line.
func errorText(err error) string {
	return strings.ReplaceAll(iostreams.EscapeLines(err.Error()), "\n", "\n  ")
}

func exitCodeOf(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return codeFor(ae.Code)
	}
	var be *broker.Error
	if errors.As(err, &be) {
		return codeFor(be.Code)
	}
	if errors.Is(err, api.ErrUnreachable) {
		return ExitUnreachable
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		return ExitUsage
	}
	return ExitError
}

func codeFor(c broker.Code) int {
	switch c {
	case broker.CodeUnauthenticated, broker.CodeStepUpRequired:
		return ExitUnauthenticated
	case broker.CodeForbidden:
		return ExitForbidden
	case broker.CodeNotFound:
		return ExitNotFound
	case broker.CodeConflict:
		return ExitConflict
	case broker.CodePending:
		return ExitPending
	case broker.CodeInvalid:
		return ExitUsage
	}
	return ExitError
}

// NewCmdRoot builds the command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "pamctl",
		Short: "Privileged access management for AI agents",
		Long: `pamctl is a broker and an OpenAI-compatible proxy in one binary.
People and workloads log in with OIDC, ask for just-in-time scoped grants,
approvers review them, and agents use the short-lived token against the
proxy, which swaps it for the vaulted provider key, enforces prompt rules,
masks sensitive data and records everything in a hash-chained audit trail.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetIn(f.IO.In)
	pf := root.PersistentFlags()
	pf.StringVar(&f.ConfigFile, "config", "", "config file (default $XDG_CONFIG_HOME/pamctl/config.yaml; env PAMCTL_CONFIG)")
	pf.String("server", "", "broker URL for the CLI (env PAMCTL_SERVER; default http://127.0.0.1:8700)")
	pf.String("ca-file", "", "PEM CA certificates to trust for the broker besides the system roots (env PAMCTL_CA_FILE)")
	pf.String("client-cert-file", "", "PEM client certificate for a broker that requires one (mTLS; env PAMCTL_CLIENT_CERT_FILE)")
	pf.String("client-key-file", "", "PEM key of --client-cert-file (env PAMCTL_CLIENT_KEY_FILE)")
	pf.String("data-dir", "", "data directory (env PAMCTL_DATA_DIR; default $XDG_DATA_HOME/pamctl)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return withCode(ExitUsage, fmt.Errorf("%w\nSee '%s --help'", err, c.CommandPath()))
	})
	f.flags = pf

	root.AddCommand(
		NewCmdServe(f, nil),
		NewCmdConfig(f),
		NewCmdLogin(f, nil),
		NewCmdLogout(f, nil),
		NewCmdWhoami(f, nil),
		NewCmdSessions(f, nil, nil),
		NewCmdProxies(f, nil, nil),
		NewCmdRequest(f, nil),
		NewCmdRequests(f, nil),
		NewCmdReview(f, true, nil),
		NewCmdReview(f, false, nil),
		NewCmdToken(f, nil),
		NewCmdExec(f, nil),
		NewCmdRevoke(f, nil),
		NewCmdVault(f),
		NewCmdKeys(f),
		NewCmdStore(f),
		NewCmdAudit(f),
		NewCmdVersion(f),
		NewCmdCompletion(f),
	)
	usageArgs(root)
	return root
}

// usageArgs makes argument-count errors exit with ExitUsage, like flag errors.
func usageArgs(c *cobra.Command) {
	if orig := c.Args; orig != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := orig(cmd, args); err != nil {
				return withCode(ExitUsage, fmt.Errorf("%w\nSee '%s --help'", err, cmd.CommandPath()))
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}
