package ui

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
)

// pendingLogin is an authorization request on its way through the IdP. It
// travels sealed in the browser's pamctl-login cookie (sealLogin), not in
// the broker's memory: the callback may reach any replica behind a load
// balancer, and nobody can fill a replica's memory by starting logins.
type pendingLogin struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
	Reauth   bool   `json:"r,omitempty"` // step-up: the IdP was asked to authenticate again
	// Here: the login was started from this site (or the address bar), so
	// the callback may vouch for the return to Next (afterLoginMark).
	Here    bool      `json:"h,omitempty"`
	Started time.Time `json:"t"`
}

const (
	// loginTTL bounds a login from /ui/login to /ui/callback.
	loginTTL = 10 * time.Minute
	// loginAAD binds a sealed login to its purpose.
	loginAAD = "pamctl ui login v1"
	// maxLoginCookie bounds the cookie, written and read back (browsers
	// keep 4 KiB a cookie): a sealed login with a plain 1 KiB next is
	// under 2 KiB.
	maxLoginCookie = 3072
	// authTimeSkew is how far the IdP's clock may be from ours when a
	// step-up checks that auth_time is new.
	authTimeSkew = 30 * time.Second
	// afterLoginTTL bounds the pamctl-next cookie: the browser follows the
	// callback's redirect at once.
	afterLoginTTL = 2 * time.Minute
)

// afterLoginMark is the pamctl-next cookie's value for a session whose
// CSRF token is csrf, returning to next after a login started on this
// site: the IdP's redirect chain makes the browser call that return
// cross-site, and this mark lets a read that checks where it came from
// (fromElsewhere) take it once. Bound to the session (a mark from another
// session does not match) and to next (it admits no other page).
func afterLoginMark(csrf, next string) string {
	m := hmac.New(sha256.New, []byte(csrf))
	m.Write([]byte("pamctl ui after login\x00" + next))
	return hex.EncodeToString(m.Sum(nil))
}

// Sealer encrypts and authenticates small values (vault.Sealer). Every
// replica must hold the same key, or a login started at one cannot finish
// at another.
type Sealer interface {
	Seal(plaintext []byte, aad string) ([]byte, error)
	Open(sealed []byte, aad string) ([]byte, error)
}

// sealLogin is p as the pamctl-login cookie's value.
func (u *UI) sealLogin(p *pendingLogin) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	sealed, err := u.c.LoginSealer.Seal(b, loginAAD)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// openLogin reads back the login a callback's state belongs to: the
// browser's cookie must open under our key, hold that very state (in
// constant time) and be younger than loginTTL. Each cookie is cleared by
// the callback that reads it; a copy replayed later still needs an
// authorization code, which the IdP redeems once, bound to the cookie's
// PKCE verifier.
func (u *UI) openLogin(cookie, state string, now time.Time) (*pendingLogin, error) {
	if cookie == "" || len(cookie) > maxLoginCookie {
		return nil, errLoginElsewhere
	}
	sealed, err := base64.RawURLEncoding.DecodeString(cookie)
	if err != nil {
		return nil, errLoginElsewhere
	}
	b, err := u.c.LoginSealer.Open(sealed, loginAAD)
	if err != nil {
		return nil, errLoginElsewhere
	}
	var p pendingLogin
	if json.Unmarshal(b, &p) != nil || p.State == "" || p.Nonce == "" || p.Verifier == "" {
		return nil, errLoginElsewhere
	}
	if subtle.ConstantTimeCompare([]byte(state), []byte(p.State)) != 1 {
		return nil, errLoginElsewhere
	}
	if age := now.Sub(p.Started); age >= loginTTL || age < -authTimeSkew {
		return nil, errLoginExpired
	}
	p.Next = localPath(p.Next)
	return &p, nil
}

var (
	errLoginElsewhere = errors.New("this login did not start in this browser")
	errLoginExpired   = errors.New("this login has expired")
)

// discoveryTTL is how long a discovered IdP configuration is reused: an
// unauthenticated /ui/login must not make the broker call the IdP each
// time, and an IdP moving its endpoints is followed within minutes.
const discoveryTTL = 5 * time.Minute

