// Package ui is the broker's web approval page, served under /ui/ on the
// broker's listener: OIDC login (authorization code + PKCE) into a
// short-lived cookie session of its own, the queue of requests and held
// calls an approver may review (live over server-sent events), one item's
// page with its decision form, the person's own requests and grants, and
// the audit trail with the CLI's filters. Pages are server-rendered
// (html/template, embedded assets, no JavaScript needed to read or decide).
// Every decision goes through broker.Service with the same rules as the
// API; this package adds only the web's own defences: CSRF tokens bound to
// the session, Origin / Sec-Fetch-Site checks (on forms, and on the audit
// reads, which write audit.read), a session idle clock that only the
// person's own navigations move, strict security headers,
// local-only return paths, and step-up through the IdP (prompt=login,
// max_age) when the login is older than approvals.reauth_after (the
// broker's StepUp decides; the UI asks before showing a form and follows
// a *broker.StepUpError from any action).
package ui

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/vault"
)

// Service is what the UI asks of the broker (broker.Service implements it).
type Service interface {
	List(ctx context.Context, who broker.Identity, pendingOnly bool) ([]*broker.Request, error)
	Get(ctx context.Context, who broker.Identity, id string) (*broker.Request, error)
	// Stored reports whether the store holds request id (for anyone).
	Stored(ctx context.Context, id string) (bool, error)
	Review(ctx context.Context, reviewer broker.Identity, id string, approve bool, reason string, narrow []string) (*broker.Request, error)
	Revoke(ctx context.Context, who broker.Identity, id string, admin bool) (*broker.Request, error)
	CanReview(r *broker.Request, reviewer broker.Identity) (bool, string)
	CanReadAudit(ctx context.Context, who broker.Identity) error
	// RedeemIDToken refuses a person's ID token that already opened a
	// session (CLI or web), audited.
	RedeemIDToken(ctx context.Context, raw string, id oidc.Identity, client audit.Client) error
	// Web sessions, kept in the broker's session store.
	OpenWebSession(ctx context.Context, who broker.Identity, authTime time.Time, client audit.Client, secret string, ttl time.Duration) (*broker.SessionRecord, error)
	WebSession(ctx context.Context, secret string) (broker.Identity, *broker.SessionRecord, error)
	// CheckWebSession is WebSession without recording a use (the
	// browser's own requests: they do not keep a session from idling out).
	CheckWebSession(ctx context.Context, secret string) (broker.Identity, *broker.SessionRecord, error)
	Logout(ctx context.Context, who broker.Identity, sessionID string, client audit.Client) error
	// StepUp refuses (a *broker.StepUpError) when who's IdP authentication
	// is older than approvals.reauth_after; ReauthAfter says how old.
	StepUp(who broker.Identity, action string) error
	ReauthAfter() time.Duration
}

var _ Service = (*broker.Service)(nil)

// AuditLog is what the UI needs of the trail (broker/audit.Log has it).
type AuditLog interface {
	audit.Sink
	Range(ctx context.Context, fromSeq uint64, fn func(audit.Event) bool) error
	Head(ctx context.Context) (audit.Status, error)
	Subscribe(ctx context.Context, fromSeq uint64) *audit.Subscription
}

var _ AuditLog = audit.Log(nil)

// LoginVerifier verifies the ID token of a login (broker/oidc.Verifier, the
// same verifier the API's POST /v1/login uses).
type LoginVerifier interface {
	VerifyLogin(ctx context.Context, rawIDToken, nonce, accessToken string) (oidc.Identity, error)
}

var _ LoginVerifier = (*oidc.Verifier)(nil)

// Issuer is the interactive OIDC issuer people log in with.
type Issuer struct {
	Name     string
	URL      string
	ClientID string // a public client: PKCE, no secret
	Scopes   []string
	// SendAccessToken: groups come from userinfo (groups_source: userinfo).
	SendAccessToken bool
}

// Config wires a UI.
type Config struct {
	Service Service
	// Audit is the trail: the audit view reads it, logins and logouts are
	// appended to it, and the queue's live updates follow it.
	Audit    AuditLog
	Verifier LoginVerifier
	Issuer   Issuer
	// PublicURL is ui.public_url (see ValidatePublicURL).
	PublicURL string
	// InsecurePlaintext allows an http:// PublicURL (loopback only):
	// ui.insecure_plaintext, or serve --dev. Without it New refuses one
	// (ErrPlainLoopback).
	InsecurePlaintext bool
	// HTTPClient reaches the IdP (discovery, token endpoint); nil: 15 s timeout.
	HTTPClient *http.Client
	// SessionTTL is a UI session's absolute lifetime (default 1h, never
	// past sessions.max_lifetime); sessions.idle_timeout ends it sooner
	// when unused.
	SessionTTL time.Duration
	// LoginSealer seals the logins in flight kept in browsers' cookies
	// (vault.Vault.DerivedSealer): replicas behind one public_url must
	// share its key. Nil: a key of this process's own, so a login started
	// here finishes only here, or before a restart.
	LoginSealer Sealer
	// Stopping ends the live-update streams at shutdown.
	Stopping <-chan struct{}
	Logger   *slog.Logger
	Now      func() time.Time
}

