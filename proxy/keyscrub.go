package proxy

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/scrub"
)

// KeyLister is a KeySource that can list the values of every vaulted
// provider key. When the KeySource implements it, the proxy scrubs every
// vaulted key (not only the one a call used) from answers, headers and the
// audit trail. The list is read at most once per keyListTTL.
type KeyLister interface {
	ProviderKeyValues(ctx context.Context) ([]string, error)
}

// keyListTTL bounds how stale the proxy's list of vaulted keys may be; the
// key a call uses is always scrubbed, whatever the list says.
const keyListTTL = time.Second

// maxSeenKeys bounds the keys remembered from calls (a key rotated many
// times must not grow the set without end).
const maxSeenKeys = 64

// knownKeys is the set of keys the proxy scrubs: the vaulted keys it can
// list, and every key a call used.
type knownKeys struct {
	mu     sync.Mutex
	at     time.Time
	listed []string
	seen   []string
	// cur is the set of listed and seen (nil until first built). Written
	// under mu; read without it too, by the log's scrub, which may not
	// take mu (keySet logs under it), so it is never nil once built.
	cur atomic.Pointer[scrub.Set]
}

// keySet returns the current set of keys to scrub.
func (p *Proxy) keySet(ctx context.Context) *scrub.Set {
	k := &p.known
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := p.keys.(KeyLister); ok && time.Since(k.at) > keyListTTL {
		vals, err := l.ProviderKeyValues(context.WithoutCancel(ctx))
		if err != nil {
			// Keep the last list: scrubbing with stale keys beats none.
			p.log.Warn("proxy: list vaulted keys", "err", err)
		} else {
			k.listed = vals
			k.cur.Store(k.build())
		}
		k.at = time.Now()
	}
	set := k.cur.Load()
	if set == nil {
		set = k.build()
		k.cur.Store(set)
	}
	return set
}

// build makes the set of the listed and seen keys; k.mu is held.
func (k *knownKeys) build() *scrub.Set {
	return scrub.New(append(append([]string(nil), k.listed...), k.seen...)...)
}

// noteKey adds a key a call uses to the known set and returns the set.
func (p *Proxy) noteKey(ctx context.Context, key string) *scrub.Set {
	set := p.keySet(ctx)
	if key == "" || len(key) < scrub.MinKeyLen {
		return set
	}
	if with := set.With(key); with != set {
		k := &p.known
		k.mu.Lock()
		if len(k.seen) >= maxSeenKeys {
			k.seen = k.seen[1:]
		}
		k.seen = append(k.seen, key)
		k.cur.Store(with)
		k.mu.Unlock()
		return with
	}
	return set
}

// scrubbingSink removes every known key from the string fields of each
// event before it reaches the trail: summaries, error details, anything
// that came from an upstream or a client.
type scrubbingSink struct {
	p    *Proxy
	next AuditSink
}

func (s scrubbingSink) Append(ctx context.Context, e *audit.Event) error {
	scrubEvent(e, s.p.keySet(ctx))
	return s.next.Append(ctx, e)
}

// scrubEvent replaces keys in every string of e. Slices and maps an event
// may share with others (the token's groups, a rule's reasons) are copied
// before a change, never written in place.
func scrubEvent(e *audit.Event, set *scrub.Set) {
	if set.Empty() || e == nil {
		return
	}
	for _, f := range []*string{&e.Code, &e.Grant, &e.Request, &e.Review, &e.Target, &e.Decision,
		&e.Model, &e.Endpoint, &e.Prompt, &e.Response, &e.Error} {
		scrubField(f, set)
	}
	e.Reasons = scrubList(e.Reasons, set)
	if a := e.Actor; a != nil {
		c := *a
		for _, f := range []*string{&c.Subject, &c.Email, &c.Issuer, &c.TokenID, &c.Act} {
			scrubField(f, set)
		}
		c.Groups = scrubList(c.Groups, set)
		e.Actor = &c
	}
	if c := e.Client; c != nil && (set.ContainsString(c.RemoteAddr) || set.ContainsString(c.UserAgent)) {
		e.Client = &audit.Client{RemoteAddr: set.String(c.RemoteAddr), UserAgent: set.String(c.UserAgent)}
	}
	dirty := false
	for k, v := range e.Details {
		dirty = dirty || set.ContainsString(k) || set.ContainsString(v)
	}
	if dirty {
		d := make(map[string]string, len(e.Details))
		for k, v := range e.Details {
			d[set.String(k)] = set.String(v)
		}
		e.Details = d
	}
}

