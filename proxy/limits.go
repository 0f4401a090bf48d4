package proxy

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// limiter enforces the lim claim of access tokens, per grant: a token
// bucket of RPM requests refilled at RPM per minute (so a grant may burst
// its whole minute, then goes at the steady rate), and a budget of tokens
// counted from the usage upstreams report. Counters live in memory: a
// restart gives every grant a fresh minute and a fresh budget, which the
// grant's short TTL bounds. The budget is checked when a call is admitted,
// so calls already in flight when it runs out may overshoot it.
type limiter struct {
	now func() time.Time

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

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, grants: make(map[string]*grantCounters)}
}

// limitError is a refusal with how long to wait.
type limitError struct {
	code       string
	retryAfter time.Duration
	limit      int64
	used       int64
}

// admit counts one request against the grant's limits, or says why not.
func (l *limiter) admit(grant string, lim *token.Limits, exp time.Time) *limitError {
	if lim == nil || (lim.RPM <= 0 && lim.Tokens <= 0) {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	g := l.grants[grant]
	if g == nil {
		g = &grantCounters{tokens: float64(lim.RPM), last: now}
		l.grants[grant] = g
	}
	if exp.After(g.expires) {
		g.expires = exp
	}
	if lim.Tokens > 0 && g.used >= lim.Tokens {
		wait := exp.Sub(now)
		return &limitError{code: CodeTokenBudgetExceeded, retryAfter: wait, limit: lim.Tokens, used: g.used}
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

// apiError turns a refusal into the client's 429.
func (e *limitError) apiError(grant string) *apiError {
	secs := int(math.Ceil(e.retryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	if e.code == CodeTokenBudgetExceeded {
		return &apiError{
			Status: http.StatusTooManyRequests, Type: "tokens", Code: e.code, RetryAfter: secs, NoRetry: true,
			Message: fmt.Sprintf("Grant %s has used %d of its %d-token budget. Ask for a new grant with `pamctl request --scope ...`; "+
				"this one will not get more tokens.", grant, e.used, e.limit),
		}
	}
	return &apiError{
		Status: http.StatusTooManyRequests, Type: "requests", Code: e.code, RetryAfter: secs,
		Message: fmt.Sprintf("Grant %s is limited to %d requests per minute. Retry after %d s, or ask for a higher limit.", grant, e.limit, secs),
	}
}
