// Package devissuer owns pamctl's embedded development OpenID Connect
// provider: a real issuer (discovery, JWKS, authorization code flow with
// mandatory PKCE S256, device authorization grant, RS256 ID tokens) served as
// an http.Handler. `pamctl serve --dev` mounts it so a newcomer can log in with
// no identity provider, and every test in the tree uses it as the in-process
// issuer.
//
// /authorize auto-consents for the user named in the login_hint parameter,
// with the groups listed in the non-standard groups parameter (comma
// separated), and /device approves a user code the same way. With
// WithLoginForm a browser without login_hint (or sent with prompt=login)
// gets a form asking for the user name and groups instead; it checks no
// password: whoever reaches it is whoever they type.
// It only redirects to loopback URIs. It is for development and tests only and
// must never be trusted by a production broker.
package devissuer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultClientID is the audience Mint uses when Claims.Audience is empty; it
// is also the client ID `pamctl serve --dev` configures for the dev issuer.
const DefaultClientID = "pamctl"

// Endpoint paths, relative to the issuer URL.
const (
	PathDiscovery  = "/.well-known/openid-configuration"
	PathKeys       = "/keys"
	PathAuthorize  = "/authorize"
	PathToken      = "/token"
	PathDeviceCode = "/device/code"
	PathDevice     = "/device"
)

// GrantTypeDeviceCode is the RFC 8628 grant type.
const GrantTypeDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// maxPending bounds the outstanding authorization codes and device grants, so
// a loop of requests cannot grow memory without limit.
const maxPending = 10000

// Issuer is an in-process OIDC provider. Create it with New; it is safe for
// concurrent use.
type Issuer struct {
	issuer   string // issuer URL, no trailing slash
	basePath string // URL path of the issuer, no trailing slash ("" at the root)

	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer

	now          func() time.Time
	tokenTTL     time.Duration
	codeTTL      time.Duration
	deviceTTL    time.Duration
	pollInterval int // seconds, advertised in device authorization responses
	clients      map[string]bool
	emailDomain  string
	loginForm    bool            // WithLoginForm
	noAuthTime   bool            // WithoutAuthTime
	redirects    map[string]bool // WithRedirectURIs: exact URIs allowed besides loopback http

	mu      sync.Mutex
	codes   map[string]*authCode    // authorization code -> grant
	devices map[string]*deviceGrant // device_code -> grant
	users   map[string]*deviceGrant // normalized user_code -> grant
}

// Option configures an Issuer.
type Option func(*Issuer) error

// WithClock sets the clock used for iat/exp and for code expiry.
func WithClock(now func() time.Time) Option {
	return func(i *Issuer) error {
		if now == nil {
			return errors.New("clock is nil")
		}
		i.now = now
		return nil
	}
}

// WithTokenTTL sets the lifetime of ID tokens issued by the flows and the
// default lifetime of tokens made by Mint (default 1h).
func WithTokenTTL(d time.Duration) Option {
	return func(i *Issuer) error {
		if d <= 0 {
			return errors.New("token TTL must be positive")
		}
		i.tokenTTL = d
		return nil
	}
}

// WithCodeTTL sets how long an authorization code may be redeemed (default 1m).
func WithCodeTTL(d time.Duration) Option {
	return func(i *Issuer) error {
		if d <= 0 {
			return errors.New("code TTL must be positive")
		}
		i.codeTTL = d
		return nil
	}
}

// WithDeviceTTL sets how long a device code may be approved and polled
// (default 10m).
func WithDeviceTTL(d time.Duration) Option {
	return func(i *Issuer) error {
		if d <= 0 {
			return errors.New("device TTL must be positive")
		}
		i.deviceTTL = d
		return nil
	}
}

// WithPollInterval sets the device-flow poll interval the issuer advertises.
// RFC 8628 counts it in whole seconds and clients treat 0 as 5, so it is
// rounded up to at least one second (the default).
func WithPollInterval(d time.Duration) Option {
	return func(i *Issuer) error {
		if d < 0 {
			return errors.New("poll interval must not be negative")
		}
		secs := int((d + time.Second - 1) / time.Second)
		i.pollInterval = max(secs, 1)
		return nil
	}
}

// WithClients restricts the client IDs the issuer accepts. By default any
// non-empty client ID is accepted (all clients are public; PKCE protects the
// code flow).
func WithClients(ids ...string) Option {
	return func(i *Issuer) error {
		i.clients = make(map[string]bool, len(ids))
		for _, id := range ids {
			if id == "" {
				return errors.New("empty client ID")
			}
			i.clients[id] = true
		}
		return nil
	}
}

