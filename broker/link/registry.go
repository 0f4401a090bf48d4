package link

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
)

// Errors the registry returns; the API maps them to status codes.
var (
	ErrNotFound  = errors.New("no such proxy enrollment")
	ErrForbidden = errors.New("forbidden")
	ErrInvalid   = errors.New("invalid")
)

// Store persists enrollments (store.DB and etcdstore.DB implement it).
type Store interface {
	// PutEnrollment creates or replaces an enrollment whole: for a new
	// one (and a store migration); changes go through UpdateEnrollment.
	PutEnrollment(ctx context.Context, e *Enrollment) error
	// GetEnrollment returns an error matching ErrNotFound when absent.
	GetEnrollment(ctx context.Context, id string) (*Enrollment, error)
	ListEnrollments(ctx context.Context) ([]*Enrollment, error)
	// UpdateEnrollment applies fn to the stored enrollment and stores the
	// result, with no other write landing between the read fn sees and
	// the write (one transaction; with replicas, a compare-and-swap that
	// runs fn again on a newer record). fn's error aborts it, nothing
	// written; an absent id is an error matching ErrNotFound.
	UpdateEnrollment(ctx context.Context, id string, fn func(*Enrollment) error) (*Enrollment, error)
}

// Caller is who makes an API call (from the broker session).
type Caller struct {
	Subject string
	Issuer  string
	// Kind is the identity's kind: KindWorkload ("service", an issuer
	// with workload: true) or "user" (a person). Only a workload may
	// enroll a proxy or act for one (see workloadOnly).
	Kind string
}

// KindWorkload is the kind of a workload identity (oidc.KindService).
const KindWorkload = string(audit.KindService)

// workloadOnly refuses a caller that is not a workload identity: proxy:serve
// hands out every vaulted provider key (sealed to a key the caller
// chooses), so a person holding it could read them all. An unknown kind
// is refused too.
func workloadOnly(who Caller) error {
	if who.Kind == KindWorkload {
		return nil
	}
	kind := who.Kind
	if kind == "" {
		kind = "unknown"
	}
	return fmt.Errorf("%w: %s (issuer %s) is not a workload identity (kind %s): %s hands out every vaulted provider key, so only a workload identity may enroll or run a proxy; "+
		"give the proxy a workload ID token (proxy.identity.id_token_file from an issuer with workload: true) and grant %s to that workload only",
		ErrForbidden, clip(who.Subject, 128), clip(who.Issuer, 64), clip(kind, 32), ScopeServe, ScopeServe)
}

// Grants checks that grant is an approved, live grant of caller that
// covers proxy:serve, and returns when it ends.
type Grants interface {
	ProxyGrant(ctx context.Context, caller Caller, grant string) (expires time.Time, err error)
}

// Revocations is the broker's set of revoked grants.
type Revocations interface {
	RevokedGrants() map[string]time.Time
}

// Keys are the vaulted provider keys.
type Keys interface {
	// ProviderKeys returns every vaulted key, name → value.
	ProviderKeys(ctx context.Context) (map[string]string, error)
	// KeysVersion changes whenever a key is set or removed.
	KeysVersion(ctx context.Context) (string, error)
}

// AuditLog is where shipped events are chained.
type AuditLog interface {
	Append(ctx context.Context, e *audit.Event) error
	Range(ctx context.Context, fromSeq uint64, fn func(audit.Event) bool) error
}

// Registry is the broker's side of the link: enrollments, the stream,
// sealed keys, configuration and audit shipping.
type Registry struct {
	Store   Store
	Grants  Grants
	Revoked Revocations
	Keys    Keys
	Audit   AuditLog
	// Holds decides calls a proxy holds for approval (the broker's
	// prompt holds); nil refuses them.
	Holds func(ctx context.Context, h HoldRequest) (HoldDecision, error)
	// Config returns the rules, masking, limits and upstreams document.
	Config func() ProxyConfig
	Now    func() time.Time
	// SigningKeys returns the version of the broker's JWKS
	// (token.JWKS.Version), sent on every stream message; nil sends none.
	SigningKeys func() string
	// TokenIssuer is the iss of the broker's access tokens, told to each
	// proxy at enrollment.
	TokenIssuer string
	// Tick is how often the stream looks for changes (default 100ms).
	Tick time.Duration

	mu       sync.Mutex
	kicks    map[string]chan struct{} // closed when an enrollment is revoked
	shipLock map[string]*sync.Mutex
	acked    map[string]*Enrollment // recovered shipping state, per enrollment
	contact  map[string]time.Time   // last persisted contact
	keysV    string                 // vault version, shared by every stream
	keysAt   time.Time
}

