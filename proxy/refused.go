package proxy

import (
	"context"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// Calls refused before a grant is established (no token, a bad, expired or
// revoked token, a Host the proxy does not serve) cost the caller nothing,
// so they are not written one event each: a flood of them could fill the
// disk. They are counted per source address instead, and each window ends
// with one proxy.refused event per source that was refused in it.
const (
	// DefaultRefusalWindow is how long refusals are counted before their
	// proxy.refused events are written.
	DefaultRefusalWindow = time.Minute
	// maxRefusalSources bounds the sources counted apart in one window;
	// further sources are counted together under "other".
	maxRefusalSources = 1024
	// maxRefusalGrants bounds the revoked grants named per source.
	maxRefusalGrants = 8
	// otherSource names the sources beyond maxRefusalSources.
	otherSource = "other"
)

// refusals counts refused unauthenticated calls per source for one window.
type refusals struct {
	window time.Duration
	now    func() time.Time
	flushF func([]*audit.Event)

	mu      sync.Mutex
	start   time.Time
	sources map[string]*refusalCount
	timer   *time.Timer
	closed  bool
}

type refusalCount struct {
	count     int
	codes     map[string]int
	grants    []string
	userAgent string // the last one seen
	endpoint  string // the last one seen
	last      time.Time
}

// isRefusedUnauthenticated reports whether the call was refused before a
// grant was established.
func (c *call) isRefusedUnauthenticated() bool {
	return c.err != nil && (c.err.Status == 401 || c.err.Status == 421)
}

// sourceOf is the client's IP address without the port.
func sourceOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return clip(remote, capShort)
}

// note counts a refused call and starts the window's timer on the first.
func (r *refusals) note(c *call) {
	now := r.now()
	src := sourceOf(c.remote)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sources == nil {
		r.sources = make(map[string]*refusalCount)
		r.start = now
		if !r.closed {
			r.timer = time.AfterFunc(r.window, r.flush)
		}
	}
	rc := r.sources[src]
	if rc == nil {
		if len(r.sources) >= maxRefusalSources {
			src = otherSource
			rc = r.sources[src]
		}
		if rc == nil {
			rc = &refusalCount{codes: map[string]int{}}
			r.sources[src] = rc
		}
	}
	rc.count++
	rc.codes[c.err.Code]++ // a handful of constant codes
	rc.userAgent = clip(c.userAgent, capShort)
	rc.endpoint = clip(c.method+" "+c.path, capShort)
	rc.last = now
	if c.claims != nil && c.claims.Req != "" && len(rc.grants) < maxRefusalGrants && !containsString(rc.grants, c.claims.Req) {
		rc.grants = append(rc.grants, clip(c.claims.Req, capShort))
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// flush writes the window's proxy.refused events and starts a new window.
func (r *refusals) flush() {
	r.mu.Lock()
	sources, start := r.sources, r.start
	r.sources = nil
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	if len(sources) == 0 {
		return
	}
	end := r.now()
	names := make([]string, 0, len(sources))
	for s := range sources {
		names = append(names, s)
	}
	sort.Strings(names)
	events := make([]*audit.Event, 0, len(names))
	for _, src := range names {
		rc := sources[src]
		codes := make([]string, 0, len(rc.codes))
		for code, n := range rc.codes {
			codes = append(codes, code+"="+strconv.Itoa(n))
		}
		sort.Strings(codes)
		e := &audit.Event{
			Type:     audit.TypeProxyRefused,
			Decision: "deny",
			Endpoint: rc.endpoint,
			Client:   &audit.Client{RemoteAddr: src, UserAgent: rc.userAgent},
			Error:    strconv.Itoa(rc.count) + " calls refused before authentication (" + strings.Join(codes, ", ") + ")",
			Details: map[string]string{
				"count":        strconv.Itoa(rc.count),
				"codes":        strings.Join(codes, ","),
				"window_start": start.UTC().Format(time.RFC3339Nano),
				"window_end":   end.UTC().Format(time.RFC3339Nano),
			},
		}
		if len(rc.grants) > 0 {
			e.Details["grants"] = strings.Join(rc.grants, ",")
		}
		events = append(events, e)
	}
	r.flushF(events)
}

// close writes what was counted and stops the timer; later refusals are
// still counted and written by the next close or flush.
func (r *refusals) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.flush()
}

// writeRefusals appends proxy.refused events; a failure is logged (the
// calls were refused anyway, nobody waits for these events).
func (p *Proxy) writeRefusals(events []*audit.Event) {
	for _, e := range events {
		if err := p.appendEvent(context.Background(), e); err != nil {
			p.log.Error("audit append failed", "type", string(e.Type), "source", e.Client.RemoteAddr, "err", err)
			continue
		}
		p.log.Warn("calls refused before authentication", "source", e.Client.RemoteAddr, "count", e.Details["count"], "codes", e.Details["codes"])
	}
}

// Close writes the pending proxy.refused events. Call it before closing
// the audit sink.
func (p *Proxy) Close() error {
	p.refused.close()
	return nil
}
