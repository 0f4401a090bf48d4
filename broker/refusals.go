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
// trail must not grow with it.
const (
	// MaxRefusalEventsPerMinute caps review.refused events a minute, in
	// all (per broker process).
	MaxRefusalEventsPerMinute = 32
)

// refusalLimiter decides which refusals are written: one per reviewer,
// request and cause a calendar minute, MaxRefusalEventsPerMinute in all;
// suppressed counts those left out since the last one written, which
// that next event carries. Its memory is bounded by the cap: a key is
// kept only for an event written, and all are dropped each minute.
type refusalLimiter struct {
	mu         sync.Mutex
	minute     int64
	seen       map[string]bool
	written    int
	suppressed int
}

// allow reports whether the refusal key may be written at now, and how
// many were left out before it (to be recorded with it).
func (l *refusalLimiter) allow(now time.Time, key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m := now.Unix() / 60; m != l.minute || l.seen == nil {
		l.minute, l.seen, l.written = m, map[string]bool{}, 0
	}
	if l.seen[key] || l.written >= MaxRefusalEventsPerMinute {
		l.suppressed++
		return false, 0
	}
	l.seen[key] = true
	l.written++
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// reviewRefused records (bounded by refusalLimiter) that reviewer's
// approve or deny of r was refused for cause, with err's user-safe
// message as the reason, and the reviewer's session and channel.
func (s *Service) reviewRefused(ctx context.Context, reviewer Identity, r *Request, approveIt bool, cause string, err error) {
	key := reviewer.Issuer + "\x00" + reviewer.IssuerURL + "\x00" + reviewer.Subject + "\x00" + r.ID + "\x00" + cause
	ok, suppressed := s.refusals.allow(s.now(), key)
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
