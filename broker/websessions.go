package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// SessionKindWeb marks the session of a browser logged in to the web
// approval page (broker/ui). Such a session is stored, listed, revoked,
// idled out and swept like a CLI session, but no session token is ever
// minted for it: the browser holds a random secret whose hash is the
// record's id (WebSessionID), and Authenticate refuses it.
const SessionKindWeb = "web"

// WebSessionID is the record id of the web session whose cookie holds
// secret: a hash, so that listings (pamctl sessions) never show a value
// that could be replayed as a cookie.
func WebSessionID(secret string) string {
	sum := sha256.Sum256([]byte("pamctl web session\x00" + secret))
	return "web_" + hex.EncodeToString(sum[:16])
}

// OpenWebSession records a web session for who (verified by the caller's
// OIDC login) whose cookie holds secret, for at most ttl (and never past
// sessions.max_lifetime). authTime is the IdP authentication it rests on;
// as for a CLI login (loginAuthTime), one later than now is taken as now,
// so an IdP clock cannot make the session look freshly authenticated for
// longer than it is, and none (zero: the ID token had no auth_time) makes
// a session that cannot pass step-up.
func (s *Service) OpenWebSession(ctx context.Context, who Identity, authTime time.Time, client audit.Client, secret string, ttl time.Duration) (*SessionRecord, error) {
	if len(secret) < 32 {
		return nil, errors.New("broker: web session secret too short")
	}
	now := s.now().UTC().Truncate(time.Second)
	if ttl <= 0 || ttl > s.sessionTTL {
		ttl = s.sessionTTL
	}
	who.AuthTime = time.Time{}                        // kept in the record's AuthTime
	who.NoAuthTime, who.Session, who.Via = "", "", "" // per call, never recorded
	r := &SessionRecord{
		ID: WebSessionID(secret), Kind: SessionKindWeb, Identity: who, ClientAddr: client.RemoteAddr, UserAgent: client.UserAgent,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(ttl), State: SessionActive,
	}
	r.setAuthTime(loginAuthTime(authTime, now))
	if err := s.store.CreateSession(ctx, r); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "could not open a session", Err: err}
	}
	s.cache(r)
	return r, nil
}

// WebSession checks the web session whose cookie holds secret (active,
// within its lifetime and the idle timeout), records the use as
// Authenticate does, and returns the identity with its AuthTime and the
// record. Call it for what a person did (a page they opened, a form they
// sent); CheckWebSession for what the browser does by itself.
func (s *Service) WebSession(ctx context.Context, secret string) (Identity, *SessionRecord, error) {
	return s.webSession(ctx, secret, true)
}

// CheckWebSession is WebSession without recording a use: for the requests
// a browser makes by itself (the live queue's event stream and its
// refreshes, a prefetch, a page a script reloads), so that an open tab
// does not keep a session from idling out (sessions.idle_timeout).
func (s *Service) CheckWebSession(ctx context.Context, secret string) (Identity, *SessionRecord, error) {
	return s.webSession(ctx, secret, false)
}

func (s *Service) webSession(ctx context.Context, secret string, use bool) (Identity, *SessionRecord, error) {
	if secret == "" || len(secret) > 256 {
		return Identity{}, nil, loginAgain("not logged in")
	}
	id := WebSessionID(secret)
	ls, err := s.live(ctx, id)
	if errors.Is(err, ErrSessionNotFound) {
		return Identity{}, nil, loginAgain("no such session")
	}
	if err != nil {
		return Identity{}, nil, &Error{Code: CodeInternal, Message: "could not check your session", Err: err}
	}
	now := s.now().UTC()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.rec.Kind != SessionKindWeb {
		return Identity{}, nil, loginAgain("not a web session")
	}
	if err := s.refusal(&ls.rec, ls.lastUsed, now); err != nil {
		return Identity{}, nil, err
	}
	if use {
		ls.lastUsed = now
	}
	if use && now.Sub(ls.persisted) >= TouchEvery {
		r, err := s.store.UpdateSession(ctx, id, func(r *SessionRecord) error {
			if r.State != SessionActive {
				return errSessionEnded
			}
			if now.After(r.LastUsedAt) {
				r.LastUsedAt = now
			}
			return nil
		})
		switch {
		case err == nil:
			ls.rec, ls.persisted = *r, r.LastUsedAt
		case errors.Is(err, errSessionEnded), errors.Is(err, ErrSessionNotFound):
			if r2, gerr := s.store.GetSession(ctx, id); gerr == nil {
				ls.rec = *r2
			}
			return Identity{}, nil, loginAgain("this session has ended")
		default:
			s.log.Warn("could not record a session's last use", "session", id, "err", err)
		}
	}
	who := ls.rec.Identity
	who.AuthTime, who.NoAuthTime = ls.rec.stepUpAuth()
	who.Session, who.Via = ls.rec.ID, ViaWeb
	rec := ls.rec
	return who, &rec, nil
}
