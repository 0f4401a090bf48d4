package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// Factory gives commands what they share: streams, config, clients.
type Factory struct {
	IO         *iostreams.IOStreams
	ConfigFile string
	// HTTP is the client for the broker API (tests swap it).
	HTTP *http.Client
	Now  func() time.Time
	// Terminal opens the controlling terminal for questions only the
	// person may answer (a step-up login's confirmation); nil: /dev/tty.
	// Tests swap it.
	Terminal func() (io.ReadWriteCloser, error)

	flags *pflag.FlagSet
	tls   tlsconf.ClientFiles // what HTTP's transport was built from, if pamctl built it
}

// NewFactory returns a factory over ios.
func NewFactory(ios *iostreams.IOStreams) *Factory {
	return &Factory{IO: ios, HTTP: &http.Client{Timeout: 90 * time.Second}, Now: time.Now}
}

// Config loads the configuration with cmd's flags on top.
func (f *Factory) Config(cmd *cobra.Command) (*Config, error) {
	cfg, err := LoadConfig(f.ConfigFile, cmd.Flags())
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	// ca_file: trust the system roots and that CA for the broker and the
	// IdP; client_cert_file: present that certificate when a server asks
	// (a client a test installed with its own transport is kept). A
	// command without them drops what an earlier one in this process set.
	want := cfg.BrokerClientFiles()
	none := tlsconf.ClientFiles{}
	switch {
	case f.HTTP == nil || (f.HTTP.Transport != nil && f.tls == none) || f.tls == want:
	case want == none:
		f.HTTP.Transport, f.tls = nil, none
	default:
		tr, err := cfg.brokerTransport()
		if err != nil {
			return nil, withCode(ExitUsage, err)
		}
		f.HTTP.Transport, f.tls = tr, want
	}
	return cfg, nil
}

// SessionFile is the CLI's stored broker session. The broker records the
// session (ID) and may end it earlier than ExpiresAt: logout, revocation,
// idle timeout.
type SessionFile struct {
	Server    string          `json:"server"`
	ID        string          `json:"id,omitempty"`
	Token     string          `json:"token"`
	Identity  broker.Identity `json:"identity"`
	ExpiresAt time.Time       `json:"expires_at"`
	// Login says how the session was made, so that a step-up (a sensitive
	// action after approvals.reauth_after) can log in again the same way.
	Login *LoginRecord `json:"login,omitempty"`
}

// LoginRecord is how a session was made: the issuer, the flow, and for a
// workload the ID token file (re-read on a step-up; never the token).
type LoginRecord struct {
	Issuer           string   `json:"issuer,omitempty"`
	Device           bool     `json:"device,omitempty"`
	IDTokenFile      string   `json:"id_token_file,omitempty"`
	ClientSecretFile string   `json:"client_secret_file,omitempty"`
	DevUser          string   `json:"dev_user,omitempty"` // serve --dev's issuer: who to auto-consent as
	DevGroups        []string `json:"dev_groups,omitempty"`
}

// SessionPath is where the session is kept (mode 0600).
func SessionPath() string { return filepath.Join(ConfigHome(), "pamctl", "session.json") }

// maxSessionFile bounds the session file: a few hundred bytes are
// written.
const maxSessionFile = 64 << 10

// loadSession reads the stored session, or nil when there is none. The
// file is read as pamctl's other secret files are (safefile): a FIFO, a
// device or a huge file in its place, or a file or directory on its way
// that another user could have written, is refused, since a planted
// session names the server the CLI talks to and the ID token file a
// step-up reads and sends. A session that others may read is refused
// too, telling to end it: its token may have been read.
func loadSession() (*SessionFile, error) {
	s, err := readSession()
	if errors.Is(err, safefile.ErrExposed) {
		return nil, err
	}
	return s, err
}

// readSession is loadSession that keeps a session others may read (with
// safefile.ErrExposed): for logout, which ends it.
func readSession() (*SessionFile, error) {
	p := SessionPath()
	raw, err := safefile.Read(p, maxSessionFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.Is(err, safefile.ErrNotRegular):
		// safefile's fix names a setting; this file is pamctl's own.
		return nil, fmt.Errorf("session file %s is %w, not one pamctl wrote: remove it and run `pamctl login`", p, safefile.ErrNotRegular)
	case errors.Is(err, safefile.ErrTooLarge):
		return nil, fmt.Errorf("session file %s is %w (over %d KiB), not one pamctl wrote: remove it and run `pamctl login`", p, safefile.ErrTooLarge, maxSessionFile>>10)
	case err != nil:
		return nil, fmt.Errorf("read session: %w", err)
	}
	var s SessionFile
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("session file %s is corrupt: run `pamctl login`", p)
	}
	if err := safefile.CheckPrivate("session file", p, 0o600); err != nil {
		return &s, fmt.Errorf("%w; whoever could read it may have your session token: run `pamctl logout` to end the session, then `pamctl login`", err)
	}
	return &s, nil
}