// oauthConfig returns the code flow's client config, discovering the
// issuer at most once per discoveryTTL (a failure is retried next time).
func (u *UI) oauthConfig(ctx context.Context) (*oauth2.Config, error) {
	u.discoMu.Lock()
	defer u.discoMu.Unlock()
	now := u.c.Now()
	if u.disco == nil || now.Sub(u.discoAt) >= discoveryTTL {
		dctx, cancel := context.WithTimeout(gooidc.ClientContext(context.WithoutCancel(ctx), u.c.HTTPClient), 15*time.Second)
		defer cancel()
		p, err := gooidc.NewProvider(dctx, u.c.Issuer.URL)
		if err != nil {
			return nil, err
		}
		u.disco, u.discoAt = p, now
	}
	ep := u.disco.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	scopes := u.c.Issuer.Scopes
	if len(scopes) == 0 {
		scopes = oidc.DefaultScopes
	}
	if !containsString(scopes, gooidc.ScopeOpenID) {
		scopes = append([]string{gooidc.ScopeOpenID}, scopes...)
	}
	return &oauth2.Config{ClientID: u.c.Issuer.ClientID, Endpoint: ep,
		RedirectURL: u.c.PublicURL + "/ui/callback", Scopes: scopes}, nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// login starts the code flow: GET /ui/login?next=/ui/...&reauth=1. Every
// login asks for an authentication within approvals.reauth_after
// (max_age); with reauth the IdP is also told to authenticate the person
// again now (prompt=login) whatever session it holds.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	conf, err := u.oauthConfig(r.Context())
	if err != nil {
		u.c.Logger.Warn("ui: identity provider discovery failed", "issuer", u.c.Issuer.Name, "err", err)
		u.fail(w, r, http.StatusBadGateway, "The identity provider could not be reached", "Try again in a moment; if it persists, the broker's log says why.")
		return
	}
	// A login started here (a page of this site redirecting for a login or
	// step-up, the address bar) may return to a read that checks where it
	// came from without asking again; one a page elsewhere started may not.
	p := &pendingLogin{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Next: localPath(q.Get("next")), Reauth: q.Get("reauth") == "1", Here: u.fromElsewhere(r) == "", Started: u.c.Now()}
	sealed, err := u.sealLogin(p)
	if err == nil && len(sealed) > maxLoginCookie {
		// A next that escapes to more than the cookie can hold (JSON
		// escapes <, > and & six-fold) returns to the queue instead.
		p.Next = "/ui/"
		sealed, err = u.sealLogin(p)
	}
	if err != nil {
		u.c.Logger.Error("ui: could not seal a login", "err", err)
		u.fail(w, r, http.StatusInternalServerError, "The login could not be started", "The broker's log says why; try again.")
		return
	}
	// Every login asks for an authentication no older than
	// approvals.reauth_after (max_age, OIDC Core 3.1.2.1: the IdP
	// authenticates again when its own is older, and must send auth_time),
	// as `pamctl login` does: an IdP session cookie alone must not make a
	// session that counts as freshly authenticated. A step-up also asks
	// to authenticate again now (prompt=login).
	maxAge := int(u.c.Service.ReauthAfter() / time.Second)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(p.Verifier), gooidc.Nonce(p.Nonce),
		oauth2.SetAuthURLParam("max_age", strconv.Itoa(max(maxAge, 0)))}
	if p.Reauth {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	// The login in flight is bound to this browser: a callback carrying a
	// state minted for someone else's browser (login CSRF) finds no cookie
	// that holds it.
	u.setCookie(w, "pamctl-login", sealed, loginTTL)
	http.Redirect(w, r, conf.AuthCodeURL(p.State, opts...), http.StatusSeeOther)
}

