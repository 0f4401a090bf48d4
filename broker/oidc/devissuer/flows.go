package devissuer

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"github.com/pamctl/pamctl/broker/safetext"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
)

// user is who the dev issuer logs in: auto-consented from login_hint/groups.
type user struct {
	name   string // login_hint as given; becomes sub and preferred_username
	email  string
	groups []string
}

type authCode struct {
	clientID    string
	redirectURI string
	challenge   string
	nonce       string
	scope       string
	user        user
	authTime    time.Time // when the user "authenticated": the auto-consent or the login form's submission
	expiry      time.Time
}

type deviceGrant struct {
	deviceCode string
	userCode   string // normalized
	clientID   string
	scope      string
	expiry     time.Time
	// hint and groups given to /device/code, used when /device names no user.
	hint, groups string
	approved     bool
	user         user
}

// parseUser turns the auto-consent parameters into a user.
func (i *Issuer) parseUser(loginHint, groups string) (user, error) {
	if loginHint == "" {
		return user{}, fmt.Errorf("the dev issuer has no login page: add login_hint=NAME (and groups=a,b) to the request")
	}
	if len(loginHint) > 128 || strings.IndexFunc(loginHint, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		return user{}, fmt.Errorf("login_hint must be 1-128 characters without spaces")
	}
	u := user{name: loginHint, email: loginHint}
	if !strings.Contains(loginHint, "@") {
		u.email = loginHint + "@" + i.emailDomain
	}
	if strings.ContainsFunc(loginHint, safetext.Unsafe) {
		// The broker refuses a verified email with invisible characters
		// (it would read as a namesake's): such a user has no email, as
		// at an IdP that keeps none for them, and is shown by name.
		u.email = ""
	}
	for g := range strings.SplitSeq(groups, ",") {
		g = strings.TrimSpace(g)
		if g == "" || slices.Contains(u.groups, g) {
			continue
		}
		if len(g) > 128 || strings.IndexFunc(g, unicode.IsControl) >= 0 {
			return user{}, fmt.Errorf("group names must be 1-128 printable characters")
		}
		u.groups = append(u.groups, g)
	}
	return u, nil
}

// isLoopbackRedirect accepts only http://127.0.0.1[:port]/..., http://[::1][:port]/...
// and http://localhost[:port]/... (RFC 8252 section 7.3, any port).
func isLoopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.Fragment != "" {
		return false
	}
	switch u.Hostname() {
	case "127.0.0.1", "::1", "localhost":
	default:
		return false
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return false
		}
	}
	return true
}

func hasScope(scope, want string) bool {
	return slices.Contains(strings.Fields(scope), want)
}

// validPKCEValue reports whether s is 43-128 characters of the RFC 7636
// unreserved set, the shape of both verifiers and S256 challenges.
func validPKCEValue(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' ||
			r == '-' || r == '.' || r == '_' || r == '~') {
			return false
		}
	}
	return true
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// handleAuthorize implements the authorization endpoint with auto-consent.
func (i *Issuer) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID, redirectURI, state := q.Get("client_id"), q.Get("redirect_uri"), q.Get("state")
	// Until the client and redirect URI are known good, errors go to the
	// browser, never to the redirect URI (RFC 6749 section 4.1.2.1).
	if !i.clientAllowed(clientID) {
		http.Error(w, "dev issuer: unknown client_id", http.StatusBadRequest)
		return
	}
	if !isLoopbackRedirect(redirectURI) && !i.redirects[redirectURI] {
		http.Error(w, "dev issuer: redirect_uri must be a loopback URI such as http://127.0.0.1:PORT/callback", http.StatusBadRequest)
		return
	}
	fail := func(code, desc string) {
		redirectWith(w, r, redirectURI, url.Values{"error": {code}, "error_description": {desc}, "state": {state}})
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	scope := q.Get("scope")
	if !hasScope(scope, "openid") {
		fail("invalid_scope", "scope must include openid")
		return
	}
	challenge := q.Get("code_challenge")
	if challenge == "" {
		fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
		return
	}
	if q.Get("code_challenge_method") != "S256" {
		fail("invalid_request", "code_challenge_method must be S256")
		return
	}
	if !validPKCEValue(challenge) {
		fail("invalid_request", "malformed code_challenge")
		return
	}
	if i.loginForm && (q.Get("login_hint") == "" || slices.Contains(strings.Fields(q.Get("prompt")), "login")) {
		// A browser login (the web UI): ask who to be, and again when the
		// client wants a fresh authentication (prompt=login).
		i.renderLoginForm(w, q)
		return
	}
	u, err := i.parseUser(q.Get("login_hint"), q.Get("groups"))
	if err != nil {
		fail("login_required", err.Error())
		return
	}
	code := randomToken()
	now := i.now()
	i.mu.Lock()
	i.sweepLocked(now)
	if len(i.codes) >= maxPending {
		i.mu.Unlock()
		fail("temporarily_unavailable", "too many pending logins")
		return
	}
	i.codes[code] = &authCode{
		clientID:    clientID,
		redirectURI: redirectURI,
		challenge:   challenge,
		nonce:       q.Get("nonce"),
		scope:       scope,
		user:        u,
		authTime:    now,
		expiry:      now.Add(i.codeTTL),
	}
	i.mu.Unlock()
	redirectWith(w, r, redirectURI, url.Values{"code": {code}, "state": {state}})
}