// WithLoginForm makes /authorize show a login form (user name and groups)
// when the request names no login_hint, or asks for prompt=login, instead
// of refusing it with login_required: a browser can then log in, as the web
// approval page's users do (`pamctl serve --dev` turns it on). Requests with
// a login_hint still auto-consent, so the CLI's flows are unchanged.
func WithLoginForm() Option {
	return func(i *Issuer) error {
		i.loginForm = true
		return nil
	}
}

// WithoutAuthTime makes the issuer behave like an IdP that never sends
// auth_time: its ID tokens carry none and its discovery document's
// claims_supported does not list it (for trying step-up against such
// IdPs: issuers[].step_up_without_auth_time).
func WithoutAuthTime() Option {
	return func(i *Issuer) error {
		i.noAuthTime = true
		return nil
	}
}

// WithRedirectURIs allows these exact redirect URIs besides loopback http
// ones: the web approval page's <public_url>/ui/callback, which is https
// under `serve --dev --tls`. Each must be an absolute http(s) URL without
// user info or fragment.
func WithRedirectURIs(uris ...string) Option {
	return func(i *Issuer) error {
		if i.redirects == nil {
			i.redirects = map[string]bool{}
		}
		for _, raw := range uris {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
				return fmt.Errorf("redirect URI %q: want an absolute http(s) URL", raw)
			}
			i.redirects[raw] = true
		}
		return nil
	}
}

// WithEmailDomain sets the domain appended to a login_hint without "@" to
// form the email claim (default "example.com").
func WithEmailDomain(domain string) Option {
	return func(i *Issuer) error {
		if domain == "" || strings.ContainsAny(domain, "@/ ") {
			return fmt.Errorf("invalid email domain %q", domain)
		}
		i.emailDomain = domain
		return nil
	}
}

// WithSigningKey makes the issuer sign with key instead of a freshly generated
// one, so tokens stay valid across restarts of `pamctl serve --dev`.
func WithSigningKey(key *rsa.PrivateKey) Option {
	return func(i *Issuer) error {
		if key == nil {
			return errors.New("signing key is nil")
		}
		if key.N.BitLen() < 2048 {
			return errors.New("signing key must be at least 2048 bits")
		}
		i.key = key
		return nil
	}
}

// New returns an issuer whose `iss` is issuerURL (for example
// "http://127.0.0.1:8700/dev/oidc"). It generates an RSA-2048 signing key
// unless WithSigningKey is given. Mount the returned handler so that it
// receives requests for issuerURL and the paths below it; it accepts them with
// or without the issuer's path prefix (so http.StripPrefix is optional).
func New(issuerURL string, opts ...Option) (*Issuer, error) {
	u, err := url.Parse(issuerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("devissuer: invalid issuer URL %q: want http(s)://host[:port][/path]", issuerURL)
	}
	i := &Issuer{
		issuer:       strings.TrimSuffix(issuerURL, "/"),
		basePath:     strings.TrimSuffix(u.Path, "/"),
		now:          time.Now,
		tokenTTL:     time.Hour,
		codeTTL:      time.Minute,
		deviceTTL:    10 * time.Minute,
		pollInterval: 1,
		emailDomain:  "example.com",
		codes:        map[string]*authCode{},
		devices:      map[string]*deviceGrant{},
		users:        map[string]*deviceGrant{},
	}
	for _, opt := range opts {
		if err := opt(i); err != nil {
			return nil, fmt.Errorf("devissuer: %w", err)
		}
	}
	if i.key == nil {
		if i.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("devissuer: generate signing key: %w", err)
		}
	}
	i.kid = keyID(&i.key.PublicKey)
	i.signer, err = newRS256Signer(i.key, i.kid)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	return i, nil
}

// URL returns the issuer URL, as it appears in the `iss` claim.
func (i *Issuer) URL() string { return i.issuer }

// PublicKey returns the issuer's signing public key.
func (i *Issuer) PublicKey() *rsa.PublicKey { return &i.key.PublicKey }

// KeyID returns the `kid` of the signing key.
func (i *Issuer) KeyID() string { return i.kid }

