package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Login-flow errors, matched with errors.Is.
var (
	// ErrStateMismatch: the redirect to the loopback listener carried a state
	// other than the one this login sent (a forged or stale callback).
	ErrStateMismatch = errors.New("oidc: login callback state does not match; start the login again")
	// ErrNoIDToken: the token response had no id_token (is "openid" among
	// the scopes?).
	ErrNoIDToken = errors.New("oidc: the identity provider returned no ID token; check that the openid scope is requested")
	// ErrDeviceFlowUnsupported: the issuer's discovery document has no
	// device_authorization_endpoint.
	ErrDeviceFlowUnsupported = errors.New("oidc: the identity provider does not support the device flow; use the browser login")
)

// ProviderError is an OAuth error answered by the identity provider, such as
// access_denied or invalid_grant. Code and Description come from the IdP; they
// are trimmed and stripped of control characters before being shown.
type ProviderError struct {
	Code        string
	Description string
	// Hint is pamctl's advice, when it recognises the refusal.
	Hint string
}

func (e *ProviderError) Error() string {
	msg := "oidc: the identity provider refused the login: " + sanitize(e.Code, 64)
	if e.Description != "" {
		msg += ": " + sanitize(e.Description, 200)
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// secretHint explains a client-authentication refusal by the token endpoint.
func secretHint(err error, haveSecret bool) error {
	var pe *ProviderError
	if !errors.As(err, &pe) {
		return err
	}
	secretish := pe.Code == "invalid_client" || pe.Code == "unauthorized_client" ||
		strings.Contains(strings.ToLower(pe.Description), "secret")
	switch {
	case !secretish:
	case haveSecret:
		pe.Hint = "the client secret in client_secret_file was refused: check it is this client's current secret"
	default:
		pe.Hint = "the IdP wants this client to authenticate: check client_id, and if the IdP requires a client secret, set client_secret_file in the issuers: entry (or register pamctl as a public client with PKCE)"
	}
	return err
}

// ClientConfig is what the CLI needs to log in against one issuer.
type ClientConfig struct {
	IssuerURL string
	ClientID  string
	// ClientSecret is normally empty (public client). Set it only for IdPs
	// that hand installed apps a non-confidential secret (Google "Desktop
	// app" clients).
	ClientSecret string
	// Scopes requested; DefaultScopes when empty ("openid" is added if
	// missing).
	Scopes []string
	// ExtraAuthParams are added to the authorization (and device
	// authorization) request, e.g. login_hint, or groups for the dev issuer.
	ExtraAuthParams map[string]string
	// HTTPClient is used for discovery and the token endpoint; nil means a
	// client with a 30 s timeout.
	HTTPClient *http.Client
	// Purpose, when set, says on the browser's page at the end of the
	// login what it was for ("approving req_…").
	Purpose string
	// RedirectPort is the loopback port of CodeFlow's redirect listener; 0
	// picks a free one. Set it for IdPs that match redirect URIs exactly,
	// port included.
	RedirectPort int
}

// CallbackPath is the path of CodeFlow's loopback redirect URI,
// http://127.0.0.1:PORT/callback.
const CallbackPath = "/callback"

// reservedAuthParams are set by the flows and may not be overridden by
// ExtraAuthParams.
var reservedAuthParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method",
}

func (c ClientConfig) validate() error {
	var errs []error
	if c.IssuerURL == "" {
		errs = append(errs, errors.New("issuer URL is required"))
	} else if err := validateIssuerURL(c.IssuerURL); err != nil {
		errs = append(errs, fmt.Errorf("issuer URL: %w", err))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client ID is required"))
	}
	for k := range c.ExtraAuthParams {
		if slices.Contains(reservedAuthParams, k) {
			errs = append(errs, fmt.Errorf("extra auth parameter %q is set by the login flow itself", k))
		}
	}
	if c.RedirectPort < 0 || c.RedirectPort > 65535 {
		errs = append(errs, fmt.Errorf("redirect port %d out of range", c.RedirectPort))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("oidc: login config: %w", err)
	}
	return nil
}

func (c ClientConfig) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (c ClientConfig) scopes() []string {
	s := slices.Clone(c.Scopes)
	if len(s) == 0 {
		s = slices.Clone(DefaultScopes)
	}
	if !slices.Contains(s, gooidc.ScopeOpenID) {
		s = append([]string{gooidc.ScopeOpenID}, s...)
	}
	return s
}

func (c ClientConfig) extraOptions() []oauth2.AuthCodeOption {
	keys := sortedKeys(c.ExtraAuthParams)
	opts := make([]oauth2.AuthCodeOption, 0, len(keys))
	for _, k := range keys {
		opts = append(opts, oauth2.SetAuthURLParam(k, c.ExtraAuthParams[k]))
	}
	return opts
}

// oauthConfig discovers the issuer and returns the OAuth client config.
func (c ClientConfig) oauthConfig(ctx context.Context, redirectURL string) (*oauth2.Config, error) {
	provider, err := gooidc.NewProvider(ctx, c.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("oidc: discover %s: %w", c.IssuerURL, err)
	}
	ep := provider.Endpoint()
	// Public clients send client_id in the form body; a secret, when there
	// is one, goes the same way (client_secret_post), which every IdP
	// documented in docs/identity.md accepts.
	ep.AuthStyle = oauth2.AuthStyleInParams
	return &oauth2.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		Endpoint:     ep,
		RedirectURL:  redirectURL,
		Scopes:       c.scopes(),
	}, nil
}