// keysVersion is the vault's version, computed at most every 200ms
// whatever the number of streams.
func (r *Registry) keysVersion(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); r.keysV == "" || now.Sub(r.keysAt) >= 200*time.Millisecond {
		v, err := r.Keys.KeysVersion(ctx)
		if err != nil {
			return "", err
		}
		r.keysV, r.keysAt = v, now
	}
	return r.keysV, nil
}

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Enroll admits (or renews) a proxy for caller on an approved proxy:serve
// grant. Every admission and refusal is in the trail.
func (r *Registry) Enroll(ctx context.Context, who Caller, in EnrollRequest) (*Enrollment, error) {
	refuse := func(err error) (*Enrollment, error) {
		r.emit(ctx, &audit.Event{Type: TypeProxyEnrolled, Actor: actorOf(who),
			Grant: in.Grant, Target: in.ID, Decision: "refused", Error: err.Error()})
		return nil, err
	}
	if err := workloadOnly(who); err != nil {
		return refuse(err)
	}
	if err := checkPublicKey(in.PublicKey); err != nil {
		return refuse(err)
	}
	if in.Grant == "" {
		return refuse(fmt.Errorf("%w: grant is required: request %s first (pamctl request --scope %s)", ErrInvalid, ScopeServe, ScopeServe))
	}
	if _, revoked := r.Revoked.RevokedGrants()[in.Grant]; revoked {
		return refuse(fmt.Errorf("%w: grant %s was revoked", ErrForbidden, in.Grant))
	}
	expires, err := r.Grants.ProxyGrant(ctx, who, in.Grant)
	if err != nil {
		return refuse(err)
	}
	now := r.now().UTC()
	set := func(e *Enrollment) {
		if e.Grant != "" && e.Grant != in.Grant {
			e.EarlierGrants = append(e.EarlierGrants, e.Grant)
			e.EarlierGrants = e.EarlierGrants[max(0, len(e.EarlierGrants)-maxEarlierGrants):]
		}
		e.Grant, e.ExpiresAt, e.PublicKey = in.Grant, expires, in.PublicKey
		e.Version, e.Address, e.LastContact, e.TokenIssuer = clip(in.Version, 64), clip(in.Address, 256), now, r.TokenIssuer
	}
	// The grants of a proxy an admin cut off admit no other enrollment,
	// new or renewed: the same identity leaving out the old id, or
	// renewing another enrollment of its own onto such a grant, would
	// otherwise be back at once, keys and all.
	cutOff := func(cut string) error {
		return fmt.Errorf("%w: grant %s belongs to proxy %s, which an admin revoked; a proxy enrolls again only with a new %s grant", ErrForbidden, in.Grant, cut, ScopeServe)
	}
	if cut, err := r.revokedOn(ctx, in.Grant, in.ID); err != nil {
		return nil, err
	} else if cut != "" {
		return refuse(cutOff(cut))
	}
	var e *Enrollment
	if in.ID != "" {
		// A renewal changes the stored record in place, checked as it is
		// written: a revoke that lands while it runs is never undone.
		var refused error
		e, err = r.update(ctx, in.ID, func(old *Enrollment) error {
			switch {
			case old.Subject != who.Subject || old.Issuer != who.Issuer:
				refused = fmt.Errorf("%w: enrollment %s belongs to another identity", ErrForbidden, in.ID)
			case old.RevokedAt != nil:
				refused = fmt.Errorf("%w: enrollment %s was revoked by an admin; it stays cut off: a proxy enrolls again only with a new data dir and a new %s grant", ErrForbidden, in.ID, ScopeServe)
			default:
				set(old) // the broker's shipping position stays as stored
				return nil
			}
			return refused
		})
		switch {
		case refused != nil:
			return refuse(refused)
		case errors.Is(err, ErrNotFound):
			e = nil
		case err != nil:
			return nil, err
		}
	}
	if e == nil {
		e = &Enrollment{ID: token.NewID()[:16], Subject: who.Subject, Issuer: who.Issuer, Enrolled: now}
		// A new enrollment takes the spool where it is (events acked
		// under a lost enrollment are gone from it); a renewal keeps the
		// broker's own position, whatever the request says.
		if in.SpoolNext > 1 {
			e.Acked = in.SpoolNext - 1
		}
		set(e)
		if err := r.Store.PutEnrollment(ctx, e); err != nil {
			return nil, err
		}
	}
	// Checked again once stored: a revoke that ran meanwhile either saw
	// this enrollment on its grant (and cut it off with it) or is seen
	// here, and this one goes too.
	if cut, err := r.revokedOn(ctx, in.Grant, e.ID); err != nil {
		return nil, err
	} else if cut != "" {
		_, _ = r.update(ctx, e.ID, revokedAt(now))
		r.cut(e.ID)
		return refuse(cutOff(cut))
	}
	r.emit(ctx, &audit.Event{Type: TypeProxyEnrolled, Actor: actorOf(who),
		Grant: e.Grant, Target: e.ID, Decision: "enrolled", Details: map[string]string{"version": e.Version, "address": e.Address}})
	return e, nil
}

