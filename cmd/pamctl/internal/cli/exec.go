package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/tlsconf"

	"github.com/pamctl/pamctl/broker/safefile"
)

// ExecOptions are the inputs of `pamctl exec`.
type ExecOptions struct {
	f           *Factory
	Request     string
	Scopes      []string
	TTL         time.Duration
	Reason      string
	KeepTracing bool
	Command     []string
}

// NewCmdExec builds `pamctl exec`.
func NewCmdExec(f *Factory, runF func(*cobra.Command, *ExecOptions) error) *cobra.Command {
	o := &ExecOptions{f: f}
	cmd := &cobra.Command{
		Use:   "exec [--request ID | --scope SCOPE ...] -- COMMAND [ARGS...]",
		Short: "Run a command with the proxy URL and a scoped token in its environment",
		Long: `Run COMMAND with OPENAI_BASE_URL set to the proxy and OPENAI_API_KEY set to
a scoped access token, for COMMAND only. With --request the token of that
grant is used; with --scope a request is made (and waited for) first;
with neither, your newest live grant is used.

With a custom CA (--ca-file, ca_file:, PAMCTL_CA_FILE) COMMAND also
trusts it: NODE_EXTRA_CA_CERTS names the CA file, and SSL_CERT_FILE,
REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE name a temporary owner-only bundle
of the system roots plus the CA (those variables replace the roots
rather than add to them), removed when COMMAND ends.

The OpenAI Agents SDK exports traces to api.openai.com with the API key as
bearer; exec sets OPENAI_AGENTS_DISABLE_TRACING=1 so the token never leaves
for OpenAI, unless --keep-tracing (route traces to the proxy's
/v1/traces/ingest instead: see docs/agents-sdk.md). COMMAND's exit code is
passed through.

COMMAND gets the grant's token, not your session: PAMCTL_* settings are
removed from its environment and PAMCTL_NO_SESSION=1 is set, so pamctl run
inside it refuses to use your session, the admin socket or the data dir
(it cannot approve, deny, revoke, request or read the audit trail as you).
A process running as your OS user can still read your files; what stops
it from approving with a copied session is step-up: exec marks your
session as running an agent, and such a session needs a new login before
approving or reading the audit trail (docs/sessions.md).`,
		Example: `  pamctl exec --scope model:gpt-4o -- python agent.py
  pamctl exec --request req_0123 -- env`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Request != "" && len(o.Scopes) > 0 {
				return withCode(ExitUsage, errors.New("use --request or --scope, not both"))
			}
			if cmd.ArgsLenAtDash() != 0 {
				return withCode(ExitUsage, errors.New("put the command after --, e.g. pamctl exec -- python agent.py"))
			}
			o.Command = args
			if runF != nil {
				return runF(cmd, o)
			}
			return execRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Request, "request", "", "use the token of this approved grant")
	cmd.Flags().StringArrayVar(&o.Scopes, "scope", nil, "request these scopes first and wait for approval")
	cmd.Flags().Var(durationFlag{&o.TTL}, "ttl", "with --scope: grant lifetime (e.g. 30m, 8h, 2d)")
	cmd.Flags().StringVar(&o.Reason, "reason", "", "with --scope: why you need it")
	cmd.Flags().BoolVar(&o.KeepTracing, "keep-tracing", false, "do not set OPENAI_AGENTS_DISABLE_TRACING=1")
	return cmd
}

