package cli

import (
	"errors"
	"fmt"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/memlimit"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/store"
)

// ServeOptions are the inputs of `pamctl serve`.
type ServeOptions struct {
	f   *Factory
	Dev bool
	// TLS (with Dev) serves both listeners over TLS with throwaway certificates.
	TLS bool
	// Ready, when set, is told the listening addresses (tests).
	Ready func(*App)
}

// NewCmdServe builds `pamctl serve`.
func NewCmdServe(f *Factory, runF func(*cobra.Command, *ServeOptions) error) *cobra.Command {
	o := &ServeOptions{f: f}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker and the proxy",
		Long: `Run the broker (identity, requests, approvals, tokens, vault; default
127.0.0.1:8700) and the OpenAI-compatible proxy (default 127.0.0.1:8701) in
one process, with an owner-only admin socket in the data dir.

--role splits them for a team deployment (docs/deployment.md): broker runs
everything but the proxy listener; proxy runs the data path only, next to
the agents, enrolled with the broker at server: by the workload identity in
proxy.identity.id_token_file. The default, all, is both in one process.

--dev needs no IdP and no OpenAI key: a temporary data dir (unless
--data-dir), an embedded development OIDC issuer, a permissive dev policy,
and a built-in mock upstream used while no provider key is vaulted.
--dev --tls also serves both listeners over HTTPS with a throwaway CA and
certificate for localhost, 127.0.0.1 and ::1 written to the data dir's
tls/ folder; the banner names the --ca-file the CLI needs.`,
		Example: `  pamctl serve --dev
  pamctl serve --dev --tls
  pamctl serve --config /etc/pamctl/config.yaml
  pamctl serve --role broker --config /etc/pamctl/broker.yaml
  pamctl serve --role proxy --server https://pamctl.example.com`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd, o)
			}
			return serveRun(cmd, o)
		},
	}
	cmd.Flags().BoolVar(&o.Dev, "dev", false, "development mode: embedded IdP, dev policy, mock upstream")
	cmd.Flags().BoolVar(&o.TLS, "tls", false, "with --dev: serve HTTPS with a throwaway CA and certificates (real ones: broker.tls, proxy.tls)")
	cmd.Flags().String("broker-addr", "", "broker listen address (default 127.0.0.1:8700)")
	cmd.Flags().String("proxy-addr", "", "proxy listen address (default 127.0.0.1:8701)")
	cmd.Flags().String("master-key-file", "", "master key file (default $XDG_CONFIG_HOME/pamctl/master.key)")
	cmd.Flags().String("log-format", "", "log format: text or json (default: text on a terminal)")
	cmd.Flags().String("role", "", "what to run: all, broker or proxy (default all)")
	return cmd
}

func serveRun(cmd *cobra.Command, o *ServeOptions) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	ios := o.f.IO
	var cleanup func()
	if o.TLS && !o.Dev {
		return withCode(ExitUsage, errors.New("--tls generates throwaway certificates and only goes with --dev; for real certificates set broker.tls and proxy.tls (cert_file, key_file) in the config"))
	}
	if o.Dev && cfg.Role == RoleProxy {
		return withCode(ExitUsage, errors.New("--dev runs a broker with its own development issuer; a proxy enrolls with a real broker: drop --dev and set server: and proxy.identity.id_token_file"))
	}
	if o.Dev {
		if cleanup, err = applyDevDefaults(cmd, cfg); err != nil {
			return err
		}
		defer cleanup()
		if o.TLS {
			if err := applyDevTLS(cfg); err != nil {
				return err
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return withCode(ExitUsage, fmt.Errorf("invalid configuration%s:\n%w", settingSources(cfg.File, err), err))
	}
	if err := cfg.CheckPrivate(); err != nil {
		return withCode(ExitUsage, err)
	}
	logger := newLogger(cfg, ios.IsStderrTTY(), ios.ErrOut)
	ml, err := memlimit.Apply(cfg.MemoryLimit, os.DirFS("/"))
	if err != nil {
		logger.Warn("memory limit: none set", "err", err)
	} else if ml.Bytes > 0 {
		logger.Debug("memory limit", "bytes", ml.Bytes, "from", ml.Source)
	}
	if fc, err := memlimit.DecideFloor(cfg.MemoryFloor, os.Getenv("GOGC"), ml.Bytes); err != nil {
		return withCode(ExitUsage, err) // Validate refuses it first
	} else if fc.Bytes > 0 {
		floor := memlimit.StartFloor(fc.Bytes)
		defer floor.Stop()
		logger.Debug("heap floor", "bytes", fc.Bytes, "from", fc.Source, "capped_by_memory_limit", fc.Capped)
	}
	app, err := NewApp(ctx, cfg, AppOptions{Dev: o.Dev, Logger: logger})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return withCode(ExitConflict, err)
		}
		return err
	}
	if o.Dev {
		printDevBanner(o.f, app)
	} else {
		switch cfg.Role {
		case RoleBroker:
			logger.Info("pamctl serving", "role", cfg.Role, "broker", app.BrokerURL(), "data_dir", cfg.DataDir)
		case RoleProxy:
			logger.Info("pamctl serving", "role", cfg.Role, "proxy", app.ProxyURL(), "broker", cfg.Server, "data_dir", cfg.DataDir)
		default:
			logger.Info("pamctl serving", "broker", app.BrokerURL(), "proxy", app.ProxyURL(), "data_dir", cfg.DataDir)
		}
	}
	if o.Ready != nil {
		o.Ready(app)
	}
	return app.Serve(ctx, o.f.reloader(cmd, o.Dev, app.BrokerURL, cfg))
}

