package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/store"
)

// health is the registry of named checks behind /readyz. Background work
// (the audit log, notifications, the config watcher, the expiry sweep,
// retention) reports failures and recoveries here. Each failure is logged
// once when it starts, with what to do, then at most every remindEvery
// while it lasts, and once when it ends: a flood of failing events is one
// log line, not one per event. A failing critical check makes /readyz
// answer 503: the server cannot keep its promises (an audit trail that
// cannot be written means calls are refused).
type health struct {
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	checks map[string]*check
	order  []string
}

type check struct {
	name     string
	critical bool
	hint     string // what to do, logged with the failure
	failing  atomic.Bool
	err      error
	since    time.Time
	count    int
	reminded time.Time
	// sticky (FailSticky): successes no longer clear the failure, and
	// stickyHint replaces hint. Until the process restarts.
	sticky     bool
	stickyHint string
	stickyErr  error // the failure that made it sticky: what it reports from then on
}

// hintOf is what to do about c's failure (h.mu held).
func (c *check) hintOf() string {
	if c.sticky {
		return c.stickyHint
	}
	return c.hint
}

// remindEvery spaces the "still failing" log lines of one check.
const remindEvery = 5 * time.Minute

func newHealth(log *slog.Logger) *health {
	return &health{log: log, now: time.Now, checks: map[string]*check{}}
}

// register declares a check. critical: its failure makes /readyz 503.
// hint says what an operator should do when it fails.
func (h *health) register(name string, critical bool, hint string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.checks[name]; !ok {
		h.order = append(h.order, name)
	}
	h.checks[name] = &check{name: name, critical: critical, hint: hint}
}

func (h *health) get(name string) *check {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.checks[name]
	if c == nil {
		c = &check{name: name, hint: "see the error"}
		h.checks[name] = c
		h.order = append(h.order, name)
	}
	return c
}

// Fail records a failure of check name.
func (h *health) Fail(name string, err error) {
	c := h.get(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	c.err = err
	c.count++
	level := slog.LevelWarn
	if c.critical {
		level = slog.LevelError
	}
	switch {
	case !c.failing.Load():
		c.failing.Store(true)
		c.since, c.reminded, c.count = now, now, 1
		h.log.Log(context.Background(), level, name+" failing: "+c.hintOf(), "check", name, "err", err.Error(), "critical", c.critical)
	case now.Sub(c.reminded) >= remindEvery:
		c.reminded = now
		attrs := []any{"check", name, "err", err.Error(), "failures", c.count, "since", c.since.UTC().Format(time.RFC3339)}
		if c.stickyErr != nil && c.stickyErr != err {
			// a later failure does not hide the one that made it sticky
			attrs = []any{"check", name, "err", c.stickyErr.Error(), "latest", err.Error(), "failures", c.count, "since", c.since.UTC().Format(time.RFC3339)}
		}
		h.log.Log(context.Background(), level, name+" still failing: "+c.hintOf(), attrs...)
	}
}

// FailSticky records a failure of check name that no later success
// clears, until the process restarts; hint replaces the check's own. The
// first one is logged even while the check already fails for another
// reason.
func (h *health) FailSticky(name string, err error, hint string) {
	c := h.get(name)
	h.mu.Lock()
	if !c.sticky {
		c.sticky, c.stickyHint, c.stickyErr = true, hint, err
		c.failing.Store(false) // log it as a failure of its own
	}
	h.mu.Unlock()
	h.Fail(name, err)
}

// OK records a success of check name.
func (h *health) OK(name string) { h.ok(h.get(name)) }

// ok records a success of c: one atomic load while c is fine, so it can
// sit on the proxy's data path.
func (h *health) ok(c *check) {
	if !c.failing.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.failing.Load() && !c.sticky {
		c.failing.Store(false)
		h.log.Info(c.name+" recovered", "check", c.name, "failures", c.count, "after", h.now().Sub(c.since).Round(time.Second).String())
		c.err = nil
	}
}

// Report is the state of every check: ready is false when a critical
// check fails; lines names each failing check (never its raw error, which
// may hold paths or upstream text: that is in the server log).
func (h *health) Report() (ready bool, lines []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ready = true
	names := slices.Clone(h.order)
	for _, n := range names {
		c := h.checks[n]
		if !c.failing.Load() {
			continue
		}
		state := "degraded"
		if c.critical {
			state, ready = "failing", false
		}
		lines = append(lines, fmt.Sprintf("%s: %s since %s (%d errors): %s; details in the server log",
			n, state, c.since.UTC().Format(time.RFC3339), c.count, c.hintOf()))
	}
	return ready, lines
}

// readyz answers 200 "ok" when every critical check passes (listing
// degraded ones), else 503 with the failing checks; 503 while stopping.
func (h *health) readyz(stopping <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		select {
		case <-stopping:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: shutting down")
			return
		default:
		}
		ready, lines := h.Report()
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
		} else {
			fmt.Fprintln(w, "ok")
		}
		// People read it (curl, a dashboard): a check's name and hint
		// hold names from the config (a sink's file path, an upstream),
		// escaped here, once.
		for _, l := range lines {
			fmt.Fprintln(w, safetext.Escape(l))
		}
	}
}