// Tokens is what a login flow obtained from the identity provider.
type Tokens struct {
	// IDToken is the raw ID token, for the broker to verify.
	IDToken string
	// AccessToken is the OAuth access token. The CLI sends it to the broker
	// only for issuers whose groups come from the userinfo endpoint.
	AccessToken string
	// Nonce is the nonce the ID token must carry (code flow only).
	Nonce string
}

type loginResult struct {
	idToken     string
	accessToken string
	err         error
}

// PortInUseError says the fixed redirect port is taken, so the redirect
// registered with the IdP cannot be received.
type PortInUseError struct {
	Port int
	Err  error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("oidc: login: port %d on 127.0.0.1 is in use, and the identity provider only redirects to http://127.0.0.1:%d%s (redirect_port): "+
		"finish or stop the other program listening there (often another `pamctl login`), "+
		"or have your administrator register another loopback port with the IdP and change redirect_port", e.Port, e.Port, CallbackPath)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// addrInUse reports whether a listen failed because the address is taken
// (EADDRINUSE; WSAEADDRINUSE, 10048, on Windows).
func addrInUse(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	return errno == syscall.EADDRINUSE || (runtime.GOOS == "windows" && errno == 10048)
}

// String describes c without its client secret, so a config printed with
// %v or %+v never shows it.
func (c ClientConfig) String() string {
	secret := "none"
	if c.ClientSecret != "" {
		secret = "[redacted]"
	}
	return fmt.Sprintf("oidc.ClientConfig{IssuerURL: %q, ClientID: %q, ClientSecret: %s, Scopes: %q, RedirectPort: %d}",
		c.IssuerURL, c.ClientID, secret, c.Scopes, c.RedirectPort)
}

// GoString is String, for %#v.
func (c ClientConfig) GoString() string { return c.String() }

// CodeFlow runs the authorization code flow with PKCE (S256), a random state
// and nonce, and a loopback redirect listener on 127.0.0.1. open is handed the
// authorization URL: OpenBrowser, a function printing it, or, for the dev
// issuer, FollowRedirects. It returns the raw ID token and the nonce the token
// must carry; the caller sends both to the broker, which verifies them. The
// login is bounded by ctx: give it a deadline.
func CodeFlow(ctx context.Context, c ClientConfig, open func(url string) error) (rawIDToken, nonce string, err error) {
	t, err := CodeFlowTokens(ctx, c, open)
	return t.IDToken, t.Nonce, err
}

// CodeFlowTokens is CodeFlow returning the access token too.
func CodeFlowTokens(ctx context.Context, c ClientConfig, open func(url string) error) (Tokens, error) {
	if err := c.validate(); err != nil {
		return Tokens{}, err
	}
	if open == nil {
		return Tokens{}, errors.New("oidc: login: no way to open the login URL")
	}
	ctx = gooidc.ClientContext(ctx, c.httpClient())

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.RedirectPort)))
	if err != nil {
		if c.RedirectPort != 0 && addrInUse(err) {
			return Tokens{}, &PortInUseError{Port: c.RedirectPort, Err: err}
		}
		return Tokens{}, fmt.Errorf("oidc: login: listen for the redirect on 127.0.0.1: %w", err)
	}
	redirectURL := fmt.Sprintf("http://%s%s", ln.Addr().String(), CallbackPath)
	conf, err := c.oauthConfig(ctx, redirectURL)
	if err != nil {
		ln.Close()
		return Tokens{}, err
	}

	state, nonce := rand.Text(), rand.Text()
	verifier := oauth2.GenerateVerifier()
	opts := append(c.extraOptions(), oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce))
	authURL := conf.AuthCodeURL(state, opts...)

	results := make(chan loginResult, 1)
	var forged atomic.Bool // a callback with another state came and was ignored
	srv := &http.Server{
		Handler:           callbackHandler(ctx, conf, state, verifier, c.Purpose, results, &forged),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln) //nolint:errcheck // returns http.ErrServerClosed on shutdown
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()

	opened := make(chan error, 1)
	go func() { opened <- open(authURL) }()
	done := func(r loginResult) (Tokens, error) {
		if r.err != nil {
			return Tokens{}, r.err
		}
		return Tokens{IDToken: r.idToken, AccessToken: r.accessToken, Nonce: nonce}, nil
	}
	for {
		select {
		case r := <-results:
			return done(r)
		case err := <-opened:
			opened = nil
			if err == nil {
				continue // the browser is open; wait for the redirect
			}
			// The opener may fail because the callback refused the
			// redirect; that refusal is the better error.
			select {
			case r := <-results:
				return done(r)
			default:
				if forged.Load() {
					return Tokens{}, fmt.Errorf("%w (open the login URL: %v)", ErrStateMismatch, err)
				}
				return Tokens{}, fmt.Errorf("oidc: login: open the login URL: %w", err)
			}
		case <-ctx.Done():
			if forged.Load() {
				return Tokens{}, fmt.Errorf("oidc: login not completed (%w): a redirect with another state reached the listener and was ignored: %w", ctx.Err(), ErrStateMismatch)
			}
			return Tokens{}, fmt.Errorf("oidc: login not completed: %w", ctx.Err())
		}
	}
}

