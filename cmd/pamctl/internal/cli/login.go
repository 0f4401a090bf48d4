package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/tlsconf"

	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/safetext"
)

// LoginOptions are the inputs of `pamctl login`.
type LoginOptions struct {
	f           *Factory
	Issuer      string
	Device      bool
	NoBrowser   bool
	IDTokenFile string
	// ClientSecretFile overrides the path the broker announces for issuers
	// that require a client secret.
	ClientSecretFile string
	// Dev issuer only: the user to auto-consent as, and their groups.
	User   string
	Groups []string
	// Open shows the authorization URL (browser, print, or follow).
	Open func(url string) error
	// Purpose is what a step-up login is for ("approving req_…"), shown
	// with the device code and on the browser's page at the end.
	Purpose string
}

// NewCmdLogin builds `pamctl login`.
func NewCmdLogin(f *Factory, runF func(*cobra.Command, *LoginOptions) error) *cobra.Command {
	o := &LoginOptions{f: f}
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in with OIDC and open a broker session",
		Long: `Log in with one of the broker's trusted OIDC issuers.

By default pamctl runs the authorization-code flow with PKCE and a loopback
redirect, opening your browser. --device uses the device authorization grant
(headless hosts); --id-token-file presents a workload ID token (GitHub Actions,
Kubernetes service accounts; '-' reads stdin). Against 'pamctl serve --dev',
--user and --groups log in through the embedded development issuer with no
browser.`,
		Example: `  pamctl login
  pamctl login --device
  pamctl login --id-token-file /var/run/secrets/tokens/pamctl
  pamctl login --user alice --groups ml      # serve --dev only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.IDTokenFile != "" && o.Device {
				return withCode(ExitUsage, errors.New("--device and --id-token-file cannot be combined"))
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return loginRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Issuer, "issuer", "", "name of the trusted issuer to use (default: the only interactive one)")
	cmd.Flags().BoolVar(&o.Device, "device", false, "use the device authorization flow")
	cmd.Flags().BoolVar(&o.NoBrowser, "no-browser", false, "print the login URL instead of opening a browser")
	cmd.Flags().StringVar(&o.IDTokenFile, "id-token-file", "", "present a workload ID token read from this file ('-' for stdin)")
	cmd.Flags().StringVar(&o.ClientSecretFile, "client-secret-file", "", "read the OAuth client secret from this file (mode 0600) instead of the issuer's client_secret_file")
	cmd.Flags().StringVar(&o.User, "user", "", "dev issuer only: log in as this user")
	cmd.Flags().StringSliceVar(&o.Groups, "groups", nil, "dev issuer only: the user's groups")
	return cmd
}

func loginRun(cmd *cobra.Command, o *LoginOptions) error {
	if err := refuseUnderExec("log in"); err != nil {
		return err
	}
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	sess, err := o.f.login(cmd.Context(), cfg, o, 0)
	if err != nil {
		return err
	}
	ios := o.f.IO
	groups := ""
	if len(sess.Identity.Groups) > 0 {
		groups = " (" + safetext.Join(sess.Identity.Groups, ", ", "()") + ")" // a group holding ", " or a parenthesis is quoted
	}
	ios.Successf("Logged in as %s%s via %s; session until %s", ios.Styles().Bold.Render(DisplayName(sess.Identity)), groups, sess.Identity.Issuer, sess.ExpiresAt.Local().Format("15:04 MST"))
	return nil
}

// login runs the login o describes and saves the session. Interactive
// logins ask the IdP for an authentication no older than the broker's
// approvals.reauth_after (max_age), so a session made by `pamctl login`
// can approve at once. stepUp > 0 is a step-up (see stepUpLogin): the IdP is
// also told to authenticate the person again now (prompt=login), with
// max_age stepUp seconds.
func (f *Factory) login(ctx context.Context, cfg *Config, o *LoginOptions, stepUp int64) (*broker.Session, error) {
	ios := f.IO
	client, err := f.AnonClient(cfg)
	if err != nil {
		return nil, err
	}
	rec := &LoginRecord{Device: o.Device}
	var rawIDToken, nonce, accessToken string
	if o.IDTokenFile != "" {
		rawIDToken, err = readIDToken(o.IDTokenFile, ios.In)
		if err != nil {
			return nil, err
		}
		if o.IDTokenFile != "-" {
			if abs, err := filepath.Abs(o.IDTokenFile); err == nil {
				rec.IDTokenFile = abs
			}
		}
	} else {
		info, err := client.Info(ctx)
		if err != nil {
			return nil, unreachable(err, cfg.Server)
		}
		is, err := pickIssuer(info, o)
		if err != nil {
			return nil, err
		}
		rec.Issuer = is.Name
		cc := oidc.ClientConfig{IssuerURL: is.URL, ClientID: is.ClientID, Scopes: is.Scopes, RedirectPort: is.RedirectPort,
			// The CLI's transport: it trusts ca_file besides the system roots.
			HTTPClient: &http.Client{Transport: f.HTTP.Transport, Timeout: 30 * time.Second}}
		// The code exchange happens here, on the user's machine, so a
		// confidential client's secret is read here, from a file only
		// this user can read; the broker only names the path.
		if secretFile := cmp.Or(o.ClientSecretFile, is.ClientSecretFile); secretFile != "" {
			if cc.ClientSecret, err = oidc.ReadClientSecretFile(secretFile); err != nil {
				return nil, withCode(ExitUsage, fmt.Errorf("login with issuer %q: %w", is.Name, err))
			}
			rec.ClientSecretFile = o.ClientSecretFile
		}
		cc.ExtraAuthParams = freshAuthParams(info.ReauthAfterSeconds, stepUp, is.Dev)
		cc.Purpose = o.Purpose
		if is.Dev {
			if o.User == "" {
				return nil, withCode(ExitUsage, errors.New("the development issuer needs --user NAME (and optionally --groups a,b)"))
			}
			cc.ExtraAuthParams["login_hint"] = o.User
			cc.ExtraAuthParams["groups"] = strings.Join(o.Groups, ",")
			rec.DevUser, rec.DevGroups = o.User, o.Groups
		} else if o.User != "" || len(o.Groups) > 0 {
			return nil, withCode(ExitUsage, errors.New("--user and --groups only work against `pamctl serve --dev`; your identity provider decides who you are"))
		}
		loginCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		var toks oidc.Tokens
		if o.Device {
			toks, err = oidc.DeviceFlowTokens(loginCtx, cc, func(uri, code string) {
				if is.Dev {
					// The dev issuer auto-consents once the code is visited.
					q := url.Values{"user_code": {code}, "login_hint": {o.User}, "groups": {strings.Join(o.Groups, ",")}}
					go func() { _ = oidc.FollowRedirects(f.HTTP)(uri + "?" + q.Encode()) }()
					return
				}
				if o.Purpose != "" {
					ios.Notef("To log in for %s, open %s and enter the code %s", o.Purpose, ios.Styles().Code.Render(uri), ios.Styles().Bold.Render(code))
					return
				}
				ios.Notef("To log in, open %s and enter the code %s", ios.Styles().Code.Render(uri), ios.Styles().Bold.Render(code))
			})
		} else {
			open := o.Open
			switch {
			case open != nil:
			case is.Dev:
				open = oidc.FollowRedirects(f.HTTP)
			case o.NoBrowser:
				open = func(u string) error { ios.Notef("Open this URL to log in:\n\n  %s\n", u); return nil }
			default:
				open = func(u string) error {
					if err := oidc.OpenBrowser(u); err != nil {
						ios.Notef("Open this URL to log in:\n\n  %s\n", u)
					} else {
						ios.Notef("Opened your browser to log in (waiting up to 5 minutes)…")
					}
					return nil
				}
			}
			toks, err = oidc.CodeFlowTokens(loginCtx, cc, open)
		}
		if err != nil {
			return nil, withCode(ExitUnauthenticated, fmt.Errorf("login: %w", err))
		}
		rawIDToken, nonce = toks.IDToken, toks.Nonce
		// The access token leaves this machine only when the broker needs
		// it to read the groups from the issuer's userinfo endpoint.
		if is.GroupsSource == oidc.GroupsFromUserinfo {
			accessToken = toks.AccessToken
		}
	}
	var sess *broker.Session
	if accessToken != "" {
		sess, err = client.LoginWithAccessToken(ctx, rawIDToken, nonce, accessToken)
	} else {
		sess, err = client.Login(ctx, rawIDToken, nonce)
	}
	if err != nil {
		return nil, unreachable(err, cfg.Server)
	}
	if err := saveSession(&SessionFile{Server: cfg.Server, ID: sess.ID, Token: sess.Token, Identity: sess.Identity, ExpiresAt: sess.ExpiresAt, Login: rec}); err != nil {
		return nil, err
	}
	return sess, nil
}

// freshAuthParams are the authorization parameters that ask the IdP for a
// recent authentication: max_age (OIDC Core 3.1.2.1: re-authenticate when
// the last authentication is older, and put auth_time in the ID token) set
// to the broker's approvals.reauth_after, and for a step-up also
// prompt=login (authenticate again now, whatever the IdP's own session).
// The development issuer authenticates afresh on every authorization
// request it auto-consents to, and answers prompt=login with a form for
// browsers, so it gets max_age alone.
func freshAuthParams(reauthAfter, stepUp int64, dev bool) map[string]string {
	p := map[string]string{}
	switch {
	case stepUp > 0:
		if !dev {
			p["prompt"] = "login"
		}
		p["max_age"] = strconv.FormatInt(stepUp, 10)
	case reauthAfter > 0:
		p["max_age"] = strconv.FormatInt(reauthAfter, 10)
	}
	return p
}

func pickIssuer(info api.Info, o *LoginOptions) (api.IssuerInfo, error) {
	var candidates []api.IssuerInfo
	for _, is := range info.Issuers {
		if o.Issuer != "" && is.Name == o.Issuer {
			return is, nil
		}
		if !is.Workload {
			candidates = append(candidates, is)
		}
	}
	if o.Issuer != "" {
		return api.IssuerInfo{}, withCode(ExitUsage, fmt.Errorf("no trusted issuer named %q (known: %s)", o.Issuer, issuerNames(info)))
	}
	switch len(candidates) {
	case 0:
		return api.IssuerInfo{}, withCode(ExitUsage, errors.New("the broker trusts no interactive issuer: add one under `issuers:` in its config, or use --id-token-file"))
	case 1:
		return candidates[0], nil
	}
	return api.IssuerInfo{}, withCode(ExitUsage, fmt.Errorf("several issuers are trusted; pick one with --issuer (%s)", issuerNames(info)))
}

func issuerNames(info api.Info) string {
	var n []string
	for _, is := range info.Issuers {
		n = append(n, is.Name)
	}
	return strings.Join(n, ", ")
}

func readIDToken(path string, stdin io.Reader) (string, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, 64<<10))
	} else {
		raw, err = safefile.Read(path, 64<<10) // a regular file, as large as stdin may be
	}
	if err != nil {
		return "", withCode(ExitUsage, fmt.Errorf("read ID token: %w", err))
	}
	t := strings.TrimSpace(string(raw))
	if t == "" {
		return "", withCode(ExitUsage, errors.New("the ID token file is empty"))
	}
	return t, nil
}

// unreachable turns a connection failure into advice.
func unreachable(err error, server string) error {
	if errors.Is(err, api.ErrUnreachable) && tlsconf.IsUnknownAuthority(err) {
		return withCode(ExitUnreachable, fmt.Errorf("the broker at %s presents a TLS certificate this machine does not trust: pass the CA that signed it with --ca-file (or ca_file: in the config, or PAMCTL_CA_FILE)", server))
	}
	if errors.Is(err, api.ErrUnreachable) && tlsconf.IsClientCertificateRefused(err) {
		return withCode(ExitUnreachable, fmt.Errorf("the broker at %s requires a client certificate (mTLS) and refused this one or its absence: set client_cert_file and client_key_file (--client-cert-file, --client-key-file, PAMCTL_CLIENT_CERT_FILE) to a certificate its client CA signed (%v)", server, err))
	}
	if errors.Is(err, api.ErrUnreachable) {
		return withCode(ExitUnreachable, fmt.Errorf("cannot reach the broker at %s: is `pamctl serve` running? (set --server or PAMCTL_SERVER to point elsewhere)", server))
	}
	return err
}

// NewCmdLogout builds `pamctl logout`.
func NewCmdLogout(f *Factory, runF func(*cobra.Command) error) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End the broker session (server-side) and forget it",
		Long: `End your broker session. The broker refuses the session's token from
now on, copies included, and the local session file is removed. When the
broker cannot be reached the file is still removed, the session stays open
on the broker until it expires, and logout exits non-zero to say so
(end it from elsewhere with: pamctl sessions revoke ID).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd)
			}
			return logoutRun(cmd, f)
		},
	}
}

