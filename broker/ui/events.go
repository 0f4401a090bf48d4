package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// queueTypes are the audit events that change someone's queue.
var queueTypes = map[audit.Type]bool{
	audit.TypeRequestCreated: true, audit.TypePromptHeld: true, audit.TypeRequestApproved: true,
	audit.TypeRequestDenied: true, audit.TypeRequestExpired: true, audit.TypePromptReleased: true,
	audit.TypePromptRefused: true, audit.TypeGrantRevoked: true,
}

// keepAlive is how often an idle stream sends a comment, so proxies in
// between do not cut it.
const keepAlive = 25 * time.Second

// events is GET /ui/events: server-sent events telling the queue page that
// it may have changed ("event: queue", with data "{}"). They carry no
// request data and no sequence number (the page fetches itself again,
// through the same authorization as any page), and a session is told only
// of changes to requests it may see (Service.Get: the requester or an
// approver), so a stream says only "something you can see happened" and
// when, never how much happened elsewhere. The session is
// re-checked on every event and at each keep-alive, idle clock included
// (the stream is no use of it); an ended or idled-out session ends the
// stream with "event: logout".
func (u *UI) events(w http.ResponseWriter, r *http.Request) {
	ss := u.session(r)
	if ss == nil {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		http.Error(w, "cross-origin event streams are refused", http.StatusForbidden)
		return
	}
	// Each stream holds an audit subscription: bound them per session, per
	// person and in all, so tabs (or a script with a stolen cookie, or one
	// person logging in again and again) cannot pile them up and leave
	// other approvers' queues without updates.
	person := streamPerson(ss.who)
	if !u.streams.acquire(ss.id, person) {
		http.Error(w, "too many live views open; close some tabs (the page still works, reload it by hand)", http.StatusTooManyRequests)
		return
	}
	defer u.streams.release(ss.id, person)
	rc := http.NewResponseController(w)
	head, err := u.c.Audit.Head(r.Context())
	if err != nil {
		http.Error(w, "could not read the audit trail", http.StatusInternalServerError)
		return
	}
	sub := u.c.Audit.Subscribe(r.Context(), head.Last.Seq+1)
	defer sub.Cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 5000\n\n")
	_ = rc.Flush()
	every := keepAlive
	if d := time.Duration(u.keepAliveNS.Load()); d > 0 {
		every = d
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	secret := u.cookie(r, "pamctl-ui")
	// live checks the session as a page the browser loads by itself
	// (CheckWebSession): not a use, so an open tab does not keep it from
	// idling out, and with the idle clock against its last real use, so
	// the stream ends (logout) once it has. ended is false when the check
	// itself failed (the store): the stream ends and the page reconnects.
	live := func() (ok, ended bool) {
		_, rec, err := u.c.Service.CheckWebSession(r.Context(), secret)
		switch {
		case err == nil && rec.ID == ss.id:
			return true, false
		case err != nil && broker.ErrorCode(err) == broker.CodeInternal:
			return false, false
		}
		return false, true
	}
	logout := func() {
		fmt.Fprint(w, "event: logout\ndata: {}\n\n")
		_ = rc.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-u.stopping():
			return
		case <-tick.C:
			if ok, ended := live(); !ok {
				if ended {
					logout()
				}
				return
			}
			fmt.Fprint(w, ": keep-alive\n\n")
			if rc.Flush() != nil {
				return
			}
		case e, ok := <-sub.C:
			if !ok {
				if err := sub.Err(); err != nil && !errors.Is(err, audit.ErrSlowSubscriber) {
					return
				}
				// Dropped for being slow: the page reloads the queue and
				// reconnects (retry:), which resubscribes at the head.
				fmt.Fprint(w, "event: queue\ndata: {}\n\n")
				_ = rc.Flush()
				return
			}
			if !queueTypes[e.Type] {
				continue
			}
			if ok, ended := live(); !ok {
				if ended {
					logout()
				}
				return
			}
			// The request the event is about: a held call's events name
			// it as review (its request.* events as request too). An
			// event that names none changed nothing a queue shows.
			id := e.Request
			if id == "" {
				id = e.Review
			}
			if id == "" {
				continue
			}
			if e.Type == audit.TypePromptHeld {
				u.awaitStored(r.Context(), id)
			}
			if _, err := u.c.Service.Get(r.Context(), ss.who, id); err != nil {
				if broker.ErrorCode(err) == broker.CodeInternal {
					// The store failed: end the stream; the page
					// reconnects and fetches itself once (retry:).
					return
				}
				continue // not this session's to know about
			}
			fmt.Fprint(w, "event: queue\ndata: {}\n\n")
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// Bounds on live-update streams. Each login is a new session, so the
// per-person bound is what keeps one person from taking every stream.
const (
	maxStreamsPerSession = 8
	maxStreamsPerPerson  = 4 * maxStreamsPerSession
	maxStreams           = 2000
)

// streamPerson names a person for the stream bound: one IdP account.
func streamPerson(who broker.Identity) string { return who.Issuer + "\x00" + who.Subject }

// streamCount counts open live-update streams per session, per person
// and in all.
type streamCount struct {
	mu     sync.Mutex
	total  int
	per    map[string]int // by session id
	person map[string]int // by streamPerson
}

func (c *streamCount) acquire(session, person string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.per == nil {
		c.per, c.person = map[string]int{}, map[string]int{}
	}
	if c.total >= maxStreams || c.per[session] >= maxStreamsPerSession || c.person[person] >= maxStreamsPerPerson {
		return false
	}
	c.total++
	c.per[session]++
	c.person[person]++
	return true
}

func (c *streamCount) release(session, person string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.per[session]--; c.per[session] <= 0 {
		delete(c.per, session)
	}
	if c.person[person]--; c.person[person] <= 0 {
		delete(c.person, person)
	}
}

func (u *UI) stopping() <-chan struct{} {
	if u.c.Stopping == nil {
		return nil
	}
	return u.c.Stopping
}

// isStepUp reports whether the broker refused an action for want of a
// recent IdP authentication (approvals.reauth_after).
func isStepUp(err error) bool {
	var su *broker.StepUpError
	return errors.As(err, &su)
}

// heldStoreWait bounds how long a stream waits for a held call's record
// (awaitStored): past it the store failed the write, the hold was refused,
// and a refresh shows nothing new, which is harmless.
const heldStoreWait = 30 * time.Second

// awaitStored waits until the store holds request id, or heldStoreWait
// has passed, or ctx ends. The broker records a held call in the trail
// before the store (a call missing from the trail is never offered), so
// the trail's prompt.held can reach a stream first; a page told at once
// refreshed before the hold was stored, got no later event, and never
// listed it (TestBrowserApprovals under load). The first look finds it
// unless the store write is still under way.
func (u *UI) awaitStored(ctx context.Context, id string) {
	deadline := time.Now().Add(heldStoreWait)
	wait := 10 * time.Millisecond
	for {
		ok, err := u.c.Service.Stored(ctx, id)
		if ok || err != nil || time.Now().After(deadline) {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-u.stopping():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}