func redirectWith(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		http.Error(w, "dev issuer: bad redirect_uri", http.StatusBadRequest)
		return
	}
	q := u.Query()
	for k, v := range params {
		if len(v) > 0 && v[0] != "" {
			q[k] = v
		}
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// handleToken implements the token endpoint for both grants.
func (i *Issuer) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	clientID := r.PostForm.Get("client_id")
	if user, _, ok := r.BasicAuth(); ok && clientID == "" {
		clientID, _ = url.QueryUnescape(user)
	}
	if !i.clientAllowed(clientID) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client_id")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		i.redeemCode(w, r, clientID)
	case GrantTypeDeviceCode:
		i.redeemDevice(w, r, clientID)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type",
			"grant_type must be authorization_code or "+GrantTypeDeviceCode)
	}
}

func (i *Issuer) redeemCode(w http.ResponseWriter, r *http.Request, clientID string) {
	code := r.PostForm.Get("code")
	now := i.now()
	i.mu.Lock()
	c, ok := i.codes[code]
	// Single use: a code is spent by the first redemption attempt, good or bad.
	delete(i.codes, code)
	i.mu.Unlock()
	switch {
	case !ok || code == "":
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or already used authorization code")
	case !now.Before(c.expiry):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "authorization code expired")
	case c.clientID != clientID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "authorization code was issued to another client")
	case r.PostForm.Get("redirect_uri") != c.redirectURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
	default:
		verifier := r.PostForm.Get("code_verifier")
		if verifier == "" {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE code_verifier is required")
			return
		}
		if !validPKCEValue(verifier) ||
			subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(c.challenge)) != 1 {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE code_verifier does not match code_challenge")
			return
		}
		i.issueTokens(w, clientID, c.nonce, c.scope, c.user, c.authTime)
	}
}

func (i *Issuer) redeemDevice(w http.ResponseWriter, r *http.Request, clientID string) {
	dc := r.PostForm.Get("device_code")
	now := i.now()
	i.mu.Lock()
	g, ok := i.devices[dc]
	if !ok || dc == "" || g.clientID != clientID {
		i.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown device_code")
		return
	}
	if !now.Before(g.expiry) {
		delete(i.devices, dc)
		delete(i.users, g.userCode)
		i.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "expired_token", "device code expired; start again")
		return
	}
	if !g.approved {
		i.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "authorization_pending", "waiting for the user to approve the device code")
		return
	}
	delete(i.devices, dc)
	delete(i.users, g.userCode)
	i.mu.Unlock()
	i.issueTokens(w, clientID, "", g.scope, g.user, time.Time{})
}