func logoutRun(cmd *cobra.Command, f *Factory) error {
	cfg, err := f.Config(cmd)
	if err != nil {
		return err
	}
	// A session others may read is what logout is for: it is ended and
	// forgotten like any other.
	sess, err := readSession()
	if err != nil && !errors.Is(err, safefile.ErrExposed) {
		return err
	}
	if sess == nil || sess.Token == "" {
		f.IO.Successf("Not logged in")
		return nil
	}
	if err := refuseUnderExec("use your session"); err != nil {
		return err // an agent under pamctl exec neither ends nor forgets it
	}
	// End it server-side first, at the broker it was made with (the
	// configured server may have changed since: the session lives
	// there); forget it locally whatever the answer.
	server := strings.TrimRight(sess.Server, "/")
	var endErr error
	expired := f.Now().After(sess.ExpiresAt)
	if !expired {
		if endErr = checkServer(server); endErr == nil {
			c := &api.Client{BaseURL: server, Token: sess.Token, HTTP: f.HTTP, UserAgent: userAgent()}
			endErr = c.Logout(cmd.Context())
		}
	}
	if err := os.Remove(SessionPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	at := ""
	if server != strings.TrimRight(cfg.Server, "/") {
		at = " at " + server
	}
	var ae *api.Error
	switch {
	case expired:
		f.IO.Successf("Logged out (the session had expired at %s)", sess.ExpiresAt.Local().Format(time.RFC3339))
		return nil
	case endErr == nil:
		f.IO.Successf("Logged out; the broker%s ended session %s", at, dash(sess.ID))
		return nil
	case errors.As(endErr, &ae) && ae.Code == broker.CodeUnauthenticated:
		// Already ended: revoked, idle, logged out elsewhere.
		f.IO.Successf("Logged out (the broker%s no longer accepted this session)", at)
		return nil
	case errors.Is(endErr, api.ErrUnreachable):
		return withCode(ExitUnreachable, fmt.Errorf("forgot the local session, but the broker at %s could not be reached to end it: it stays valid until %s unless revoked (pamctl sessions revoke %s)", server, sess.ExpiresAt.Local().Format(time.RFC3339), dash(sess.ID)))
	default:
		return fmt.Errorf("forgot the local session, but the broker%s did not end it (it stays valid until %s unless revoked: pamctl sessions revoke %s): %w", at, sess.ExpiresAt.Local().Format(time.RFC3339), dash(sess.ID), endErr)
	}
}

// WhoamiOptions are the inputs of `pamctl whoami`.
type WhoamiOptions struct {
	f      *Factory
	Output string
}

// NewCmdWhoami builds `pamctl whoami`.
func NewCmdWhoami(f *Factory, runF func(*cobra.Command, *WhoamiOptions) error) *cobra.Command {
	o := &WhoamiOptions{f: f}
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show who the broker thinks you are",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return whoamiRun(cmd, o)
		},
	}
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func whoamiRun(cmd *cobra.Command, o *WhoamiOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, _, err := o.f.BrokerClient(cfg)
	if err != nil {
		return err
	}
	me, err := c.WhoAmI(cmd.Context())
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	ios := o.f.IO
	if o.Output == "json" {
		return ios.JSON(me)
	}
	st := ios.Styles()
	t := ios.NewTable("FIELD", "VALUE")
	t.Row("name", st.Bold.Render(DisplayName(me.Identity)))
	t.Row("subject", me.Subject)
	t.Row("email", dash(me.Email))
	t.Row("groups", groupList(me.Groups))
	t.Row("issuer", me.Issuer)
	t.Row("kind", dash(me.Kind))
	t.Row("session", dash(me.Session))
	t.Row("expires", me.ExpiresAt.Local().Format(time.RFC3339)+" ("+humanDuration(time.Until(me.ExpiresAt))+" left)")
	if me.IdleExpiresAt != nil {
		t.Row("idle until", me.IdleExpiresAt.Local().Format(time.RFC3339)+" (unless used again)")
	}
	if me.AuthTime != nil {
		t.Row("authenticated", me.AuthTime.Local().Format(time.RFC3339)+" ("+humanDuration(time.Since(*me.AuthTime))+" ago; approving and the audit trail need a login within approvals.reauth_after)")
	} else if me.NoAuthTime != "" {
		t.Row("authenticated", "not known: "+broker.NoAuthTimeReason(me.NoAuthTime)+"; this session cannot approve or read the audit trail")
	}
	return t.Render()
}