// Check names.
const (
	checkAudit        = "audit"
	checkNotify       = "notify"
	checkConfigWatch  = "config_watch"
	checkConfigReload = "config_reload"
	checkSweep        = "expiry_sweep"
	checkRetention    = "retention"
	checkSessionSweep = "session_sweep"
	checkStore        = "store_writable"
	checkIssuer       = "issuer/"       // + issuer name
	checkProviderKey  = "provider_key/" // + upstream name
	checkSink         = "audit_sink/"   // + sink name
)

// probe is a readiness check that runs in the background, never on a
// request: /readyz only reads the last result, so a slow IdP cannot make
// the readiness endpoint slow, and a probe storm cannot reach the IdP.
type probe struct {
	name     string
	critical bool
	hint     string
	every    time.Duration // how often it runs (the result is cached between runs)
	timeout  time.Duration // each run's bound (default every/2, at most 10s)
	run      func(ctx context.Context) error
}

// runProbes registers ps and runs each every p.every until ctx ends,
// reporting each result to h. Critical probes (local and fast: the store,
// the vault) run their first round before runProbes returns, so a server
// is never reported ready before they ran; the others (network: issuers)
// start in the background and can only add degraded lines. The returned
// channel closes when every probe has stopped.
func (h *health) runProbes(ctx context.Context, ps []probe) (done <-chan struct{}) {
	var wg, first sync.WaitGroup
	for _, p := range ps {
		h.register(p.name, p.critical, p.hint)
		if p.timeout <= 0 {
			p.timeout = min(p.every/2, 10*time.Second)
		}
		once := func() {
			rctx, cancel := context.WithTimeout(ctx, p.timeout)
			err := p.run(rctx)
			cancel()
			switch {
			case ctx.Err() != nil:
			case err != nil:
				h.Fail(p.name, err)
			default:
				h.OK(p.name)
			}
		}
		if p.critical {
			first.Add(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			once()
			if p.critical {
				first.Done()
			}
			t := time.NewTicker(p.every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					once()
				}
			}
		}()
	}
	first.Wait()
	d := make(chan struct{})
	go func() { wg.Wait(); close(d) }()
	return d
}

func (h *health) registerAll(dataDir string) {
	h.register(checkAudit, true, "the audit trail cannot be written, so calls and changes are refused; check free space and permissions of "+dataDir+" and the server log")
	h.register(checkNotify, false, "webhook notifications are not delivered (each is recorded as a notify.failed audit event); check notify.webhook and that the receiver answers 2xx")
	h.register(checkConfigWatch, false, "changes to the config file are not picked up; "+reloadHint)
	h.register(checkConfigReload, false, "the last reload of the config file was refused and the running config stays (an invalid file, or one another local user may write); the server log and the last config.reloaded event (decision refused) say why")
	h.register(checkSweep, false, "expired requests and grants are not being closed, and calls held on grants that ended may stay in the approvers' queue (they cannot be approved); "+
		"the server log names the requests, grants and held calls the sweep could not end: check the store (`pamctl store status`; free space and permissions of the data dir) and `pamctl requests --pending`")
	h.register(checkRetention, false, "old audit events or ended requests are not being pruned (audit.retention, requests.retention); check free space and the data dir")
	h.register(checkSessionSweep, false, "ended broker sessions are not being removed from the store; check the server log and the data dir")
}

// auditLog is what the app needs of the audit trail.
type auditLog interface {
	audit.Log
	Close() error
}

var _ auditLog = (*store.AuditLog)(nil)

// watchedAudit is the audit log with its failures reported to health.
// Everything but Append is the log itself.
type watchedAudit struct {
	auditLog
	h *health
	c *check // the audit check, resolved once
	// observe, when set, learns every append's latency and outcome
	// (metrics).
	observe func(*audit.Event, time.Duration, error)
}

func newWatchedAudit(l auditLog, h *health) *watchedAudit {
	return &watchedAudit{auditLog: l, h: h, c: h.get(checkAudit)}
}

// Append appends e and tells health whether the trail is writable. A
// caller's cancelled context or a closed log at shutdown is not a failure
// of the trail.
func (w *watchedAudit) Append(ctx context.Context, e *audit.Event) error {
	var start time.Time
	if w.observe != nil {
		start = time.Now()
	}
	err := w.auditLog.Append(ctx, e)
	if w.observe != nil {
		w.observe(e, time.Since(start), err)
	}
	switch {
	case err == nil:
		w.h.ok(w.c)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, audit.ErrClosed):
	default:
		w.h.Fail(checkAudit, err)
	}
	return err
}