// checkPublicKey refuses what cannot be a proxy's X25519 key: a wrong
// length, or a low-order point (all-zero among them), with which sealing
// fails (the shared secret would be zero).
func checkPublicKey(raw []byte) error {
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return fmt.Errorf("%w: public_key must be a raw 32-byte X25519 key", ErrInvalid)
	}
	probe, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if _, err := probe.ECDH(pub); err != nil {
		return fmt.Errorf("%w: public_key is not a usable X25519 key (a low-order point); generate the key with crypto/ecdh", ErrInvalid)
	}
	return nil
}

// actorOf is the trail's actor of a caller; a kind the trail does not
// know is left out.
func actorOf(who Caller) *audit.Actor {
	a := &audit.Actor{Subject: who.Subject, Issuer: who.Issuer}
	if k := audit.ActorKind(who.Kind); k == audit.KindUser || k == audit.KindService {
		a.Kind = k
	}
	return a
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Authorize checks that the enrollment id may act for caller now, and
// records the contact.
func (r *Registry) Authorize(ctx context.Context, who Caller, id string) (*Enrollment, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: the %s header is required: enroll first", ErrForbidden, HeaderProxyID)
	}
	// Also an enrollment a person made before enrolling took workloads
	// only: it stays listed (pamctl proxies) until an admin revokes it,
	// and gets nothing more.
	if err := workloadOnly(who); err != nil {
		return nil, err
	}
	e, err := r.Store.GetEnrollment(ctx, id)
	if err != nil {
		return nil, err
	}
	now := r.now()
	switch {
	case e.Subject != who.Subject || e.Issuer != who.Issuer:
		return nil, fmt.Errorf("%w: enrollment %s belongs to another identity", ErrForbidden, id)
	case e.RevokedAt != nil:
		return nil, fmt.Errorf("%w: proxy %s was revoked by an admin", ErrForbidden, id)
	case !now.Before(e.ExpiresAt):
		return nil, fmt.Errorf("%w: the enrollment of proxy %s ended with its grant; it must enroll again", ErrForbidden, id)
	}
	if _, revoked := r.Revoked.RevokedGrants()[e.Grant]; revoked {
		return nil, fmt.Errorf("%w: the proxy:serve grant of proxy %s was revoked", ErrForbidden, id)
	}
	r.touch(ctx, e, now)
	return e, nil
}