// ServeHTTP routes the provider endpoints.
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if i.basePath != "" && (p == i.basePath || strings.HasPrefix(p, i.basePath+"/")) {
		p = strings.TrimPrefix(p, i.basePath)
	}
	switch p {
	case PathDiscovery:
		i.onlyMethods(w, r, i.handleDiscovery, http.MethodGet, http.MethodHead)
		return
	case PathKeys:
		i.onlyMethods(w, r, i.handleKeys, http.MethodGet, http.MethodHead)
		return
	}
	// Every other endpoint logs someone in or hands out tokens: no web
	// page may drive it (see crossOrigin).
	if why := i.crossOrigin(r); why != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "dev issuer: refused a cross-origin request ("+why+"); log in with `pamctl login`", http.StatusForbidden)
		return
	}
	switch p {
	case PathAuthorize:
		i.onlyMethods(w, r, i.handleAuthorize, http.MethodGet)
	case PathToken:
		i.onlyMethods(w, r, i.handleToken, http.MethodPost)
	case PathDeviceCode:
		i.onlyMethods(w, r, i.handleDeviceCode, http.MethodPost)
	case PathDevice:
		i.onlyMethods(w, r, i.handleDeviceApprove, http.MethodGet)
	default:
		http.NotFound(w, r)
	}
}

// crossOrigin says why r came from a web page other than the issuer's own,
// or "" if it did not. The dev issuer logs in anyone as anyone with any
// groups, so a page in the user's browser must not be able to drive it: a
// cross-site fetch or form post to /token or /device/code, or a cross-site
// navigation to /authorize or /device, is refused. The CLI's flows keep
// working: its HTTP requests carry no Origin or Sec-Fetch-* headers, and a
// URL it opens in the browser (or the user pastes) is a navigation with
// Sec-Fetch-Site: none and no Referer.
func (i *Issuer) crossOrigin(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "none", "same-origin":
	default:
		return "Sec-Fetch-Site: " + site
	}
	self := i.origin()
	if o := r.Header.Get("Origin"); o != "" && o != self {
		return "Origin " + o
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		if u, err := url.Parse(ref); err != nil || u.Scheme+"://"+u.Host != self {
			return "Referer from another site"
		}
	}
	return ""
}

// origin is the issuer's web origin: scheme://host[:port].
func (i *Issuer) origin() string {
	u, _ := url.Parse(i.issuer) // validated by New
	return u.Scheme + "://" + u.Host
}

func (i *Issuer) onlyMethods(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, methods ...string) {
	for _, m := range methods {
		if r.Method == m {
			h(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

func (i *Issuer) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	claims := []string{
		"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
		"email", "email_verified", "preferred_username", "groups",
	}
	if i.noAuthTime {
		claims = slices.DeleteFunc(claims, func(c string) bool { return c == "auth_time" })
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.issuer,
		"authorization_endpoint":                i.issuer + PathAuthorize,
		"token_endpoint":                        i.issuer + PathToken,
		"jwks_uri":                              i.issuer + PathKeys,
		"device_authorization_endpoint":         i.issuer + PathDeviceCode,
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"grant_types_supported":                 []string{"authorization_code", GrantTypeDeviceCode},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      claims,
	})
}

func (i *Issuer) handleKeys(w http.ResponseWriter, _ *http.Request) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       &i.key.PublicKey,
		KeyID:     i.kid,
		Algorithm: string(jose.RS256),
		Use:       "sig",
	}}}
	writeJSON(w, http.StatusOK, set)
}

func (i *Issuer) clientAllowed(id string) bool {
	if id == "" {
		return false
	}
	return i.clients == nil || i.clients[id]
}

// sweepLocked drops expired codes and device grants. Callers hold i.mu.
func (i *Issuer) sweepLocked(now time.Time) {
	for k, c := range i.codes {
		if !now.Before(c.expiry) {
			delete(i.codes, k)
		}
	}
	for k, d := range i.devices {
		if !now.Before(d.expiry) {
			delete(i.devices, k)
			delete(i.users, d.userCode)
		}
	}
}

func newRS256Signer(key *rsa.PrivateKey, kid string) (jose.Signer, error) {
	s, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return s, nil
}

// keyID derives a stable kid from the public key (RFC 7638 thumbprint).
func keyID(pub *rsa.PublicKey) string {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		// Thumbprint of a valid RSA public key cannot fail; fall back to a
		// hash of the modulus rather than panicking.
		sum := sha256.Sum256(pub.N.Bytes())
		tp = sum[:]
	}
	return base64.RawURLEncoding.EncodeToString(tp[:12])
}

// randomToken returns an unguessable URL-safe token (256 bits of entropy).
func randomToken() string {
	return rand.Text() + rand.Text()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// oauthError writes an RFC 6749 section 5.2 error response.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}
