package broker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// Why a review was refused (review.refused's details.cause).
const (
	refusalSelf        = "self_review"  // the requester reviewing their own request
	refusalNotApprover = "not_approver" // not an approver of the request (as configured now)
	refusalStepUp      = "step_up"      // an approver whose IdP login is too old (StepUp)
)

// Bounds on review.refused events: a person may refuse-spam (approve their
// own requests in a loop, or try every request id they learn), and the
// trail must not grow with it, nor may one person's flood hide another's
// refusals.
const (
	// MaxRefusalEventsPerReviewerPerMinute caps one reviewer's
	// review.refused events a minute: their flood suppresses only their
	// own.
	MaxRefusalEventsPerReviewerPerMinute = 8
	// MaxRefusalEventsPerMinute caps review.refused events a minute, in
	// all (per broker process), against many reviewers at once.
	MaxRefusalEventsPerMinute = 128
	// maxRefusalPending bounds the reviewers whose left-out refusals are
	// counted by name until their next event; beyond it they are counted
	// as others'.
	maxRefusalPending = 1024
)

// refusalLimiter decides which refusals are written: one per reviewer,
// request and cause a calendar minute, MaxRefusalEventsPerReviewerPerMinute
// per reviewer and MaxRefusalEventsPerMinute in all. A refusal left out is
// counted for its reviewer, and that reviewer's next event written carries
// the count; when maxRefusalPending reviewers already have a count, it is
// counted as others' instead, carried by the next event anyone's written.
// Its memory is bounded: a key is kept only for an event written, keys
// and per-reviewer counts of written events are dropped each minute, and
// left-out counts are kept for at most maxRefusalPending reviewers.
type refusalLimiter struct {
	mu      sync.Mutex
	minute  int64
	seen    map[string]bool
	by      map[string]int // events written this minute, per reviewer
	written int
	pending map[string]int // left out since the reviewer's last event
	others  int            // left out, of reviewers pending had no room for
}

// allow reports whether reviewer's refusal key may be written at now, and
// how many were left out before it: own, the reviewer's, and others, those
// of reviewers who could not be named (to be recorded with it).
func (l *refusalLimiter) allow(now time.Time, reviewer, key string) (ok bool, own, others int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m := now.Unix() / 60; m != l.minute || l.seen == nil {
		l.minute, l.seen, l.by, l.written = m, map[string]bool{}, map[string]int{}, 0
	}
	if l.pending == nil {
		l.pending = map[string]int{}
	}
	if l.seen[key] || l.by[reviewer] >= MaxRefusalEventsPerReviewerPerMinute || l.written >= MaxRefusalEventsPerMinute {
		if _, ok := l.pending[reviewer]; ok || len(l.pending) < maxRefusalPending {
			l.pending[reviewer]++
		} else {
			l.others++
		}
		return false, 0, 0
	}
	l.seen[key] = true
	l.by[reviewer]++
	l.written++
	own, others = l.pending[reviewer], l.others
	delete(l.pending, reviewer)
	l.others = 0
	return true, own, others
}

// reviewRefused records (bounded by refusalLimiter) that reviewer's
// approve or deny of r was refused for cause, with err's user-safe
// message as the reason, and the reviewer's session and channel.
func (s *Service) reviewRefused(ctx context.Context, reviewer Identity, r *Request, approveIt bool, cause string, err error) {
	who := reviewer.Issuer + "\x00" + reviewer.IssuerURL + "\x00" + reviewer.Subject
	ok, suppressed, others := s.refusals.allow(s.now(), who, who+"\x00"+r.ID+"\x00"+cause)
	if !ok {
		return
	}
	action := "approve"
	if !approveIt {
		action = "deny"
	}
	d := map[string]string{"action": action, "cause": cause}
	if suppressed > 0 {
		d["suppressed"] = strconv.Itoa(suppressed)
	}
	if others > 0 {
		d["suppressed_others"] = strconv.Itoa(others)
	}
	why := ErrorMessage(err)
	var su *StepUpError
	if errors.As(err, &su) {
		why = su.Reason()
	}
	if cause == refusalNotApprover && ErrorCode(err) == CodeNotFound {
		why = "not an approver of this request (told: no such request)"
	}
	s.emit(ctx, heldEvent(&audit.Event{Type: audit.TypeReviewRefused, Actor: actor(reviewer), Request: r.ID, Target: r.Requester.Subject,
		Decision: "refused", Reasons: []string{why}, Details: sessionDetails(d, reviewer, "session")}, r))
}
