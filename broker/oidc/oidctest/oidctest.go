// Package oidctest serves in-process identity providers that behave like the
// enterprise IdPs docs/identity.md documents: a confidential client whose
// token endpoint requires a secret even with PKCE (Google), one registered
// redirect URI matched exactly, port included (Okta), groups only at the
// userinfo endpoint (Okta org server, many generic IdPs), and Entra's group
// overage. Each is the development issuer (broker/oidc/devissuer) behind a
// handler that adds the behaviour, so the recipes in the docs are tested
// against the same flows `pamctl login` runs. For tests only.
package oidctest

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// PathUserinfo is the userinfo endpoint, relative to the issuer URL.
const PathUserinfo = "/userinfo"

// Options picks the behaviours of an IdP. The zero value is the plain dev
// issuer plus a userinfo endpoint.
type Options struct {
	// ClientSecret, when set, is required at the token endpoint
	// (client_secret_post or client_secret_basic), as Google does for
	// desktop clients even with PKCE.
	ClientSecret string
	// RedirectURI, when set, is the only redirect URI /authorize accepts,
	// compared exactly, port included (Okta).
	RedirectURI string
	// GroupsOnlyInUserinfo leaves groups out of the ID token; the userinfo
	// endpoint has them. The ID token then binds the access token (at_hash).
	GroupsOnlyInUserinfo bool
	// Overage replaces the groups in the ID token and userinfo with Entra's
	// overage reference (_claim_names / _claim_sources).
	Overage bool
	// UserinfoSubject, when set, is the sub userinfo answers with, to test
	// that a mismatch with the ID token's sub is refused.
	UserinfoSubject string
	// UserinfoURL, when set, is the userinfo_endpoint discovery advertises
	// instead of the IdP's own.
	UserinfoURL string
	// Issuer options (the signing key, clock, ...).
	Issuer []devissuer.Option
}

// IdP is a running in-process identity provider.
type IdP struct {
	*devissuer.Issuer
	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	users    map[string]map[string]any // access token -> userinfo claims
	Userinfo int                       // userinfo calls answered 200
}

// Start serves an IdP on a loopback httptest server until the test ends.
func Start(t testing.TB, o Options) *IdP {
	t.Helper()
	p := &IdP{srv: httptest.NewUnstartedServer(nil), opts: o, users: map[string]map[string]any{}}
	iss, err := devissuer.New("http://"+p.srv.Listener.Addr().String(), o.Issuer...)
	if err != nil {
		t.Fatal(err)
	}
	p.Issuer = iss
	p.srv.Config.Handler = http.HandlerFunc(p.serve)
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

// UserinfoCalls reports how many userinfo requests were answered.
func (p *IdP) UserinfoCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Userinfo
}

func (p *IdP) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case devissuer.PathDiscovery:
		p.discovery(w, r)
	case devissuer.PathAuthorize:
		if p.opts.RedirectURI != "" && r.URL.Query().Get("redirect_uri") != p.opts.RedirectURI {
			// Okta shows this page and does not redirect.
			http.Error(w, "The 'redirect_uri' parameter must be a Login redirect URI in the client app settings", http.StatusBadRequest)
			return
		}
		p.Issuer.ServeHTTP(w, r)
	case devissuer.PathToken:
		p.token(w, r)
	case PathUserinfo:
		p.userinfo(w, r)
	default:
		p.Issuer.ServeHTTP(w, r)
	}
}

func (p *IdP) discovery(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	p.Issuer.ServeHTTP(rec, r)
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	doc["userinfo_endpoint"] = p.URL() + PathUserinfo
	if p.opts.UserinfoURL != "" {
		doc["userinfo_endpoint"] = p.opts.UserinfoURL
	}
	if p.opts.ClientSecret != "" {
		doc["token_endpoint_auth_methods_supported"] = []string{"client_secret_post", "client_secret_basic"}
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *IdP) token(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if p.opts.ClientSecret != "" {
		form, _ := url.ParseQuery(string(body))
		got := form.Get("client_secret")
		if _, pw, ok := r.BasicAuth(); ok {
			got, _ = url.QueryUnescape(pw)
		}
		if got == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "client_secret is missing."})
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(p.opts.ClientSecret)) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Unauthorized"})
			return
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	p.Issuer.ServeHTTP(rec, r)
	var resp map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &resp) != nil {
		copyResponse(w, rec)
		return
	}
	idToken, _ := resp["id_token"].(string)
	access, _ := resp["access_token"].(string)
	claims, err := payload(idToken)
	if err != nil || access == "" {
		copyResponse(w, rec)
		return
	}
	info := map[string]any{"sub": claims["sub"], "preferred_username": claims["preferred_username"]}
	if e, ok := claims["email"]; ok {
		info["email"], info["email_verified"] = e, true
	}
	if p.opts.UserinfoSubject != "" {
		info["sub"] = p.opts.UserinfoSubject
	}
	groups := stringsOf(claims["groups"])
	switch {
	case p.opts.Overage:
		info["_claim_names"] = overageNames()
		info["_claim_sources"] = overageSources(claims["sub"])
	case len(groups) > 0:
		info["groups"] = groups
	}
	p.mu.Lock()
	p.users[access] = info
	p.mu.Unlock()

	if p.opts.GroupsOnlyInUserinfo || p.opts.Overage {
		c := devissuer.Claims{
			Subject:  str(claims["sub"]),
			Email:    str(claims["email"]),
			Audience: str(claims["aud"]),
			Nonce:    str(claims["nonce"]),
			Extra:    map[string]any{"preferred_username": claims["preferred_username"]},
		}
		if p.opts.Overage {
			c.Extra["_claim_names"] = overageNames()
			c.Extra["_claim_sources"] = overageSources(claims["sub"])
		} else {
			c.Extra["at_hash"] = AtHash(access)
		}
		if resp["id_token"], err = p.Mint(c); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (p *IdP) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	info, known := p.users[tok]
	if ok && known {
		p.Userinfo++
	}
	p.mu.Unlock()
	if !ok || !known {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// AtHash is the at_hash of an access token for an RS256 ID token.
func AtHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

func overageNames() map[string]any { return map[string]any{"groups": "src1"} }

func overageSources(sub any) map[string]any {
	return map[string]any{"src1": map[string]any{
		"endpoint": "https://graph.windows.net/TENANT/users/" + str(sub) + "/getMemberObjects",
	}}
}

func payload(jwt string) (map[string]any, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, io.ErrUnexpectedEOF
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func stringsOf(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