// PersonEnrollments returns the live enrollments (neither revoked nor
// ended) of identities from a configured issuer that is not a workload
// issuer: made by persons before only workloads could enroll. Every
// route refuses them (Authorize); the broker warns about each at start so
// an admin revokes it and replaces the provider keys it could read.
// issuer tells whether a configured issuer name is a workload issuer
// (known false: no longer configured, its sessions fail anyway).
func (r *Registry) PersonEnrollments(ctx context.Context, issuer func(name string) (workload, known bool)) ([]*Enrollment, error) {
	all, err := r.Store.ListEnrollments(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	var out []*Enrollment
	for _, e := range all {
		if e.RevokedAt != nil || !now.Before(e.ExpiresAt) {
			continue
		}
		if w, known := issuer(e.Issuer); known && !w {
			out = append(out, e)
		}
	}
	return out, nil
}

// touch records the last contact, persisted at most every 5 seconds.
func (r *Registry) touch(ctx context.Context, e *Enrollment, now time.Time) {
	r.mu.Lock()
	if r.contact == nil {
		r.contact = map[string]time.Time{}
	}
	last := r.contact[e.ID]
	due := now.Sub(last) >= 5*time.Second
	if due {
		r.contact[e.ID] = now
	}
	r.mu.Unlock()
	if due {
		_, _ = r.update(ctx, e.ID, func(x *Enrollment) error { x.LastContact = now.UTC(); return nil })
	}
}

// update applies fn to the stored enrollment atomically
// (Store.UpdateEnrollment: no replica's write lands in between), and a
// revocation stays whatever fn does: revoking is final.
func (r *Registry) update(ctx context.Context, id string, fn func(*Enrollment) error) (*Enrollment, error) {
	return r.Store.UpdateEnrollment(ctx, id, func(e *Enrollment) error {
		revoked := e.RevokedAt
		if err := fn(e); err != nil {
			return err
		}
		if revoked != nil {
			e.RevokedAt = revoked
		}
		return nil
	})
}

// maxEarlierGrants bounds Enrollment.EarlierGrants: a renewal comes a
// fifth of a grant's life before its end, so only the last one or two
// can still be live.
const maxEarlierGrants = 8

// revokedOn returns the id of a revoked enrollment other than except that
// stood on grant (now or before a renewal), or "".
func (r *Registry) revokedOn(ctx context.Context, grant, except string) (string, error) {
	all, err := r.Store.ListEnrollments(ctx)
	if err != nil {
		return "", err
	}
	for _, e := range all {
		if e.RevokedAt != nil && e.ID != except && slices.Contains(e.grants(), grant) {
			return e.ID, nil
		}
	}
	return "", nil
}

// List returns every enrollment.
func (r *Registry) List(ctx context.Context) ([]*Enrollment, error) {
	return r.Store.ListEnrollments(ctx)
}

// Revoke cuts a proxy off at once: its stream ends and every later call
// is refused. actor is who did it (audited).
func (r *Registry) Revoke(ctx context.Context, id string, actor *audit.Actor, via string) (*Enrollment, error) {
	out, err := r.update(ctx, id, revokedAt(r.now().UTC()))
	if err != nil {
		return nil, err
	}
	r.cut(id)
	r.emit(ctx, &audit.Event{Type: TypeProxyRevoked, Actor: actor, Grant: out.Grant, Target: id, Decision: "revoked",
		Details: map[string]string{"via": via, "subject": out.Subject}})
	// Enrollments on the same grants go too: one made by the same identity
	// while this revoke ran would otherwise stay.
	all, err := r.Store.ListEnrollments(ctx)
	if err != nil {
		return out, err
	}
	for _, o := range all {
		if o.ID == id || o.RevokedAt != nil || !slices.ContainsFunc(o.grants(), func(g string) bool { return slices.Contains(out.grants(), g) }) {
			continue
		}
		sib, err := r.update(ctx, o.ID, revokedAt(r.now().UTC()))
		if err != nil {
			return out, err
		}
		r.cut(o.ID)
		r.emit(ctx, &audit.Event{Type: TypeProxyRevoked, Actor: actor, Grant: sib.Grant, Target: o.ID, Decision: "revoked",
			Details: map[string]string{"via": via, "subject": sib.Subject, "with": id}})
	}
	return out, nil
}

// revokedAt is an update that revokes an enrollment at t, unless it
// already was.
func revokedAt(t time.Time) func(*Enrollment) error {
	return func(e *Enrollment) error {
		if e.RevokedAt == nil {
			e.RevokedAt = &t
		}
		return nil
	}
}

// cut ends the stream of enrollment id, if one is open here.
func (r *Registry) cut(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.kicks[id]; ok {
		close(ch)
		delete(r.kicks, id)
	}
}

func (r *Registry) kick(id string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kicks == nil {
		r.kicks = map[string]chan struct{}{}
	}
	ch, ok := r.kicks[id]
	if !ok {
		ch = make(chan struct{})
		r.kicks[id] = ch
	}
	return ch
}

// ReportConfig records the configuration version a proxy runs.
func (r *Registry) ReportConfig(ctx context.Context, id, version string) {
	_, _ = r.update(ctx, id, func(e *Enrollment) error { e.ConfigVersion = clip(version, 80); return nil })
}

// Heartbeat is the longest a stream stays silent: with nothing to say it
// sends a state message anyway, so the proxy can tell a quiet broker from
// a lost one. A proxy asks for shorter ones (down to MinHeartbeat) to
// match its revocation staleness.
const (
	Heartbeat    = 5 * time.Second
	MinHeartbeat = 250 * time.Millisecond
)

// Stream sends the revocation set and the keys and config versions to
// one enrolled proxy: a full state first, then additions within Tick of a
// revocation, a full state when one is dropped or a version changes, and
// a heartbeat every Heartbeat. It returns when ctx ends, the enrollment
// is revoked (ErrForbidden) or expires, or send fails.
func (r *Registry) Stream(ctx context.Context, e *Enrollment, heartbeat time.Duration, send func(StreamState) error) error {
	heartbeat = min(max(heartbeat, MinHeartbeat), Heartbeat)
	kicked := r.kick(e.ID)
	tick := r.Tick
	if tick <= 0 {
		tick = 100 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var sent map[string]time.Time
	var keysV, cfgV, sigV string
	var lastSend time.Time
	loaded := r.now()
	for {
		now := r.now()
		if now.Sub(loaded) >= time.Second {
			// Pick up a renewal (new grant, later end) made meanwhile.
			x, err := r.Store.GetEnrollment(ctx, e.ID)
			if err != nil {
				return err
			}
			if x.RevokedAt != nil {
				return fmt.Errorf("%w: proxy %s was revoked by an admin", ErrForbidden, e.ID)
			}
			e, loaded = x, now
		}
		if !now.Before(e.ExpiresAt) {
			return fmt.Errorf("%w: the enrollment ended with its grant", ErrForbidden)
		}
		if _, revoked := r.Revoked.RevokedGrants()[e.Grant]; revoked {
			return fmt.Errorf("%w: the proxy:serve grant was revoked", ErrForbidden)
		}
		cur := r.Revoked.RevokedGrants()
		kv, err := r.keysVersion(ctx)
		if err != nil {
			return err
		}
		cv := r.Config().Version
		var sv string
		if r.SigningKeys != nil {
			sv = r.SigningKeys()
		}
		msg := StreamState{KeysVersion: kv, ConfigVersion: cv, SigningKeys: sv, Time: now.UTC()}
		// A version change is a full message at once: a signing key
		// withdrawn now must stop verifying at the proxy now.
		full := sent == nil || kv != keysV || cv != cfgV || sv != sigV
		added := map[string]time.Time{}
		for id, until := range cur {
			if _, ok := sent[id]; !ok {
				added[id] = until
			}
		}
		for id := range sent {
			if _, ok := cur[id]; !ok {
				full = true
			}
		}
		switch {
		case full:
			msg.Revoked = cur
		case len(added) > 0:
			msg.Delta, msg.Revoked = true, added
		case now.Sub(lastSend) >= heartbeat:
			msg.Delta, msg.Revoked = true, map[string]time.Time{}
		default:
			msg.Revoked = nil
		}
		if msg.Revoked != nil {
			if err := send(msg); err != nil {
				return err
			}
			sent, keysV, cfgV, sigV, lastSend = maps.Clone(cur), kv, cv, sv, now
			if sent == nil {
				sent = map[string]time.Time{}
			}
			r.touch(ctx, e, now)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kicked:
			return fmt.Errorf("%w: proxy %s was revoked by an admin", ErrForbidden, e.ID)
		case <-t.C:
		}
	}
}

// SealedKeys seals every vaulted provider key to the proxy's key.
func (r *Registry) SealedKeys(ctx context.Context, e *Enrollment) (SealedKeys, error) {
	v, err := r.Keys.KeysVersion(ctx)
	if err != nil {
		return SealedKeys{}, err
	}
	keys, err := r.Keys.ProviderKeys(ctx)
	if err != nil {
		return SealedKeys{}, err
	}
	plain, err := json.Marshal(keys)
	if err != nil {
		return SealedKeys{}, err
	}
	clear(keys)
	eph, nonce, sealed, err := Seal(e.PublicKey, plain)
	clear(plain)
	if err != nil {
		return SealedKeys{}, err
	}
	return SealedKeys{Version: v, Ephemeral: eph, Nonce: nonce, Sealed: sealed}, nil
}

// Ship chains a proxy's spooled events into the trail, in order and once
// each. A shipment is checked whole before anything is appended: it must
// be contiguous and start at or below the next sequence the broker
// expects (events at or below the acknowledged one are skipped: a retry),
// and every event must be one a proxy records (ShippedTypes) and pass the
// trail's own checks. Anything else refuses the whole batch (ErrInvalid)
// and appends nothing: the proxy keeps the events in its spool.
//
// The broker cannot re-verify what a proxy reports (the actor of a
// proxy.call is the token subject as the proxy saw it), so every shipped
// event is attributed to the proxy: details.proxy (the enrollment),
// details.proxy_seq (its spool sequence) and details.proxy_time (the time
// the proxy gave it). The event's time is when the broker received it.
func (r *Registry) Ship(ctx context.Context, e *Enrollment, batch AuditBatch) (AuditAck, error) {
	if len(batch.Events) > MaxAuditBatch {
		return AuditAck{}, fmt.Errorf("%w: at most %d events per batch", ErrInvalid, MaxAuditBatch)
	}
	r.mu.Lock()
	if r.shipLock == nil {
		r.shipLock, r.acked = map[string]*sync.Mutex{}, map[string]*Enrollment{}
	}
	l, ok := r.shipLock[e.ID]
	if !ok {
		l = &sync.Mutex{}
		r.shipLock[e.ID] = l
	}
	r.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	st, err := r.shipState(ctx, e.ID)
	if err != nil {
		return AuditAck{}, err
	}
	evs, err := admitShipment(e.ID, st.Acked, batch, r.now().UTC())
	if err != nil {
		return AuditAck{Acked: st.Acked}, err
	}
	var errs error
	for _, ev := range evs {
		if err := r.Audit.Append(ctx, ev.ev); err != nil {
			errs = err
			break
		}
		st.Acked, st.AckedAt = ev.seq, ev.ev.Seq
	}
	acked, at := st.Acked, st.AckedAt
	if _, err := r.update(ctx, e.ID, func(x *Enrollment) error {
		if acked > x.Acked { // never back: another replica may be ahead
			x.Acked, x.AckedAt = acked, at
		}
		return nil
	}); err != nil {
		errs = errors.Join(errs, err)
	}
	if errs != nil && acked == 0 {
		return AuditAck{}, errs
	}
	return AuditAck{Acked: acked}, errs
}

// ShippedTypes are the event types a proxy records and may ship: its
// calls, the calls it refused before authentication (and the link gate's
// refusals), the trace spans agents post through it, and its verdicts on
// the tool calls models propose. Every other type is recorded by the
// broker itself and is refused from a proxy.
var ShippedTypes = []audit.Type{audit.TypeProxyCall, audit.TypeProxyRefused, audit.TypeTraceSpan, audit.TypeToolCall}

// Caps on a shipped event's fields (the proxy applies the same ones
// before spooling; the broker does not rely on it). Prompt and Response
// are bounded by the trail (audit.MaxTextBytes), a span detail likewise.
const (
	shipShort   = 256  // ids, names, model, endpoint, actor fields
	shipError   = 1024 // Error
	shipDetail  = 1024 // each Details value but the span
	shipList    = 64   // Reasons, Groups, Unscanned, Masked entries
	shipDetails = 32   // Details entries (besides the broker's own)
)

// admitted is a shipped event ready to append, with its spool sequence.
type admitted struct {
	seq uint64
	ev  *audit.Event
}

// admitShipment checks a whole shipment and returns the events past
// acked, bounded and attributed to proxy id, stamped with now.
func admitShipment(id string, acked uint64, batch AuditBatch, now time.Time) ([]admitted, error) {
	var out []admitted
	for i, se := range batch.Events {
		switch {
		case se.Seq == 0:
			return nil, fmt.Errorf("%w: event %d of the batch has no spool sequence", ErrInvalid, i)
		case i == 0 && se.Seq > acked+1:
			return nil, fmt.Errorf("%w: the batch starts at spool sequence %d but the broker expects %d next; ship from %d", ErrInvalid, se.Seq, acked+1, acked+1)
		case i > 0 && se.Seq != batch.Events[i-1].Seq+1:
			return nil, fmt.Errorf("%w: spool sequence %d follows %d; a batch must be contiguous", ErrInvalid, se.Seq, batch.Events[i-1].Seq)
		}
		ev, err := shippedEvent(id, se, now)
		if err != nil {
			return nil, err
		}
		if se.Seq > acked {
			out = append(out, admitted{seq: se.Seq, ev: ev})
		}
	}
	return out, nil
}

// Details keys the broker sets on every shipped event.
const (
	DetailProxy     = "proxy"
	DetailProxySeq  = "proxy_seq"
	DetailProxyTime = "proxy_time"
)

// shippedEvent is the trail's copy of one shipped event: a type a proxy
// records, every field bounded, the chain fields and code left to the
// log, the broker's receive time, and the proxy's attribution.
func shippedEvent(id string, se SpooledEvent, now time.Time) (*audit.Event, error) {
	ev := se.Event.Clone()
	if !slices.Contains(ShippedTypes, ev.Type) {
		return nil, fmt.Errorf("%w: spool event %d has type %q; a proxy ships only %s events", ErrInvalid, se.Seq, clipText(string(ev.Type), shipShort), shippedTypeList())
	}
	proxyTime := ev.Time
	ev.Time, ev.Code, ev.Seq, ev.PrevHash, ev.Hash = now, "", 0, "", ""
	for _, f := range []*string{&ev.Grant, &ev.Request, &ev.Review, &ev.Target, &ev.Decision, &ev.Model, &ev.Endpoint, &ev.PromptSHA256} {
		*f = clipText(*f, shipShort)
	}
	ev.Error = clipText(ev.Error, shipError)
	ev.Reasons = clipList(ev.Reasons)
	ev.Unscanned = clipList(ev.Unscanned)
	if a := ev.Actor; a != nil {
		for _, f := range []*string{&a.Subject, &a.Display, &a.Email, &a.Issuer, &a.TokenID, &a.Act} {
			*f = clipText(*f, shipShort)
		}
		a.Groups = clipList(a.Groups)
	}
	if cl := ev.Client; cl != nil {
		cl.RemoteAddr, cl.UserAgent = clipText(cl.RemoteAddr, shipShort), clipText(cl.UserAgent, shipShort)
	}
	if len(ev.Masked) > 0 {
		m := make(map[string]int, min(len(ev.Masked), shipList))
		for _, k := range slices.Sorted(maps.Keys(ev.Masked)) {
			if len(m) < shipList && len(k) <= shipShort {
				m[k] = ev.Masked[k]
			}
		}
		ev.Masked = m
	}
	d := make(map[string]string, min(len(ev.Details), shipDetails)+3)
	for _, k := range slices.Sorted(maps.Keys(ev.Details)) {
		// The broker's attribution keys are its own, in any case: a sink
		// or reader that ignores case must not see a proxy's "Proxy".
		if len(d) >= shipDetails || len(k) > shipShort || strings.EqualFold(k, DetailProxy) || strings.EqualFold(k, DetailProxySeq) || strings.EqualFold(k, DetailProxyTime) {
			continue
		}
		limit := shipDetail
		if k == "span" && ev.Type == audit.TypeTraceSpan {
			limit = audit.MaxTextBytes
		}
		d[k] = clipText(ev.Details[k], limit)
	}
	d[DetailProxy], d[DetailProxySeq] = id, strconv.FormatUint(se.Seq, 10)
	if !proxyTime.IsZero() {
		d[DetailProxyTime] = proxyTime.UTC().Format(time.RFC3339Nano)
	}
	ev.Details = d
	// The trail's own checks (actor kind, ...) run here, so a bad event
	// is the proxy's 400 and never an append failure of the broker.
	if err := ev.Normalize(now); err != nil {
		return nil, fmt.Errorf("%w: spool event %d: %v", ErrInvalid, se.Seq, err)
	}
	return &ev, nil
}

func shippedTypeList() string {
	s := make([]string, len(ShippedTypes))
	for i, t := range ShippedTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// clipText cuts s to at most n bytes on a rune boundary.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func clipList(l []string) []string {
	if len(l) > shipList {
		l = l[:shipList]
	}
	for i := range l {
		l[i] = clipText(l[i], shipShort)
	}
	return l
}

// shipState is the proxy's acknowledged position: this broker's own or
// the stored one, whichever is further, moved past any event of the proxy
// the trail holds beyond it. The trail is read every time: another
// replica may have appended a shipment whose position it then failed to
// store (the proxy, told of the failure, retries here), and a broker may
// have crashed between the two.
func (r *Registry) shipState(ctx context.Context, id string) (*Enrollment, error) {
	e, err := r.Store.GetEnrollment(ctx, id)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	st := r.acked[id]
	r.mu.Unlock()
	if st == nil || st.Acked < e.Acked {
		st = &Enrollment{Acked: e.Acked, AckedAt: e.AckedAt}
	}
	err = r.Audit.Range(ctx, st.AckedAt+1, func(ev audit.Event) bool {
		if ev.Details["proxy"] != id {
			return true
		}
		if n, err := strconv.ParseUint(ev.Details["proxy_seq"], 10, 64); err == nil && n > st.Acked {
			st.Acked, st.AckedAt = n, ev.Seq
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.acked[id] = st
	r.mu.Unlock()
	return st, nil
}

func (r *Registry) emit(ctx context.Context, e *audit.Event) {
	if r.Audit != nil {
		_ = r.Audit.Append(ctx, e)
	}
}

// Version hashes a configuration document.
func Version(doc []byte) string {
	h := sha256.Sum256(doc)
	return hex.EncodeToString(h[:8])
}

// Audit event types of the link (registered in broker/audit).
const (
	TypeProxyEnrolled = audit.TypeProxyEnrolled
	TypeProxyRevoked  = audit.TypeProxyRevoked
)

// Hold passes a held call to the broker's approvers and waits. The
// grant must be the token's. A call on a grant that has ended (a proxy
// that has not yet heard of its revocation) is passed on too: Holds
// refuses it at once, recorded, with the reason and what the agent should
// do (broker.Service.HoldPrompt), never holds or releases it; an error
// here would tell the agent the approval channel failed and to retry.
func (r *Registry) Hold(ctx context.Context, e *Enrollment, h HoldRequest) (HoldDecision, error) {
	if r.Holds == nil {
		return HoldDecision{}, fmt.Errorf("%w: this broker takes no held calls", ErrForbidden)
	}
	if h.Grant == "" || h.Grant != h.Claims.Req {
		return HoldDecision{}, fmt.Errorf("%w: the hold's grant does not match its token", ErrInvalid)
	}
	return r.Holds(ctx, h)
}