// UI serves the web approval page. Mount Handler at "/ui/".
type UI struct {
	c      Config
	origin string // of PublicURL
	secure bool   // PublicURL is https: Secure, __Host- cookies
	pages  map[string]*template.Template
	static http.Handler
	csp    string

	streams streamCount // open /ui/events streams
	// keepAliveNS overrides keepAlive (tests); 0: keepAlive.
	keepAliveNS atomic.Int64

	discoMu sync.Mutex
	disco   *gooidc.Provider // cached discovery (oauthConfig)
	discoAt time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults.
const (
	DefaultSessionTTL = time.Hour
	// MaxFormBody caps a POSTed form: a decision is a reason (1 KiB in
	// policy), some scopes and the CSRF token; the API's cap for reviews.
	MaxFormBody = api.MaxRequestBody
)

// New checks c and returns a UI.
func New(c Config) (*UI, error) {
	if err := ValidatePublicURL(c.PublicURL); err != nil {
		return nil, errors.New("ui.public_url: " + err.Error())
	}
	if PlainHTTP(c.PublicURL) && !c.InsecurePlaintext {
		return nil, errors.New("ui.public_url: " + ErrPlainLoopback.Error())
	}
	if c.Service == nil || c.Audit == nil || c.Verifier == nil {
		return nil, errors.New("ui: service, audit log and verifier are required")
	}
	if c.Issuer.URL == "" || c.Issuer.ClientID == "" {
		return nil, errors.New("ui: an interactive issuer (url, client_id) is required to log in to the web UI")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if c.LoginSealer == nil {
		k, err := vault.GenerateMasterKey()
		if err != nil {
			return nil, err
		}
		if c.LoginSealer, err = vault.NewSealer(k); err != nil {
			return nil, err
		}
	}
	u := &UI{c: c, origin: origin(c.PublicURL), secure: strings.HasPrefix(c.PublicURL, "https://")}
	var err error
	if u.pages, err = parsePages(); err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(staticFS, "static")
	u.static = http.StripPrefix("/ui/static/", http.FileServerFS(sub))
	// form-action must allow the IdP: a POST that needs a fresh login is
	// answered with a redirect there, and browsers hold redirects after a
	// form submission to form-action.
	idp := origin(c.Issuer.URL)
	u.csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
		"form-action 'self' " + idp + "; base-uri 'none'; frame-ancestors 'none'"
	return u, nil
}

// Handler serves /ui/ (mount it at "/ui/" on the broker's public mux, which
// checks the Host header).
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/{$}", u.page(u.queue))
	mux.HandleFunc("GET /ui/requests/{id}", u.page(u.item))
	mux.HandleFunc("POST /ui/requests/{id}/decide", u.post(u.decide))
	mux.HandleFunc("POST /ui/requests/{id}/revoke", u.post(u.revoke))
	mux.HandleFunc("GET /ui/mine", u.page(u.mine))
	mux.HandleFunc("GET /ui/audit", u.page(u.auditView))
	mux.HandleFunc("GET /ui/audit/grants/{id}", u.page(u.timeline))
	mux.HandleFunc("GET /ui/events", u.events)
	mux.HandleFunc("GET /ui/login", u.login)
	mux.HandleFunc("GET /ui/callback", u.callback)
	mux.HandleFunc("POST /ui/logout", u.post(u.logout))
	mux.HandleFunc("GET /ui/static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		u.static.ServeHTTP(w, r)
	})
	return u.headers(mux)
}

// headers sets the security headers on every answer: no framing, no
// inline script or style, no referrer, no caching of pages with data.
func (u *UI) headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", u.csp)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if u.secure {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		hd.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.Method != http.MethodPost {
			if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
				w.Header().Set("Connection", "close")
				http.Error(w, "this page takes no request body", http.StatusRequestEntityTooLarge)
				return
			}
			// Nothing left to read: lift the listener's read deadline, which
			// would otherwise end the live-update stream and cancel a login
			// waiting on a slow IdP (post lifts it once the form is in).
			_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		}
		h.ServeHTTP(w, r)
	})
}

// sameOrigin says why a state-changing request did not come from the UI's
// own pages, or "" if it did. Browsers send Sec-Fetch-Site on every
// request (pages cannot forge it); under Referrer-Policy: no-referrer a
// same-origin form post carries Origin: null, so Origin must be ours or
// "null" with Sec-Fetch-Site same-origin, and ours exactly without it.
func (u *UI) sameOrigin(r *http.Request) string {
	site := r.Header.Get("Sec-Fetch-Site")
	o := r.Header.Get("Origin")
	switch {
	case site != "" && site != "same-origin":
		return "Sec-Fetch-Site: " + site
	case o == "" && site == "":
		return "no Origin header"
	case o != "" && o != "null" && !strings.EqualFold(o, u.origin):
		return "Origin " + o
	case o == "null" && site != "same-origin":
		return "Origin null"
	}
	return ""
}

// localPath returns next if it is a path of this UI (/ui/...), "/ui/"
// otherwise: the post-login return is never an open redirect.
func localPath(next string) string {
	if next == "" || len(next) > 1024 || strings.ContainsAny(next, "\\\r\n\t") {
		return "/ui/"
	}
	p, err := url.Parse(next)
	if err != nil || p.Scheme != "" || p.Host != "" || p.User != nil || p.Opaque != "" ||
		!strings.HasPrefix(p.Path, "/ui/") || strings.HasPrefix(next, "//") ||
		strings.Contains(p.Path, "/..") || strings.Contains(p.Path, "/./") || strings.Contains(p.Path, "//") || p.Path == "/ui/callback" || p.Path == "/ui/login" {
		return "/ui/"
	}
	return p.RequestURI()
}