// DisplayName is how a person or workload is shown: the issuer's display
// claims (name or email), else the subject.
func DisplayName(id broker.Identity) string {
	return cmp.Or(id.Display, id.Subject)
}

// PartyName names someone else (a requester, an approver) for a decision:
// the display name with the subject when they differ, as the web UI shows
// them (safetext.Party: a name holding a parenthesis, a quote or a
// look-alike of one is quoted, "\"alice (admin@corp)\" (mallory)"). A
// display name is whatever the IdP let its owner set, so it may look like
// another person's (a zero-width space, a Cyrillic a); the subject is what
// policies and the trail key on.
//
// A workload acting for a person (the issuer's act_claim) is followed by
// "for ACT", and "= PERSON" when the issuer's act_people maps it, so an
// approver sees whose CI run they are asked to approve; the act is the
// platform's text, quoted when it holds a space, a parenthesis or a quote
// (safetext.Join) so it cannot pass for more of the label.
func PartyName(id broker.Identity) string {
	return partyLabel(id.Display, id.Subject, id.Issuer, id.IssuerURL) + actLabel(id.Act, id.ActFor)
}

// actLabel is PartyName's " for ACT[ = PERSON]" ("" without an act).
func actLabel(act, actFor string) string {
	if act == "" && actFor == "" {
		return ""
	}
	s := " for " + safetext.Join([]string{act}, " ", "()=")
	if actFor != "" {
		s += " = " + safetext.Join([]string{actFor}, " ", "()=")
	}
	return s
}