func execRun(cmd *cobra.Command, o *ExecOptions) error {
	ctx := cmd.Context()
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, _, err := o.f.BrokerClient(cfg)
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	id := o.Request
	if len(o.Scopes) > 0 {
		in := api.CreateRequest{Scopes: o.Scopes, Reason: o.Reason}
		if o.TTL > 0 {
			in.TTL = o.TTL.String()
		}
		r, err := c.CreateRequest(ctx, in)
		if err != nil {
			return err
		}
		if r.State == broker.StatePending {
			if r, err = waitForDecision(ctx, o.f, c, r); err != nil {
				return err
			}
		}
		if r.State != broker.StateApproved {
			return withCode(ExitForbidden, fmt.Errorf("request %s was %s", r.ID, r.State))
		}
		id = r.ID
	}
	t, err := c.AccessToken(ctx, id)
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	proxyURL := info.ProxyURL
	if proxyURL == "" {
		// A central broker (role: broker) runs no proxy: agents use the
		// local proxy at proxy.addr (docs/deployment.md).
		proxyURL = "http://" + cfg.Proxy.Addr + "/v1"
	}
	// The child gets the grant's token and nothing of the person's session:
	// PAMCTL_* settings are dropped (childEnv) and EnvNoSession makes a
	// pamctl run in it refuse the session file, the admin socket and the
	// data dir. docs/sessions.md says what this stops and what it cannot.
	env := append(childEnv(os.Environ()), "OPENAI_BASE_URL="+proxyURL, "OPENAI_API_KEY="+t.Token, "PAMCTL_GRANT="+t.Request.ID, EnvNoSession+"=1")
	if !o.KeepTracing {
		env = append(env, "OPENAI_AGENTS_DISABLE_TRACING=1")
	}
	if cfg.CAFile != "" {
		caEnv, cleanup, err := childCAEnv(cfg.CAFile, os.Getenv("SSL_CERT_FILE"))
		if err != nil {
			return withCode(ExitUsage, err)
		}
		defer cleanup()
		env = append(env, caEnv...) // the last value of a variable wins
	}
	path, err := exec.LookPath(o.Command[0])
	if err != nil {
		return withCode(127, fmt.Errorf("exec: %s: command not found", o.Command[0]))
	}
	// The agent can read the session file (same OS user): from now on this
	// session cannot pass a step-up, so a copy cannot approve or read the
	// trail; the person logs in again for those (docs/sessions.md).
	if err := c.AgentStarted(ctx); err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			return unreachable(err, cfg.Server)
		}
		o.f.IO.Warnf("this broker cannot mark the session as running an agent (an older version): a copy of your session file can approve until approvals.reauth_after passes")
	}
	child := exec.CommandContext(ctx, path, o.Command[1:]...)
	child.Env = env
	child.Stdin, child.Stdout, child.Stderr = o.f.IO.In, o.f.IO.Out, o.f.IO.ErrOut
	child.Cancel = func() error { return child.Process.Signal(os.Interrupt) }
	child.WaitDelay = 5 * time.Second
	if err := child.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// The child already spoke for itself; pass its code through quietly.
			return &exitError{code: ee.ExitCode(), err: errSilent}
		}
		return fmt.Errorf("exec %s: %w", o.Command[0], err)
	}
	return nil
}

var errSilent = errors.New("")

// childEnv is the caller's environment without pamctl's own settings (the
// master key above all) and without any OpenAI credentials: the child gets
// exactly the proxy URL and the scoped token.
func childEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PAMCTL_") || strings.HasPrefix(name, "OPENAI_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// systemBundles are where Linux distributions and macOS keep the system
// roots as one PEM file (the list crypto/x509 reads on Linux).
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine, macOS
}

// childCAEnv makes a child process trust caFile as well as the system
// roots. NODE_EXTRA_CA_CERTS adds to Node's roots, so it gets the CA file
// itself; SSL_CERT_FILE (OpenSSL, Go, Python's ssl), REQUESTS_CA_BUNDLE
// (requests) and CURL_CA_BUNDLE (curl) replace the roots, so they get a
// bundle of the roots in force (the caller's SSL_CERT_FILE, else the
// system's) followed by the CA, in an owner-only temporary file that
// cleanup removes. Where no system bundle exists, the bundle is the CA alone.
func childCAEnv(caFile, callerBundle string) (env []string, cleanup func(), err error) {
	ca, err := safefile.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("ca_file: %w", err)
	}
	if _, err := tlsconf.RootCAs(caFile); err != nil {
		return nil, nil, fmt.Errorf("ca_file: %w", err)
	}
	abs, err := filepath.Abs(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("ca_file: %w", err)
	}
	var roots []byte
	for _, p := range append([]string{callerBundle}, systemBundles...) {
		if p == "" {
			continue
		}
		if b, err := safefile.Read(p, 16<<20); err == nil && len(b) > 0 { // a system bundle is a few hundred KiB
			roots = b
			break
		}
	}
	f, err := os.CreateTemp("", "pamctl-ca-*.pem") // mode 0600
	if err != nil {
		return nil, nil, fmt.Errorf("CA bundle for the command: %w", err)
	}
	cleanup = func() { os.Remove(f.Name()) }
	bundle := append(append(roots, '\n'), ca...)
	if _, err := f.Write(bundle); err != nil {
		f.Close()
		cleanup()
		return nil, nil, fmt.Errorf("CA bundle for the command: %w", err)
	}
	if err := f.Close(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("CA bundle for the command: %w", err)
	}
	return []string{
		"NODE_EXTRA_CA_CERTS=" + abs,
		"SSL_CERT_FILE=" + f.Name(),
		"REQUESTS_CA_BUNDLE=" + f.Name(),
		"CURL_CA_BUNDLE=" + f.Name(),
	}, cleanup, nil
}