// reloader re-reads and validates the config; serve applies it on SIGHUP
// or when the file changes, and keeps the old one when it is invalid.
func (f *Factory) reloader(cmd *cobra.Command, dev bool, brokerURL func() string, start *Config) func() (*Config, error) {
	return func() (*Config, error) {
		cfg, err := LoadConfig(f.ConfigFile, cmd.Flags())
		if err != nil {
			return nil, err
		}
		if dev {
			addDevIssuerAndPolicy(cfg, brokerURL())
			if start.Broker.TLS.Enabled() && !cfg.Broker.TLS.Enabled() && !cfg.Proxy.TLS.Enabled() { // --tls's dev certificates
				cfg.Broker.TLS, cfg.Proxy.TLS, cfg.CAFile = start.Broker.TLS, start.Proxy.TLS, start.CAFile
			}
		}
		return cfg, cfg.Validate()
	}
}

// applyDevDefaults points dev mode at a temporary data dir (unless one was
// given); NewApp adds the embedded issuer and the dev policy once it knows
// the broker's address.
func applyDevDefaults(cmd *cobra.Command, cfg *Config) (func(), error) {
	cleanup := func() {}
	// The dev issuer logs in anyone as anyone: it must never sit beside
	// real issuers or be reachable from another machine.
	if len(cfg.Issuers) > 0 {
		return nil, withCode(ExitUsage, errors.New("--dev adds an auto-consent development issuer and cannot run with `issuers:` configured; drop --dev or use a config without issuers"))
	}
	for _, a := range []struct{ name, addr string }{{"broker", cfg.Broker.Addr}, {"proxy", cfg.Proxy.Addr}} {
		host, _, err := net.SplitHostPort(a.addr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return nil, withCode(ExitUsage, fmt.Errorf("--dev listens on loopback only; the %s address %q is not", a.name, a.addr))
		}
	}
	if !cmd.Flags().Changed("data-dir") && os.Getenv("PAMCTL_DATA_DIR") == "" {
		dir, err := os.MkdirTemp("", "pamctl-dev-")
		if err != nil {
			return nil, err
		}
		cfg.DataDir = dir
		cfg.MasterKeyFile = "" // ephemeral master key: nothing outlives the process
		cleanup = func() { os.RemoveAll(dir) }
	}
	devPlainUI(cfg)
	return cleanup, nil
}

// applyDevTLS writes (or reuses) the dev CA and certificate in the data
// dir and serves both listeners with them. The broker trusts the dev CA
// too: it fetches its own embedded issuer's keys over HTTPS.
func applyDevTLS(cfg *Config) error {
	files, err := tlsconf.GenerateDev(filepath.Join(cfg.DataDir, "tls"))
	if err != nil {
		return err
	}
	t := tlsconf.Config{CertFile: files.CertFile, KeyFile: files.KeyFile}
	cfg.Broker.TLS, cfg.Proxy.TLS = t, t
	cfg.CAFile = files.CAFile
	return nil
}

// DevIssuerName names the embedded development issuer.
const DevIssuerName = "dev"