// callbackHandler serves the loopback redirect. The first request to
// CallbackPath that carries this login's state decides the login; later
// ones are refused, and one with another state is ignored (forged is set,
// so the login's error can say so if it never completes).
func callbackHandler(ctx context.Context, conf *oauth2.Config, state, verifier, purpose string, results chan<- loginResult, forged *atomic.Bool) http.Handler {
	var handled atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CallbackPath, func(w http.ResponseWriter, r *http.Request) {
		// The state is compared before anything else: the listener is
		// reachable by every local user and by any web page (<img src>),
		// so a request without this login's state is not its answer and
		// must not end it (the person's real redirect still completes).
		if subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("state")), []byte(state)) != 1 {
			forged.Store(true)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "<!doctype html><title>pamctl login</title><p>This redirect does not belong to the pamctl login in progress (its state does not match) and was ignored. If you started that login, return to your terminal and run it again.</p>\n")
			return
		}
		if !handled.CompareAndSwap(false, true) {
			http.Error(w, "pamctl: this login has already completed", http.StatusGone)
			return
		}
		res := exchangeCallback(ctx, conf, verifier, r)
		results <- res
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if res.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "<!doctype html><title>pamctl login failed</title><p>pamctl login failed: %s</p><p>Return to your terminal.</p>\n",
				html.EscapeString(res.err.Error()))
			return
		}
		if purpose != "" {
			fmt.Fprintf(w, "<!doctype html><title>pamctl login</title><p>pamctl login complete, for %s.</p><p>You can close this tab and return to your terminal.</p>\n", html.EscapeString(purpose))
			return
		}
		fmt.Fprint(w, "<!doctype html><title>pamctl login</title><p>pamctl login complete. You can close this tab and return to your terminal.</p>\n")
	})
	return mux
}