func saveSession(s *SessionFile) error {
	p := SessionPath()
	if err := safefile.MkdirPrivate(filepath.Dir(p)); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	// A fresh temporary file (0600, O_EXCL; on Windows a DACL for
	// pamctl's user, SYSTEM and Administrators only, whatever the
	// directory passes on): os.WriteFile on a fixed name would keep the
	// mode and owner of a file someone left there.
	f, err := createTempBeside(p, randomSuffix)
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(raw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// tempTries bounds createTempBeside: 100 random names all taken is no
// accident (a full directory, or someone creating every name).
const tempTries = 100

// createTempBeside creates a new private file next to p (the session file,
// an export's --file) under a name from suffix (randomSuffix), at most
// tempTries names (safefile.CreatePrivate).
func createTempBeside(p string, suffix func() string) (*os.File, error) {
	for range tempTries {
		f, err := safefile.CreatePrivate(p + "." + suffix() + ".tmp")
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("%d temporary names next to %s were all taken: remove the %s.*.tmp files left in %s (and check who creates them)",
		tempTries, p, filepath.Base(p), filepath.Dir(p))
}

// randomSuffix is 16 random hex digits.
func randomSuffix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AnonClient is a broker client without a session (info, login, JWKS).
// It refuses a server that would carry credentials in clear (see
// checkServer) before anything is sent.
func (f *Factory) AnonClient(cfg *Config) (*api.Client, error) {
	if err := checkServer(cfg.Server); err != nil {
		return nil, err
	}
	return &api.Client{BaseURL: strings.TrimRight(cfg.Server, "/"), HTTP: f.HTTP, UserAgent: userAgent()}, nil
}

// checkServer refuses http:// to a non-loopback broker: every command that
// contacts the broker sends an ID token or a session (and trusts the keys
// it answers), whether server came from the file, PAMCTL_SERVER or
// --server.
func checkServer(server string) error {
	if err := api.CheckServer(server); err != nil {
		return withCode(ExitUsage, fmt.Errorf("%w (server: in the config file, PAMCTL_SERVER or --server)", err))
	}
	return nil
}

// userAgent is what the broker records with a login, e.g.
// "pamctl/1.2.3 (linux/amd64)".
func userAgent() string {
	return "pamctl/" + version + " (" + runtime.GOOS + "/" + runtime.GOARCH + ")"
}

// BrokerClient is a broker client carrying the stored session.
func (f *Factory) BrokerClient(cfg *Config) (*api.Client, *SessionFile, error) {
	if err := mayUseSession(cfg); err != nil {
		return nil, nil, err
	}
	s, err := loadSession()
	if err != nil {
		return nil, nil, err
	}
	c, err := f.sessionClient(cfg, s)
	return c, s, err
}

// mayUseSession refuses to send the session from under `pamctl exec`
// or in plaintext to a broker that is not on loopback.
func mayUseSession(cfg *Config) error {
	if err := refuseUnderExec("use your session"); err != nil {
		return err
	}
	return checkServer(cfg.Server)
}

// sessionClient is a broker client carrying s, which must be for
// cfg.Server and unexpired.
func (f *Factory) sessionClient(cfg *Config, s *SessionFile) (*api.Client, error) {
	server := strings.TrimRight(cfg.Server, "/")
	if s == nil || s.Token == "" {
		return nil, withCode(ExitUnauthenticated, fmt.Errorf("not logged in: log in with `pamctl login`"))
	}
	if strings.TrimRight(s.Server, "/") != server {
		return nil, withCode(ExitUnauthenticated, fmt.Errorf("your session is for %s, not %s: log in again with `pamctl login`", s.Server, server))
	}
	if f.Now().After(s.ExpiresAt) {
		return nil, withCode(ExitUnauthenticated, fmt.Errorf("your session expired at %s: log in again with `pamctl login`", s.ExpiresAt.Local().Format(time.Kitchen)))
	}
	return &api.Client{BaseURL: server, Token: s.Token, HTTP: f.HTTP, UserAgent: userAgent()}, nil
}

// SocketPath is the admin socket of a data dir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "pamctl.sock") }

// AdminClient returns a client for the running server's admin socket, or
// nil when no server is running against cfg.DataDir.
func (f *Factory) AdminClient(cfg *Config) *api.Client {
	if os.Getenv(EnvNoSession) != "" {
		return nil // pamctl exec's child acts for no one (see refuseUnderExec)
	}
	p := SocketPath(cfg.DataDir)
	if fi, err := os.Stat(p); err != nil || fi.Mode()&fs.ModeSocket == 0 {
		return nil
	}
	c := api.NewSocketClient(p)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Info(ctx); err != nil {
		return nil // stale socket from a crashed server
	}
	return c
}
