package broker

import (
	"context"
	"time"
)

// ChangeKind says which kind of record a Change is about.
type ChangeKind int

// The kinds of Change.
const (
	// ChangeRequest: a request (a grant, a review, a held call) was
	// written or deleted.
	ChangeRequest ChangeKind = iota + 1
	// ChangeSession: a session was written or deleted.
	ChangeSession
	// ChangeKey: a signing key record was written (a rotation, a
	// retirement, a high-water mark).
	ChangeKey
	// ChangeAll: the feed may have missed changes (it just started, or
	// resumed after a gap it cannot replay): reload everything.
	ChangeAll
)

// Change is one write to the shared store, by any replica (this one's own
// writes come back too; applying them again is harmless).
type Change struct {
	Kind ChangeKind
	ID   string // request id, session id or kid
	// Request and Session are the records as written; nil when deleted or
	// of another kind.
	Request *Request
	Session *SessionRecord
}

// Changes feeds the store's changes to fn, one at a time, until ctx ends.
// A store that only this process writes (bbolt) has nothing to feed.
type Changes interface {
	Watch(ctx context.Context, fn func(Change)) error
}

// Follow keeps this replica's in-memory state in step with what other
// replicas write to a shared store: the revocation set (a grant revoked
// elsewhere is refused here), cached sessions (a logout or revocation
// elsewhere ends the session here), the signing keyring (a rotation
// elsewhere is published and verified here) and waiting calls (a held
// call or long-poll here wakes when the request is decided elsewhere). It
// returns when ctx ends.
func (s *Service) Follow(ctx context.Context, c Changes) error {
	return c.Watch(ctx, func(ch Change) { s.apply(ctx, ch) })
}

func (s *Service) apply(ctx context.Context, ch Change) {
	switch ch.Kind {
	case ChangeRequest:
		if ch.Request != nil {
			s.noteRevocation(ch.Request, s.now())
		}
		s.wake(ch.ID)
	case ChangeSession:
		s.followSession(ch.ID, ch.Session)
	case ChangeKey:
		if err := s.keys.Reload(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reloading the signing keys another replica wrote failed; tokens signed by a new key are refused here until it succeeds", "err", err)
		}
	case ChangeAll:
		s.resync(ctx)
	}
}

// noteRevocation puts r in the revocation set if it is a grant that ended
// early and whose tokens could still be presented (as New does on start).
func (s *Service) noteRevocation(r *Request, now time.Time) {
	if r.Kind == KindAccess && r.ApprovedAt != nil && r.ExpiresAt != nil && r.State != StateApproved && r.State != StatePending &&
		now.Add(-time.Minute).Before(*r.ExpiresAt) {
		s.revoked.Store(r.ID, *r.ExpiresAt)
	}
}

// followSession brings a cached session up to date with r (nil: deleted).
// Sessions not cached here are read from the store when first used.
func (s *Service) followSession(id string, r *SessionRecord) {
	if r == nil {
		s.liveSessions.Delete(id)
		return
	}
	v, ok := s.liveSessions.Load(id)
	if !ok {
		return
	}
	ls := v.(*liveSession)
	ls.mu.Lock()
	ls.rec = *r
	if r.LastUsedAt.After(ls.lastUsed) {
		ls.lastUsed = r.LastUsedAt
	}
	ls.persisted = r.LastUsedAt
	ls.mu.Unlock()
}

// resync reloads what the feed may have missed: the revocation set, the
// keyring, the session cache (dropped: reread on next use), and every
// waiter is woken to look at its request again.
func (s *Service) resync(ctx context.Context) {
	now := s.now()
	if grants, err := s.store.GrantsExpiringAfter(ctx, now.Add(-time.Minute)); err == nil {
		for _, r := range grants {
			s.noteRevocation(r, now)
		}
	} else if ctx.Err() == nil {
		s.log.Error("reloading the revocation set from the store failed", "err", err)
	}
	if err := s.keys.Reload(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("reloading the signing keys failed", "err", err)
	}
	s.liveSessions.Clear()
	s.mu.Lock()
	ids := make([]string, 0, len(s.waiters))
	for id := range s.waiters {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.wake(id)
	}
}