func addDevIssuerAndPolicy(cfg *Config, brokerURL string) {
	cfg.Server = brokerURL
	has := false
	for _, is := range cfg.Issuers {
		has = has || is.Name == DevIssuerName
	}
	if !has {
		cfg.Issuers = append(cfg.Issuers, oidc.IssuerConfig{Name: DevIssuerName, URL: brokerURL + DevIssuerPath, ClientID: "pamctl"})
	}
	if len(cfg.Policies) == 0 {
		cfg.Policies = policy.Set{policy.DevPolicy()}
	}
	// The web approval page is on in dev mode, at the dev broker's URL.
	if cfg.UI.PublicURL == "" {
		cfg.UI.Enabled, cfg.UI.PublicURL = true, brokerURL
	}
	devPlainUI(cfg)
}

// devPlainUI lets the web page run on plain loopback http in dev mode, a
// trial on one person's machine (see ui.insecure_plaintext).
func devPlainUI(cfg *Config) { cfg.UI.InsecurePlaintext = true }

func newLogger(cfg *Config, tty bool, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(cfg.Log.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	// Log lines quote text from outside (an upstream's status line or
	// header, a display name, a model's words) and are read in terminals
	// (kubectl logs, journalctl). slog's JSON handler writes bidi
	// controls and invisible characters raw: JSONWriter rewrites them as
	// \u escapes, so programs decode the exact text and people see
	// \u202e. The text handler quotes any value with a character that is
	// not printable (strconv's \u escapes) already.
	if cfg.Log.Format == "json" || (cfg.Log.Format == "" && !tty) {
		return slog.New(slog.NewJSONHandler(safetext.JSONWriter(w), opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func printDevBanner(f *Factory, app *App) {
	ios := f.IO
	st := ios.Styles()
	w := ios.ErrOut
	fmt.Fprintln(w, st.Bold.Render("pamctl dev server")+st.Muted.Render(" — not for production: embedded IdP, permissive policy, throwaway data"))
	brokerOnly := app.cfg.Role == RoleBroker // no proxy listener runs here
	fmt.Fprintf(w, "  broker   %s\n", app.BrokerURL())
	if !brokerOnly {
		fmt.Fprintf(w, "  proxy    %s\n", app.ProxyURL())
	}
	if u := app.uiURL(); u != "" {
		fmt.Fprintf(w, "  ui       %s (the approval page; the dev issuer asks who you are)\n", u)
	}
	fmt.Fprintf(w, "  data     %s\n", app.cfg.DataDir)
	if app.cfg.CAFile != "" && app.brokerTLS != nil {
		fmt.Fprintf(w, "  ca       %s (the CLI needs it: --ca-file)\n", app.cfg.CAFile)
	}
	if app.hasProviderKey() {
		fmt.Fprintf(w, "  upstream %s\n\n", "configured upstreams (a provider key is vaulted)")
	} else {
		fmt.Fprintf(w, "  upstream %s\n\n", st.Warning.Render("built-in mock (no provider key vaulted); to use OpenAI: printf %s \"$OPENAI_API_KEY\" | pamctl vault set openai --data-dir "+app.cfg.DataDir))
	}
	fmt.Fprintln(w, "In another terminal, try:")
	serverFlag := ""
	if app.BrokerURL() != "http://"+DefaultBrokerAddr {
		serverFlag = " --server " + app.BrokerURL()
	}
	if app.cfg.CAFile != "" && app.brokerTLS != nil {
		serverFlag += " --ca-file " + shellQuote(app.cfg.CAFile)
	}
	cmds := []string{
		"pamctl login --user alice --groups ml" + serverFlag,
		"pamctl request --scope model:gpt-4o-mini --reason 'first try'" + serverFlag,
		"pamctl exec" + serverFlag + " -- sh -c 'curl -s $OPENAI_BASE_URL/chat/completions -H \"Authorization: Bearer $OPENAI_API_KEY\" -H content-type:application/json -d \"{\\\"model\\\":\\\"gpt-4o-mini\\\",\\\"messages\\\":[{\\\"role\\\":\\\"user\\\",\\\"content\\\":\\\"hello\\\"}]}\"'",
		"pamctl audit tail" + serverFlag,
	}
	if brokerOnly {
		cmds = append(cmds[:2], cmds[3]) // exec needs a proxy: none runs here
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "  %s\n", st.Code.Render(c))
	}
	if brokerOnly {
		fmt.Fprintln(w, st.Muted.Render("  (--role broker: no proxy listener here; model calls go through a `pamctl serve --role proxy` enrolled with this broker)"))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, st.Muted.Render("Ctrl-C stops the server and deletes its temporary data."))
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:+@=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// gracePeriod bounds how long in-flight requests may take at shutdown.
const gracePeriod = 10 * time.Second