// callback finishes the code flow at <public_url>/ui/callback.
func (u *UI) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bound := u.cookie(r, "pamctl-login")
	u.setCookie(w, "pamctl-login", "", 0)
	p, err := u.openLogin(bound, q.Get("state"), u.c.Now())
	switch {
	case errors.Is(err, errLoginExpired):
		u.fail(w, r, http.StatusBadRequest, "This login has expired", "Start again from the login link.")
		return
	case err != nil:
		u.fail(w, r, http.StatusBadRequest, "This login did not start in this browser", "Start again from the login link; a link someone sent you cannot log you in.")
		return
	}
	if e := q.Get("error"); e != "" {
		u.fail(w, r, http.StatusUnauthorized, "The identity provider refused the login", "It said: "+clip(e+" "+q.Get("error_description"), 300))
		return
	}
	code := q.Get("code")
	if code == "" {
		u.fail(w, r, http.StatusBadRequest, "The identity provider sent no authorization code", "Start again from the login link.")
		return
	}
	conf, err := u.oauthConfig(r.Context())
	if err != nil {
		u.fail(w, r, http.StatusBadGateway, "The identity provider could not be reached", "Try again in a moment.")
		return
	}
	tok, err := conf.Exchange(gooidc.ClientContext(r.Context(), u.c.HTTPClient), code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		u.c.Logger.Warn("ui: code exchange failed", "issuer", u.c.Issuer.Name, "err", err)
		u.fail(w, r, http.StatusBadGateway, "The login could not be completed", "The identity provider did not accept the authorization code; start again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		u.fail(w, r, http.StatusBadGateway, "The identity provider sent no ID token", "Check that the openid scope is configured for this client.")
		return
	}
	access := ""
	if u.c.Issuer.SendAccessToken {
		access = tok.AccessToken
	}
	client := clientOf(r)
	id, err := u.c.Verifier.VerifyLogin(r.Context(), raw, p.Nonce, access)
	if err != nil {
		reason := "the identity token could not be verified"
		var ve *oidc.VerifyError
		if errors.As(err, &ve) {
			reason = ve.Error()
		}
		u.emit(r.Context(), &audit.Event{Type: audit.TypeLoginFailed, Decision: "deny", Reasons: []string{reason}, Client: &client, Details: map[string]string{"via": "web"}})
		u.fail(w, r, http.StatusUnauthorized, "Your identity could not be verified", reason)
		return
	}
	if id.Kind == oidc.KindService {
		u.fail(w, r, http.StatusForbidden, "Workload identities cannot use the web UI", "Log in as a person.")
		return
	}
	now := u.c.Now()
	// auth_time from the verified token (the verifier refuses a malformed
	// one), or this login's time when it is later than now (an IdP clock
	// ahead of ours cannot make the session look fresh for longer than it
	// is; the broker clamps it too). None (zero) makes a session that
	// cannot step up: nothing shows the IdP saw the person.
	authTime := id.AuthTime
	if authTime.After(now) {
		authTime = now
	}
	if p.Reauth && authTime.IsZero() {
		// Taking it would loop: the session could never step up.
		u.fail(w, r, http.StatusForbidden, "Your identity provider did not say when you logged in",
			"Deciding needs a recent login (approvals.reauth_after), and the ID token has no auth_time, so nothing shows the identity provider asked you to log in. Ask its administrator to include auth_time in ID tokens (OIDC Core requires it with max_age), or, only if it never can, to set step_up_without_auth_time: true on this issuer in pamctl's config.")
		return
	}
	if p.Reauth && authTime.Before(p.Started.Add(-authTimeSkew)) {
		// Asked to authenticate again, the IdP answered with an old
		// authentication: taking it would loop, and the step-up did not happen.
		u.fail(w, r, http.StatusForbidden, "Your identity provider did not ask you to log in again",
			"Deciding needs a fresh login (approvals.reauth_after). The IdP ignored prompt=login and max_age; ask its administrator to honour them for this client.")
		return
	}
	if err := u.c.Service.RedeemIDToken(r.Context(), raw, id, client); err != nil {
		if broker.ErrorCode(err) != broker.CodeUnauthenticated {
			u.c.Logger.Error("ui: could not record the login", "err", err)
			u.fail(w, r, http.StatusInternalServerError, "The login could not be recorded", "The broker's log says why; try again.")
			return
		}
		u.fail(w, r, http.StatusUnauthorized, "This login was already used", "Log in again.")
		return
	}
	who := broker.VerifiedIdentity(id)
	// A new session every login (no fixation); a session the browser had
	// before is ended.
	if old := u.session(r); old != nil {
		_ = u.c.Service.Logout(r.Context(), old.who, old.id, client)
	}
	secret := randomToken()
	rec, err := u.c.Service.OpenWebSession(r.Context(), who, authTime, client, secret, u.c.SessionTTL)
	if err != nil {
		u.c.Logger.Error("ui: could not open a session", "err", err)
		u.fail(w, r, http.StatusInternalServerError, "The login could not be recorded", "The broker's log says why; try again.")
		return
	}
	u.setCookie(w, "pamctl-ui", secret, rec.ExpiresAt.Sub(now))
	if p.Here {
		u.setCookie(w, "pamctl-next", afterLoginMark(csrfOf(secret), p.Next), afterLoginTTL)
	}
	details := map[string]string{"via": "web", "session": rec.ID, "expires": rec.ExpiresAt.UTC().Format(time.RFC3339)}
	if !authTime.IsZero() {
		details["auth_time"] = authTime.UTC().Format(time.RFC3339)
	}
	u.emit(r.Context(), &audit.Event{Type: audit.TypeLogin, Actor: actorOf(who), Decision: "allow", Client: &client, Details: details})
	http.Redirect(w, r, p.Next, http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	u.setCookie(w, "pamctl-ui", "", 0)
	// The broker ends the record (every replica refuses the cookie from
	// now on) and writes the logout event.
	if err := u.c.Service.Logout(r.Context(), ss.who, ss.id, clientOf(r)); err != nil {
		u.serviceError(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "loggedout", nil, pageData{Title: "Logged out"})
}

func (u *UI) emit(ctx context.Context, e *audit.Event) {
	if err := u.c.Audit.Append(context.WithoutCancel(ctx), e); err != nil {
		u.c.Logger.Debug("ui: audit append failed", "type", e.Type, "err", err)
	}
}

func actorOf(i broker.Identity) *audit.Actor {
	return &audit.Actor{Subject: i.Subject, Display: i.Display, Email: i.Email, Groups: i.Groups, Issuer: i.Issuer, Kind: audit.ActorKind(i.Kind), Act: i.Act}
}

func clientOf(r *http.Request) audit.Client {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return audit.Client{RemoteAddr: host, UserAgent: clip(r.UserAgent(), 256)}
}

// clip bounds s to n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
