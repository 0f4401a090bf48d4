package proxy

import (
	"context"
	"net/netip"
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
// disk. They are counted per source network (an IPv4 /24, an IPv6 /64: what
// one attacker can hold cheaply), and each window ends with at most
// maxRefusalEvents proxy.refused events, whatever the number of sources:
// the networks with the most refused calls get one event each, all the
// others one "other" event with how many networks and calls it sums up.
// What a flood costs the trail is so bounded by a constant per window.
const (
	// DefaultRefusalWindow is how long refusals are counted before their
	// proxy.refused events are written.
	DefaultRefusalWindow = time.Minute
	// maxRefusalEvents bounds the proxy.refused events of one window,
	// the "other" event included.
	maxRefusalEvents = 32
	// maxRefusalNetworks bounds the networks counted apart in memory in
	// one window; refusals from further networks go to "other" directly.
	maxRefusalNetworks = 1024
	// maxOtherNetworks bounds the distinct networks "other" counts
	// exactly; beyond it the count is a lower bound ("networks_capped").
	maxOtherNetworks = 1 << 16
	// maxRefusalGrants bounds the revoked grants named per event.
	maxRefusalGrants = 4
	// capGrant bounds each grant id named (ids are short; a longer one is
	// clipped); capRefusalField bounds the user agent and endpoint kept.
	capGrant, capRefusalField = 64, 128
	// otherSource names the networks summed into one event.
	otherSource = "other"
	// ipv4Bits and ipv6Bits are the prefix lengths refusals are counted by.
	ipv4Bits, ipv6Bits = 24, 64
)

// refusals counts refused unauthenticated calls per source network for one
// window.
type refusals struct {
	window time.Duration
	now    func() time.Time
	flushF func([]*audit.Event)

	mu       sync.Mutex
	start    time.Time
	started  bool
	networks map[string]*refusalCount
	// Beyond maxRefusalNetworks: calls counted together, and the distinct
	// networks they came from (up to maxOtherNetworks).
	overflow    *refusalCount
	overflowNet map[netKey]struct{}
	overflowCap bool
	timer       *time.Timer
	closed      bool
}

// netKey is a source network in 8 bytes: an IPv6 /64, or an IPv4 /24 as
// its 3 bytes behind a marker no /64 of a real IPv6 source has.
type netKey [8]byte

type refusalCount struct {
	count     int
	codes     map[string]int
	grants    []string
	userAgent string // the last one seen
	endpoint  string // the last one seen
	address   string // the last source address seen
}

// isRefusedUnauthenticated reports whether the call was refused before a
// grant was established.
func (c *call) isRefusedUnauthenticated() bool {
	return c.err != nil && (c.err.Status == 401 || c.err.Status == 421)
}

// sourceNetwork is the network the client's address belongs to: its IPv4
// /24 or IPv6 /64 (an IPv4-mapped IPv6 address counts as IPv4), with the
// address itself and the network's key. A remote that is no IP address
// (a Unix socket) is its own network.
func sourceNetwork(remote string) (network, address string, key netKey, isIP bool) {
	ap, err := netip.ParseAddrPort(remote)
	var addr netip.Addr
	if err == nil {
		addr = ap.Addr()
	} else if addr, err = netip.ParseAddr(remote); err != nil {
		s := clip(remote, capShort)
		return s, s, key, false
	}
	addr = addr.Unmap().WithZone("")
	bits := ipv6Bits
	if addr.Is4() {
		bits = ipv4Bits
	}
	p, _ := addr.Prefix(bits) // cannot fail: bits fits both families
	b := p.Addr().As16()
	if addr.Is4() {
		key = netKey{0xff, 0xff, 0xff, 0xff, 0xff, b[12], b[13], b[14]}
	} else {
		copy(key[:], b[:8])
	}
	return p.String(), addr.String(), key, true
}

func newRefusalCount() *refusalCount { return &refusalCount{codes: map[string]int{}} }

// add counts one refused call.
func (rc *refusalCount) add(c *call, address string) {
	rc.count++
	rc.codes[c.err.Code]++ // a handful of constant codes
	rc.userAgent = clip(c.userAgent, capRefusalField)
	rc.endpoint = clip(c.method+" "+c.path, capRefusalField)
	rc.address = address
	if c.claims != nil && c.claims.Req != "" && len(rc.grants) < maxRefusalGrants {
		if g := clip(c.claims.Req, capGrant); !containsString(rc.grants, g) {
			rc.grants = append(rc.grants, g)
		}
	}
}

// merge adds o's counts to rc (o's last-seen fields win).
func (rc *refusalCount) merge(o *refusalCount) {
	rc.count += o.count
	for code, n := range o.codes {
		rc.codes[code] += n
	}
	for _, g := range o.grants {
		if len(rc.grants) < maxRefusalGrants && !containsString(rc.grants, g) {
			rc.grants = append(rc.grants, g)
		}
	}
	rc.userAgent, rc.endpoint, rc.address = o.userAgent, o.endpoint, o.address
}

// note counts a refused call and starts the window's timer on the first.
func (r *refusals) note(c *call) {
	now := r.now()
	network, address, key, isIP := sourceNetwork(c.remote)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		r.started = true
		r.start = now
		r.networks = make(map[string]*refusalCount)
		if !r.closed {
			r.timer = time.AfterFunc(r.window, r.flush)
		}
	}
	if rc := r.networks[network]; rc != nil {
		rc.add(c, address)
		return
	}
	if len(r.networks) < maxRefusalNetworks {
		rc := newRefusalCount()
		rc.add(c, address)
		r.networks[network] = rc
		return
	}
	if r.overflow == nil {
		r.overflow = newRefusalCount()
		r.overflowNet = make(map[netKey]struct{})
	}
	r.overflow.add(c, "")
	if !isIP {
		// A non-IP remote is no attacker's choice; count it by its text.
		copy(key[:], network)
		key[0] |= 0x80
	}
	if _, seen := r.overflowNet[key]; !seen {
		if len(r.overflowNet) < maxOtherNetworks {
			r.overflowNet[key] = struct{}{}
		} else {
			r.overflowCap = true
		}
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

// flush writes the window's proxy.refused events and starts a new window:
// one per network for the maxRefusalEvents-1 networks with the most
// refused calls (all of them when they fit in maxRefusalEvents), and one
// "other" event summing up the rest.
func (r *refusals) flush() {
	r.mu.Lock()
	networks, start, started := r.networks, r.start, r.started
	overflow, overflowNets, overflowCap := r.overflow, len(r.overflowNet), r.overflowCap
	r.networks, r.started, r.overflow, r.overflowNet, r.overflowCap = nil, false, nil, nil, false
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	if !started {
		return
	}
	end := r.now()
	names := make([]string, 0, len(networks))
	for s := range networks {
		names = append(names, s)
	}
	// The busiest networks are named; ties in a stable order.
	sort.Slice(names, func(i, j int) bool {
		ci, cj := networks[names[i]].count, networks[names[j]].count
		if ci != cj {
			return ci > cj
		}
		return names[i] < names[j]
	})
	apart := names
	if len(names) > maxRefusalEvents || overflow != nil { // then names has maxRefusalNetworks
		apart = names[:maxRefusalEvents-1]
	}
	events := make([]*audit.Event, 0, maxRefusalEvents)
	for _, src := range apart {
		events = append(events, refusalEvent(src, networks[src], start, end))
	}
	if rest := names[len(apart):]; len(rest) > 0 || overflow != nil {
		other := newRefusalCount()
		for _, src := range rest {
			other.merge(networks[src])
		}
		if overflow != nil {
			other.merge(overflow)
		}
		other.address = ""
		e := refusalEvent(otherSource, other, start, end)
		e.Error = strconv.Itoa(other.count) + " calls refused before authentication from " +
			strconv.Itoa(len(rest)+overflowNets) + " other networks (" + e.Details["codes"] + ")"
		e.Details["networks"] = strconv.Itoa(len(rest) + overflowNets)
		if overflowCap {
			e.Details["networks_capped"] = "true" // at least that many
		}
		events = append(events, e)
	}
	r.flushF(events)
}

// refusalEvent is the proxy.refused event of one network (or "other").
func refusalEvent(src string, rc *refusalCount, start, end time.Time) *audit.Event {
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
	if rc.address != "" && rc.address != src {
		e.Details["last_address"] = rc.address
	}
	if len(rc.grants) > 0 {
		e.Details["grants"] = strings.Join(rc.grants, ",")
	}
	return e
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