// issueTokens answers a token request; authTime zero means now (the
// device flow: the user approved the code just before this poll).
func (i *Issuer) issueTokens(w http.ResponseWriter, clientID, nonce, scope string, u user, authTime time.Time) {
	idToken, err := i.Mint(Claims{
		AuthTime: authTime,
		Subject:  u.name,
		Email:    u.email,
		Groups:   u.groups,
		Audience: clientID,
		Nonce:    nonce,
		Extra:    map[string]any{"preferred_username": u.name},
	})
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "could not sign the ID token")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		// The dev issuer has no resource server; the access token is opaque
		// and unused, present because OAuth 2.0 clients require one.
		"access_token": randomToken(),
		"token_type":   "Bearer",
		"expires_in":   int(i.tokenTTL / time.Second),
		"id_token":     idToken,
		"scope":        scope,
	})
}

// handleDeviceCode implements the RFC 8628 device authorization endpoint.
func (i *Issuer) handleDeviceCode(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	clientID := r.PostForm.Get("client_id")
	if !i.clientAllowed(clientID) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client_id")
		return
	}
	scope := r.PostForm.Get("scope")
	if !hasScope(scope, "openid") {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "scope must include openid")
		return
	}
	now := i.now()
	g := &deviceGrant{
		deviceCode: randomToken(),
		clientID:   clientID,
		scope:      scope,
		expiry:     now.Add(i.deviceTTL),
		hint:       r.PostForm.Get("login_hint"),
		groups:     r.PostForm.Get("groups"),
	}
	i.mu.Lock()
	i.sweepLocked(now)
	if len(i.devices) >= maxPending {
		i.mu.Unlock()
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "too many pending device codes")
		return
	}
	for {
		g.userCode = newUserCode()
		if _, taken := i.users[g.userCode]; !taken {
			break
		}
	}
	i.devices[g.deviceCode] = g
	i.users[g.userCode] = g
	i.mu.Unlock()
	display := g.userCode[:4] + "-" + g.userCode[4:]
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":               g.deviceCode,
		"user_code":                 display,
		"verification_uri":          i.issuer + PathDevice,
		"verification_uri_complete": i.issuer + PathDevice + "?user_code=" + display,
		"expires_in":                int(i.deviceTTL / time.Second),
		"interval":                  i.pollInterval,
	})
}

// handleDeviceApprove is the verification URI. With no UI, visiting it with
// user_code and login_hint (and optionally groups) approves the device.
func (i *Issuer) handleDeviceApprove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.Header().Set("Cache-Control", "no-store")
	code := normalizeUserCode(q.Get("user_code"))
	if code == "" {
		http.Error(w, "dev issuer: approve a device with "+i.issuer+PathDevice+"?user_code=CODE&login_hint=NAME&groups=a,b", http.StatusBadRequest)
		return
	}
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	g, ok := i.users[code]
	if !ok || !now.Before(g.expiry) {
		http.Error(w, "dev issuer: unknown or expired user code", http.StatusBadRequest)
		return
	}
	if g.approved {
		http.Error(w, "dev issuer: this user code was already approved", http.StatusConflict)
		return
	}
	hint, groups := q.Get("login_hint"), q.Get("groups")
	if hint == "" {
		hint = g.hint
		if !q.Has("groups") {
			groups = g.groups
		}
	}
	u, err := i.parseUser(hint, groups)
	if err != nil {
		http.Error(w, "dev issuer: "+err.Error(), http.StatusBadRequest)
		return
	}
	g.user, g.approved = u, true
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "dev issuer: device approved for %s; return to your terminal.\n", u.name)
}

// userCodeAlphabet avoids vowels and look-alike characters (RFC 8628 section 6.1).
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// newUserCode returns 8 characters from userCodeAlphabet (about 34 bits).
func newUserCode() string {
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() < 8 {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand.Read never fails on supported platforms
		}
		// Reject the top of the byte range to avoid modulo bias.
		if int(buf[0]) >= 256-256%len(userCodeAlphabet) {
			continue
		}
		b.WriteByte(userCodeAlphabet[int(buf[0])%len(userCodeAlphabet)])
	}
	return b.String()
}

// normalizeUserCode uppercases and drops separators, so "bcdf-ghjk" matches.
func normalizeUserCode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if strings.ContainsRune(userCodeAlphabet, r) {
			b.WriteRune(r)
		} else if r != '-' && r != ' ' {
			return ""
		}
	}
	return b.String()
}