// partyLabel is PartyName from its parts (issuerURL is "" where the
// record has none, as audit actors). The admin socket's identity is marked
// as such; anyone else whose name reads like it (an IdP user whose subject
// or display name is local-admin, or whose name says "admin socket", also
// spelled with look-alike letters, spaces or dashes) is shown with the
// issuer that vouched for them.
func partyLabel(display, subject, issuer, issuerURL string) string {
	admin := broker.AdminIdentity
	if issuer == admin.Issuer && subject == admin.Subject && issuerURL == "" {
		return subject + " (admin socket)"
	}
	raw := subject // as written before quoting: what a reader may take for the admin socket
	if display != "" && display != subject {
		raw = display + " (" + subject + ")"
	}
	s := safetext.Party(display, subject) // a name holding a parenthesis or a quote is quoted
	if looksLike(subject, admin.Subject) || looksLike(display, admin.Subject) || looksLike(raw, "admin socket") {
		s += " via issuer " + strconv.Quote(issuer)
	}
	return s
}

// looksLike reports whether s contains something a reader could take for
// target (lower-case ASCII letters, and spaces or dashes): letters compare
// without case, and a letter of another alphabet (a Cyrillic а, a
// fullwidth ａ) may stand in for some of them, as long as at least half
// are the ASCII letter itself; any space, dash or punctuation mark (a
// non-breaking space or hyphen) stands in for a space or a dash.
// Invisible format characters are skipped.
func looksLike(s, target string) bool {
	rs := make([]rune, 0, len(s))
	for _, r := range s {
		if !unicode.Is(unicode.Cf, r) {
			rs = append(rs, r)
		}
	}
	t := []rune(target)
	letters := 0
	for _, w := range t {
		if unicode.IsLetter(w) {
			letters++
		}
	}
	for i := 0; i+len(t) <= len(rs); i++ {
		exact, match := 0, true
		for k, w := range t {
			r := rs[i+k]
			switch {
			case !unicode.IsLetter(w):
				match = unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.Is(unicode.Pd, r)
			case unicode.ToLower(r) == w:
				exact++
			default:
				match = r >= utf8.RuneSelf && unicode.IsLetter(r)
			}
			if !match {
				break
			}
		}
		if match && 2*exact >= letters {
			return true
		}
	}
	return false
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// groupList is whoami's groups: "-" for none, else the groups joined with
// ", ", one holding ',' (or '"', or padded with spaces) quoted
// (safetext.Join), and a lone group named "-" quoted too, apart from none.
func groupList(gs []string) string {
	if len(gs) == 0 {
		return "-"
	}
	if l := safetext.Join(gs, ", ", ""); l != "-" {
		return l
	}
	return `"-"`
}
