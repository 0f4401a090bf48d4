package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker"
)

// session is one browser's login to the UI, as this request sees it. The
// record lives in the broker's session store (kind "web"): it survives
// restarts, every replica sees it, `pamctl sessions` lists it and `pamctl
// sessions revoke` ends it. The cookie carries a random secret; the record
// is keyed by its hash (broker.WebSessionID) and the CSRF token is derived
// from it, so nothing stored or listed can be replayed as either.
type session struct {
	id       string // the record's id
	who      broker.Identity
	authTime time.Time // the IdP's auth_time, or the time of the login
	csrf     string
	expires  time.Time
}

// randomToken is 256 bits from crypto/rand, URL-safe.
func randomToken() string { return rand.Text() + rand.Text() }

// csrfOf derives the session's CSRF token from its cookie secret.
func csrfOf(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("pamctl web csrf"))
	return hex.EncodeToString(m.Sum(nil))
}

// session returns the caller's live session, or nil. Only a request the
// person made (userDriven) counts as a use that keeps the session from
// idling out (sessions.idle_timeout).
func (u *UI) session(r *http.Request) *session {
	secret := u.cookie(r, "pamctl-ui")
	if secret == "" {
		return nil
	}
	look := u.c.Service.CheckWebSession
	if userDriven(r) {
		look = u.c.Service.WebSession
	}
	who, rec, err := look(r.Context(), secret)
	if err != nil {
		if broker.ErrorCode(err) == broker.CodeInternal {
			u.c.Logger.Warn("ui: could not check a session", "err", err)
		}
		return nil
	}
	return &session{id: rec.ID, who: who, authTime: who.AuthTime, csrf: csrfOf(secret), expires: rec.ExpiresAt}
}

// refreshHeader marks the requests app.js makes to refresh the queue.
const refreshHeader = "X-Pamctl-Refresh"

// userDriven reports whether the person made r (opened a page: a link,
// the address bar, a form they sent) rather than their browser by itself:
// the live queue's event stream (/ui/events) and the refreshes app.js
// fetches after an event (Sec-Fetch-Mode other than navigate), a frame
// (Sec-Fetch-Dest other than document), a prefetch or prerender
// (Sec-Purpose, Purpose), and a top-level navigation another site (or a
// sibling subdomain) started without the person's click (cross-site or
// same-site without Sec-Fetch-User: ?1). A top-level navigation on this
// site or from the address bar, a bookmark or a native app (same-origin,
// none) counts without Sec-Fetch-User, which Safari never sends
// (webkit.org/b/247697): nothing on these pages navigates by itself
// (app.js never reloads), so such a navigation is the person's. A request
// without fetch metadata (a browser that sends none, as over plain http
// off localhost, or not a browser) counts as a use: it cannot be told
// apart, and the headers bind no one but browsers anyway.
func userDriven(r *http.Request) bool {
	// The live queue's stream, and the refreshes app.js marks (a browser
	// without fetch metadata cannot tell them from a page load otherwise;
	// only a script can set the header, and it only takes a use away).
	if r.URL.Path == "/ui/events" || r.Header.Get(refreshHeader) != "" {
		return false
	}
	if strings.Contains(r.Header.Get("Sec-Purpose"), "prefetch") || strings.Contains(r.Header.Get("Purpose"), "prefetch") {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Mode") {
	case "":
		return r.Header.Get("Sec-Fetch-Site") == "" && r.Header.Get("Sec-Fetch-Dest") == ""
	case "navigate":
		if r.Method == http.MethodPost {
			return true
		}
		if r.Header.Get("Sec-Fetch-Dest") != "document" {
			return false
		}
		if r.Header.Get("Sec-Fetch-User") == "?1" {
			return true
		}
		switch r.Header.Get("Sec-Fetch-Site") {
		case "same-origin", "none":
			return true
		}
	}
	return false
}

// validCSRF compares a form's token with the session's in constant time.
func (ss *session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// cookieName is __Host- prefixed under TLS: the browser then refuses it
// unless Secure, Path=/ and without Domain, so a sibling subdomain cannot
// plant or shadow it.
func (u *UI) cookieName(base string) string {
	if u.secure {
		return "__Host-" + base
	}
	return base
}

func (u *UI) setCookie(w http.ResponseWriter, base, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: u.cookieName(base), Value: value, Path: "/", HttpOnly: true, Secure: u.secure, SameSite: http.SameSiteLaxMode}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	} else {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

func (u *UI) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(u.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}
