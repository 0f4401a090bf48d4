package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker"
)

// session is one browser's login to the UI. The cookie carries secret; the
// map is keyed by its SHA-256, so nothing that lists or logs sessions ever
// holds a value that could be replayed as a cookie.
type session struct {
	id       string // hex SHA-256 of the cookie secret
	who      broker.Identity
	authTime time.Time // the IdP's auth_time, or the time of this login
	csrf     string    // per-session token every POST form carries
	created  time.Time
	expires  time.Time // absolute
	lastUsed time.Time
}

// sessions is the UI's session store. It lives in this process's memory:
// a restart logs everyone out of the UI (not of the CLI), and several broker
// replicas behind one public URL need sticky sessions (docs/approvals.md).
type sessions struct {
	ttl, idle time.Duration
	max       int

	mu sync.Mutex
	m  map[string]*session
}

// maxSessions bounds the UI sessions held in memory; past it the oldest
// are dropped (their people log in again).
const maxSessions = 10000

func newSessions(ttl, idle time.Duration) *sessions {
	return &sessions{ttl: ttl, idle: idle, max: maxSessions, m: map[string]*session{}}
}

// randomToken is 256 bits from crypto/rand, URL-safe.
func randomToken() string { return rand.Text() + rand.Text() }

func hashID(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// open records a new session and returns its cookie secret. A login always
// makes a new one (no session fixation): an id planted before the login is
// never promoted.
func (s *sessions) open(who broker.Identity, authTime, now time.Time) (string, *session) {
	secret := randomToken()
	ss := &session{id: hashID(secret), who: who, authTime: authTime, csrf: randomToken(), created: now, expires: now.Add(s.ttl), lastUsed: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	for len(s.m) >= s.max {
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[ss.id] = ss
	return secret, ss
}

// get returns the live session of a cookie secret, touching it.
func (s *sessions) get(secret string, now time.Time) *session {
	if secret == "" || len(secret) > 256 {
		return nil
	}
	id := hashID(secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if !now.Before(ss.expires) || (s.idle > 0 && now.Sub(ss.lastUsed) >= s.idle) {
		delete(s.m, id)
		return nil
	}
	ss.lastUsed = now
	c := *ss
	return &c
}

// peek reports whether session id is still live, without touching it (a
// stream open in a tab is not use).
func (s *sessions) peek(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	return ss != nil && now.Before(ss.expires)
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

func (s *sessions) sweepLocked(now time.Time) {
	for id, ss := range s.m {
		if !now.Before(ss.expires) || (s.idle > 0 && now.Sub(ss.lastUsed) >= s.idle) {
			delete(s.m, id)
		}
	}
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