func exchangeCallback(ctx context.Context, conf *oauth2.Config, verifier string, r *http.Request) loginResult {
	q := r.URL.Query()
	if code := q.Get("error"); code != "" {
		return loginResult{err: &ProviderError{Code: code, Description: q.Get("error_description")}}
	}
	code := q.Get("code")
	if code == "" {
		return loginResult{err: errors.New("oidc: login callback carried no authorization code")}
	}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return loginResult{err: secretHint(tokenError("exchange the authorization code", err), conf.ClientSecret != "")}
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return loginResult{err: ErrNoIDToken}
	}
	return loginResult{idToken: raw, accessToken: tok.AccessToken}
}

// DeviceFlow runs the OAuth 2.0 device authorization grant (RFC 8628): it
// asks the issuer for a user code, calls show with the verification URI and
// the code, and polls until the user approves, the code expires or ctx ends.
// It returns the raw ID token for the broker to verify (with no nonce: the
// device grant has none).
func DeviceFlow(ctx context.Context, c ClientConfig, show func(verificationURI, userCode string)) (rawIDToken string, err error) {
	t, err := DeviceFlowTokens(ctx, c, show)
	return t.IDToken, err
}

// DeviceFlowTokens is DeviceFlow returning the access token too.
func DeviceFlowTokens(ctx context.Context, c ClientConfig, show func(verificationURI, userCode string)) (Tokens, error) {
	raw, access, err := deviceFlow(ctx, c, show)
	return Tokens{IDToken: raw, AccessToken: access}, err
}

func deviceFlow(ctx context.Context, c ClientConfig, show func(verificationURI, userCode string)) (rawIDToken, accessToken string, err error) {
	if err := c.validate(); err != nil {
		return "", "", err
	}
	if show == nil {
		return "", "", errors.New("oidc: device login: no way to show the user code")
	}
	ctx = gooidc.ClientContext(ctx, c.httpClient())
	conf, err := c.oauthConfig(ctx, "")
	if err != nil {
		return "", "", err
	}
	if conf.Endpoint.DeviceAuthURL == "" {
		return "", "", ErrDeviceFlowUnsupported
	}
	da, err := conf.DeviceAuth(ctx, c.extraOptions()...)
	if err != nil {
		return "", "", secretHint(tokenError("start the device login", err), conf.ClientSecret != "")
	}
	show(da.VerificationURI, da.UserCode)
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		if ctx.Err() != nil {
			return "", "", fmt.Errorf("oidc: device login not completed: %w", ctx.Err())
		}
		return "", "", secretHint(tokenError("wait for device approval", err), conf.ClientSecret != "")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", "", ErrNoIDToken
	}
	return raw, tok.AccessToken, nil
}

// tokenError turns an oauth2 error into a ProviderError when the IdP gave an
// OAuth error code, so raw response bodies never reach the user.
func tokenError(what string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return &ProviderError{Code: re.ErrorCode, Description: re.ErrorDescription}
		}
		status := "no response"
		if re.Response != nil {
			status = re.Response.Status
		}
		return fmt.Errorf("oidc: %s: identity provider answered %s", what, status)
	}
	return fmt.Errorf("oidc: %s: %w", what, err)
}

// sanitize trims s to n bytes and replaces control characters, for text that
// came from the network.
func sanitize(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return truncate(s, n)
}
