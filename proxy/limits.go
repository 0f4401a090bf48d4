package proxy

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// GrantUsage is what a grant has spent, as a CounterStore keeps it.
type GrantUsage struct {
	// Tokens is the upstream-reported usage counted against the budget.
	Tokens int64
	// Requests is how many requests were admitted in the minute that
	// starts at Minute (UTC, truncated to the minute).
	Requests int64
	Minute   time.Time
}

// UsageDelta is what one admitted request or one reported usage adds to a
// grant's counters.
type UsageDelta struct {
	Tokens   int64
	Requests int64
	// At is when it happened (the proxy's clock); Requests count in the
	// minute of At.
	At time.Time
	// Expires is the grant's token exp: the record may be dropped a while
	// after it.
	Expires time.Time
}

// CounterStore persists per-grant limit counters so that a restart does
// not hand every grant a fresh minute and a fresh budget. Load is called
// once per grant per process (off the limiter's lock); Add is on the hot
// path and must not block on disk: implementations buffer and flush in the
// background, and say how much a crash may lose. The interface is
// backend-neutral (deltas, not absolute values), so a shared store can sum
// the counts of several proxies.
type CounterStore interface {
	Load(ctx context.Context, grant string) (GrantUsage, error)
	Add(grant string, d UsageDelta)
}

// SharedCounters is a CounterStore several proxies share (store.backend
// etcd): besides its own bucket, the limiter takes every request against an
// RPM limit from the grant's shared minute (Take) and checks the budget
// against what all proxies spent (Spent). The store documents how far the
// proxies together may overshoot.
type SharedCounters interface {
	CounterStore
	// Take claims one request of the grant's rpm in the minute of at:
	// false when the proxies together used the minute up. It is on the hot
	// path: implementations hand out local allotments and go to the shared
	// store only when one runs out.
	Take(ctx context.Context, grant string, at time.Time, rpm int64) (bool, error)
	// Spent is the grant's token usage as last known from every proxy; no
	// I/O.
	Spent(grant string) int64
}

// limiter enforces the lim claim of access tokens, per grant: a token
// bucket of RPM requests refilled at RPM per minute (so a grant may burst
// its whole minute, then goes at the steady rate), and a budget of tokens
// counted from the usage upstreams report. Counters live in memory and,
// when a CounterStore is set, are written through to it and read back the
// first time a grant is seen after a restart. The budget is checked when a
// call is admitted, so calls already in flight when it runs out may
// overshoot it.
type limiter struct {
	now   func() time.Time
	store CounterStore // nil: memory only

	mu     sync.Mutex
	grants map[string]*grantCounters
	sweep  time.Time
}

type grantCounters struct {
	tokens  float64   // requests left in the bucket
	last    time.Time // last refill
	used    int64     // tokens used (usage.total)
	expires time.Time // the grant's token exp: the entry may go after it
}

func newLimiter(now func() time.Time, store CounterStore) *limiter {
	return &limiter{now: now, store: store, grants: make(map[string]*grantCounters)}
}

// limitError is a refusal with how long to wait.
type limitError struct {
	code       string
	retryAfter time.Duration
	limit      int64
	used       int64
	cause      error // why the counters could not be read (logged, never shown)
}

// restore builds a grant's counters from what the store kept: the budget
// as spent, and the bucket as it would be had the requests of the stored
// minute been taken at its start.
func restore(u GrantUsage, lim *token.Limits, now time.Time) *grantCounters {
	g := &grantCounters{tokens: float64(lim.RPM), last: now, used: u.Tokens}
	if lim.RPM > 0 && u.Requests > 0 && !u.Minute.IsZero() {
		rate := float64(lim.RPM) / 60
		refill := now.Sub(u.Minute.Add(time.Minute)).Seconds() * rate
		g.tokens = math.Min(float64(lim.RPM), math.Max(0, float64(lim.RPM)-float64(u.Requests))+math.Max(0, refill))
	}
	return g
}