func scrubField(f *string, set *scrub.Set) {
	if set.ContainsString(*f) {
		*f = set.String(*f)
	}
}

// scrubList returns l, or a scrubbed copy when an element holds a key.
func scrubList(l []string, set *scrub.Set) []string {
	for i, v := range l {
		if set.ContainsString(v) {
			out := append([]string(nil), l...)
			for j := i; j < len(out); j++ {
				out[j] = set.String(out[j])
			}
			return out
		}
	}
	return l
}

// headerHasKey reports whether a header name or value spells a key,
// compared case-insensitively (Go canonicalises header names: an upstream's
// X-<key> arrives as X-<Key>), also once percent-decoded (a Location or
// Link header may carry it so).
func headerHasKey(set *scrub.Set, s string) bool {
	if set.ContainsFold(s) {
		return true
	}
	if !strings.ContainsAny(s, "%+") {
		return false
	}
	if u, err := url.PathUnescape(s); err == nil && u != s && set.ContainsFold(u) {
		return true
	}
	u, err := url.QueryUnescape(s)
	return err == nil && u != s && set.ContainsFold(u)
}

// scrubHeader drops every header whose name or any value carries a key;
// it reports the names dropped. Applied to an answer's Trailer map before
// the body is relayed, it also drops the names the upstream announced (the
// client's Trailer header is built from them).
func scrubHeader(h http.Header, set *scrub.Set) []string {
	if set.Empty() {
		return nil
	}
	var dropped []string
	for name, vals := range h {
		bad := headerHasKey(set, name)
		for _, v := range vals {
			bad = bad || headerHasKey(set, v)
		}
		if bad {
			delete(h, name)
			dropped = append(dropped, name)
		}
	}
	return dropped
}

// scrubBody removes keys from a body as it is read, holding back only the
// bytes of a partial match; trailers are scrubbed when the body ends.
type scrubBody struct {
	src io.ReadCloser
	st  *scrub.Stream
	set *scrub.Set
	// trailer is the answer's Trailer field, read when the body ends: Go's
	// transport fills the map it announced, or makes a new one for
	// trailers the upstream sent unannounced.
	trailer *http.Header
	buf     []byte
	ob      []byte // backing array of out
	out     []byte
	err     error
}

// newScrubBody scrubs the keys of set from src and, when it ends, from
// *trailer.
func newScrubBody(src io.ReadCloser, set *scrub.Set, trailer *http.Header) io.ReadCloser {
	if set.Empty() {
		return src
	}
	return &scrubBody{src: src, st: set.NewStream(), set: set, trailer: trailer}
}

// scrubbedChunks is newScrubBody for a body that lends out its chunks
// (a stream, which relayStream writes without copying).
func scrubbedChunks(src chunkBody, set *scrub.Set, trailer *http.Header) chunkBody {
	if set.Empty() {
		return src
	}
	return &scrubBody{src: src, st: set.NewStream(), set: set, trailer: trailer}
}

// readyChunks is a body that lends out what it has ready (streamBody).
type readyChunks interface {
	chunk() ([]byte, error)
}

// fill scrubs the source's next bytes into out, until out holds some or
// the source has ended (err).
func (b *scrubBody) fill() error {
	for len(b.out) == 0 {
		if b.err != nil {
			return b.err
		}
		var in []byte
		var err error
		out := b.ob[:0]
		if cr, ok := b.src.(readyChunks); ok {
			// The chunk is lent until the next call, and so is what
			// fill returns: a clean chunk goes out as it is.
			in, err = cr.chunk()
			out = b.st.WriteLent(out, in)
		} else {
			if b.buf == nil {
				b.buf = make([]byte, 4<<10)
			}
			var n int
			n, err = b.src.Read(b.buf)
			in = b.buf[:n]
			out = b.st.Write(out, in)
		}
		if len(out) > 0 && (len(in) == 0 || &out[0] != &in[0]) {
			b.ob = out // a buffer of its own, reused
		}
		if err != nil {
			out = b.st.Flush(out)
			if b.trailer != nil {
				scrubHeader(*b.trailer, b.set)
			}
			b.err = err
		}
		b.out = out
	}
	return nil
}

func (b *scrubBody) Read(p []byte) (int, error) {
	if err := b.fill(); err != nil {
		return 0, err
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// chunk returns every scrubbed byte ready, without copying: valid until
// the next call.
func (b *scrubBody) chunk() ([]byte, error) {
	if err := b.fill(); err != nil {
		return nil, err
	}
	out := b.out
	b.out = nil
	return out, nil
}

func (b *scrubBody) Close() error { return b.src.Close() }