// admit counts one request against the grant's limits, or says why not.
func (l *limiter) admit(grant string, lim *token.Limits, exp time.Time) *limitError {
	if lim == nil || (lim.RPM <= 0 && lim.Tokens <= 0) {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	g := l.grants[grant]
	if g == nil && l.store != nil {
		l.mu.Unlock()
		u, err := l.store.Load(context.Background(), grant)
		if err != nil { // fail closed: no fresh limits for a grant we cannot account
			return &limitError{code: CodeLimitsUnavailable, retryAfter: 5 * time.Second, cause: err}
		}
		l.mu.Lock()
		if g = l.grants[grant]; g == nil {
			g = restore(u, lim, now)
			l.grants[grant] = g
		}
	}
	defer l.mu.Unlock()
	l.sweepLocked(now)
	if g == nil {
		g = &grantCounters{tokens: float64(lim.RPM), last: now}
	}
	l.grants[grant] = g // sweepLocked may have dropped it
	if exp.After(g.expires) {
		g.expires = exp
	}
	shared, _ := l.store.(SharedCounters)
	if used := g.used; lim.Tokens > 0 {
		if shared != nil {
			used = max(used, shared.Spent(grant))
		}
		if used >= lim.Tokens {
			wait := exp.Sub(now)
			return &limitError{code: CodeTokenBudgetExceeded, retryAfter: wait, limit: lim.Tokens, used: used}
		}
	}
	if lim.RPM > 0 {
		rate := float64(lim.RPM) / 60 // requests per second
		if el := now.Sub(g.last).Seconds(); el > 0 {
			g.tokens = math.Min(float64(lim.RPM), g.tokens+el*rate)
		}
		g.last = now
		if g.tokens < 1 {
			wait := time.Duration((1 - g.tokens) / rate * float64(time.Second))
			return &limitError{code: CodeRateLimitExceeded, retryAfter: wait, limit: int64(lim.RPM)}
		}
		g.tokens--
		if shared != nil {
			// The grant's minute is shared: take a unit of it outside the
			// lock (it may reach the store), and give the bucket its token
			// back when refused.
			l.mu.Unlock()
			ok, err := shared.Take(context.Background(), grant, now, int64(lim.RPM))
			l.mu.Lock()
			if err != nil || !ok {
				g.tokens++
			}
			if err != nil { // fail closed: the proxies' shared count is unknown
				return &limitError{code: CodeLimitsUnavailable, retryAfter: 5 * time.Second, cause: err}
			}
			if !ok {
				wait := now.Truncate(time.Minute).Add(time.Minute).Sub(now)
				return &limitError{code: CodeRateLimitExceeded, retryAfter: wait, limit: int64(lim.RPM)}
			}
		}
		if l.store != nil {
			l.store.Add(grant, UsageDelta{Requests: 1, At: now, Expires: g.expires})
		}
	}
	return nil
}

// record adds reported usage to the grant's budget.
func (l *limiter) record(grant string, total int64) {
	if total <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.grants[grant]; g != nil {
		g.used += total
		if l.store != nil {
			l.store.Add(grant, UsageDelta{Tokens: total, At: l.now(), Expires: g.expires})
		}
	}
}

// used returns the tokens counted against a grant so far.
func (l *limiter) usedBy(grant string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.grants[grant]; g != nil {
		return g.used
	}
	return 0
}

// sweepLocked forgets grants whose tokens have expired, at most once a minute.
func (l *limiter) sweepLocked(now time.Time) {
	if now.Sub(l.sweep) < time.Minute {
		return
	}
	l.sweep = now
	for id, g := range l.grants {
		if now.After(g.expires.Add(time.Minute)) {
			delete(l.grants, id)
		}
	}
}

// apiError turns a refusal into the client's 429 (503 when the counters
// could not be read).
func (e *limitError) apiError(grant string) *apiError {
	secs := int(math.Ceil(e.retryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	switch e.code {
	case CodeTokenBudgetExceeded:
		return &apiError{
			Status: http.StatusTooManyRequests, Type: "tokens", Code: e.code, RetryAfter: secs, NoRetry: true,
			Message: fmt.Sprintf("Grant %s has used %d of its %d-token budget. Ask for a new grant with `pamctl request --scope ...`; "+
				"this one will not get more tokens.", grant, e.used, e.limit),
		}
	case CodeLimitsUnavailable:
		return &apiError{
			Status: http.StatusServiceUnavailable, Type: "server_error", Code: e.code, RetryAfter: secs, cause: e.cause,
			Message: fmt.Sprintf("The proxy could not read the usage counters of grant %s, so it cannot enforce its limits. Retry in a few seconds; "+
				"if it persists an administrator should check the proxy's store.", grant),
		}
	}
	return &apiError{
		Status: http.StatusTooManyRequests, Type: "requests", Code: e.code, RetryAfter: secs,
		Message: fmt.Sprintf("Grant %s is limited to %d requests per minute. Retry after %d s, or ask for a higher limit.", grant, e.limit, secs),
	}
}
