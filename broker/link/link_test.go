package link

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
)

func TestSealOpensOnlyWithTheProxysKey(t *testing.T) {
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	eph, nonce, sealed, err := Seal(priv.PublicKey().Bytes(), []byte(`{"openai":"sk-test"}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "sk-test") {
		t.Fatal("sealed text shows the key")
	}
	got, err := Open(priv, eph, nonce, sealed)
	if err != nil || string(got) != `{"openai":"sk-test"}` {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := Open(other, eph, nonce, sealed); err == nil {
		t.Fatal("another key opened it")
	}
	sealed[0] ^= 1
	if _, err := Open(priv, eph, nonce, sealed); err == nil {
		t.Fatal("altered sealed keys opened")
	}
	if _, _, _, err := Seal([]byte("short"), nil); err == nil {
		t.Fatal("sealed to a malformed key")
	}
}

// memStore is a link.Store in memory whose UpdateEnrollment is a
// compare-and-swap, as on etcd: beforeWrite, when set, runs between fn
// and the write, where another replica's write may land.
type memStore struct {
	mu          sync.Mutex
	m           map[string]Enrollment
	rev         map[string]int
	beforeWrite func(id string)
}

func (s *memStore) PutEnrollment(_ context.Context, e *Enrollment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(e)
	return nil
}

func (s *memStore) putLocked(e *Enrollment) {
	if s.m == nil {
		s.m, s.rev = map[string]Enrollment{}, map[string]int{}
	}
	s.m[e.ID] = *e
	s.rev[e.ID]++
}

func (s *memStore) UpdateEnrollment(_ context.Context, id string, fn func(*Enrollment) error) (*Enrollment, error) {
	for {
		s.mu.Lock()
		e, ok := s.m[id]
		rev := s.rev[id]
		hook := s.beforeWrite
		s.mu.Unlock()
		if !ok {
			return nil, ErrNotFound
		}
		if err := fn(&e); err != nil {
			return nil, err
		}
		if hook != nil {
			hook(id)
		}
		s.mu.Lock()
		if s.rev[id] == rev {
			s.putLocked(&e)
			s.mu.Unlock()
			return &e, nil
		}
		s.mu.Unlock()
	}
}

func (s *memStore) GetEnrollment(_ context.Context, id string) (*Enrollment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok {
		return nil, ErrNotFound
	}
	return &e, nil
}

func (s *memStore) ListEnrollments(context.Context) ([]*Enrollment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Enrollment
	for _, e := range s.m {
		out = append(out, &e)
	}
	return out, nil
}

type memLog struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (l *memLog) Append(_ context.Context, e *audit.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Seq = uint64(len(l.evs) + 1)
	l.evs = append(l.evs, *e)
	return nil
}

func (l *memLog) Range(_ context.Context, from uint64, fn func(audit.Event) bool) error {
	l.mu.Lock()
	evs := append([]audit.Event(nil), l.evs...)
	l.mu.Unlock()
	for _, e := range evs {
		if e.Seq >= from && !fn(e) {
			break
		}
	}
	return nil
}

func (l *memLog) calls(proxy string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		if e.Type == audit.TypeProxyCall && e.Details["proxy"] == proxy {
			out = append(out, e.Details["request_id"]+"@"+e.Details["proxy_seq"])
		}
	}
	return out
}

type grants struct{ err error }

func (g grants) ProxyGrant(context.Context, Caller, string) (time.Time, error) {
	return time.Now().Add(time.Hour), g.err
}

type revSet struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (r *revSet) RevokedGrants() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]time.Time{}
	for k, v := range r.m {
		out[k] = v
	}
	return out
}

func (r *revSet) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]time.Time{}
	}
	r.m[id] = time.Now().Add(time.Hour)
}

type keys struct{ v string }

func (k keys) ProviderKeys(context.Context) (map[string]string, error) {
	return map[string]string{"openai": "sk-" + k.v}, nil
}
func (k keys) KeysVersion(context.Context) (string, error) { return k.v, nil }

func newRegistry(st *memStore, log *memLog, rev *revSet, g Grants) *Registry {
	return &Registry{Store: st, Grants: g, Revoked: rev, Keys: keys{"v1"}, Audit: log, Tick: 5 * time.Millisecond,
		Config: func() ProxyConfig { return ProxyConfig{Version: "c1", Document: []byte(`{}`)} }}
}

var alice = Caller{Subject: "proxy-a", Issuer: "k8s", Kind: KindWorkload}

func enroll(t *testing.T, r *Registry) *Enrollment {
	t.Helper()
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	e, err := r.Enroll(context.Background(), alice, EnrollRequest{Grant: "g1", PublicKey: priv.PublicKey().Bytes(), Version: "1", Address: "http://p"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func batch(from, to uint64) AuditBatch {
	var b AuditBatch
	for i := from; i <= to; i++ {
		b.Events = append(b.Events, SpooledEvent{Seq: i, Event: audit.Event{Type: audit.TypeProxyCall, Details: map[string]string{"request_id": "r" + string(rune('0'+i))}}})
	}
	return b
}

func TestShipIsInOrderOnceEachAndSurvivesABrokerCrash(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	e := enroll(t, r)
	if ack, err := r.Ship(ctx, e, batch(1, 3)); err != nil || ack.Acked != 3 {
		t.Fatalf("ship: %+v %v", ack, err)
	}
	// A retry overlapping what was taken adds only what is new.
	if ack, err := r.Ship(ctx, e, batch(2, 4)); err != nil || ack.Acked != 4 {
		t.Fatalf("retry: %+v %v", ack, err)
	}
	// A gap is refused, and nothing past it is taken.
	if ack, err := r.Ship(ctx, e, batch(6, 6)); !errors.Is(err, ErrInvalid) || ack.Acked != 4 {
		t.Fatalf("gap: %+v %v", ack, err)
	}
	// The broker crashed after chaining 5 but before recording the ack:
	// a new registry finds 5 in the trail and does not chain it twice.
	r.Ship(ctx, e, batch(5, 5))
	st.mu.Lock()
	x := st.m[e.ID]
	x.Acked, x.AckedAt = 4, x.AckedAt-1
	st.m[e.ID] = x
	st.mu.Unlock()
	r2 := newRegistry(st, log, rev, grants{})
	if ack, err := r2.Ship(ctx, e, batch(5, 6)); err != nil || ack.Acked != 6 {
		t.Fatalf("after restart: %+v %v", ack, err)
	}
	got := strings.Join(log.calls(e.ID), " ")
	if got != "r1@1 r2@2 r3@3 r4@4 r5@5 r6@6" {
		t.Fatalf("trail: %s", got)
	}
}

func TestEnrollRefusesAndAudits(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pub := priv.PublicKey().Bytes()
	noGrant := newRegistry(st, log, rev, grants{err: errors.New("grant g1 does not include proxy:serve")})
	if _, err := noGrant.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: pub}); err == nil {
		t.Fatal("enrolled without proxy:serve")
	}
	r := newRegistry(st, log, rev, grants{})
	if _, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: []byte("short")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad key: %v", err)
	}
	rev.add("g9")
	if _, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g9", PublicKey: pub}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("revoked grant: %v", err)
	}
	e := enroll(t, r)
	// Another identity cannot take over an enrollment, nor act for it.
	mallory := Caller{Subject: "mallory", Issuer: "k8s", Kind: KindWorkload}
	if _, err := r.Enroll(ctx, mallory, EnrollRequest{Grant: "g1", PublicKey: pub, ID: e.ID}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("takeover: %v", err)
	}
	if _, err := r.Authorize(ctx, mallory, e.ID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("mallory authorized: %v", err)
	}
	if _, err := r.Authorize(ctx, alice, e.ID); err != nil {
		t.Fatal(err)
	}
	// Revoked: refused at once, and it cannot renew itself back.
	if _, err := r.Revoke(ctx, e.ID, &audit.Actor{Subject: "local-admin"}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authorize(ctx, alice, e.ID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("revoked proxy authorized: %v", err)
	}
	if _, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: pub, ID: e.ID}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("revoked proxy renewed: %v", err)
	}
	refused, enrolled, revoked := 0, 0, 0
	for _, ev := range log.evs {
		switch {
		case ev.Type == audit.TypeProxyEnrolled && ev.Decision == "refused":
			refused++
		case ev.Type == audit.TypeProxyEnrolled:
			enrolled++
		case ev.Type == audit.TypeProxyRevoked:
			revoked++
		}
	}
	if refused != 5 || enrolled != 1 || revoked != 1 {
		t.Fatalf("trail: %d refused, %d enrolled, %d revoked", refused, enrolled, revoked)
	}
}

func TestStreamSendsRevocationsAtOnceAndEndsOnRevoke(t *testing.T) {
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	rev.add("old")
	r := newRegistry(st, log, rev, grants{})
	e := enroll(t, r)
	msgs := make(chan StreamState, 100)
	done := make(chan error, 1)
	go func() {
		done <- r.Stream(context.Background(), e, time.Hour, func(s StreamState) error { msgs <- s; return nil })
	}()
	first := <-msgs
	if first.Delta || len(first.Revoked) != 1 || first.KeysVersion != "v1" || first.ConfigVersion != "c1" {
		t.Fatalf("first message: %+v", first)
	}
	start := time.Now()
	rev.add("g2")
	for m := range msgs {
		if _, ok := m.Revoked["g2"]; ok {
			if !m.Delta || len(m.Revoked) != 1 {
				t.Fatalf("not a delta: %+v", m)
			}
			break
		}
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("revocation took %s", d)
	}
	r.Revoke(context.Background(), e.ID, nil, "test")
	select {
	case err := <-done:
		if !errors.Is(err, ErrForbidden) {
			t.Fatalf("stream ended with %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("revoked proxy's stream still open")
	}
}

// A quiet stream still sends heartbeats as often as asked.
func TestStreamHeartbeats(t *testing.T) {
	r := newRegistry(&memStore{}, &memLog{}, &revSet{}, grants{})
	e := enroll(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	n := 0
	r.Stream(ctx, e, 250*time.Millisecond, func(StreamState) error { n++; return nil })
	if n < 3 || n > 5 {
		t.Fatalf("%d messages in 900ms with a 250ms heartbeat", n)
	}
}

type memSpool struct {
	mu    sync.Mutex
	evs   []SpooledEvent
	next  uint64
	size  int64
	enrol string
}

func (s *memSpool) Append(_ context.Context, e *audit.Event) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.evs = append(s.evs, SpooledEvent{Seq: s.next, Event: *e})
	s.size += 100
	return s.next, nil
}
func (s *memSpool) Pending(_ context.Context, n int) ([]SpooledEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SpooledEvent(nil), s.evs[:min(n, len(s.evs))]...), nil
}
func (s *memSpool) Ack(_ context.Context, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.evs) > 0 && s.evs[0].Seq <= seq {
		s.evs = s.evs[1:]
		s.size -= 100
	}
	return nil
}
func (s *memSpool) Size() int64                   { s.mu.Lock(); defer s.mu.Unlock(); return s.size }
func (s *memSpool) Enrollment() (string, error)   { return s.enrol, nil }
func (s *memSpool) SetEnrollment(id string) error { s.enrol = id; return nil }
func (s *memSpool) Next() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.evs) > 0 {
		return s.evs[0].Seq, nil
	}
	return s.next + 1, nil
}

func TestGateRefusesWhenStaleOrSpoolFull(t *testing.T) {
	var now atomic.Pointer[time.Time]
	t0 := time.Now()
	now.Store(&t0)
	sp := &memSpool{}
	c, err := NewClient(ClientOptions{BrokerURL: "http://b", IDTokenFile: "x", Spool: sp, Staleness: 30 * time.Second, SpoolMax: 250,
		Now: func() time.Time { return *now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Gate(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	code := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil))
		var body struct {
			Error struct{ Message, Type, Code string }
		}
		json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body.Error.Code
	}
	if s, c := code(); s != http.StatusServiceUnavailable || c != "proxy_not_enrolled" {
		t.Fatalf("before enrollment: %d %s", s, c)
	}
	c.mu.Lock()
	c.lastMsg = t0
	c.mu.Unlock()
	c.ready.Store(true)
	if s, _ := code(); s != http.StatusTeapot {
		t.Fatalf("ready: %d", s)
	}
	t1 := t0.Add(31 * time.Second)
	now.Store(&t1)
	if s, c := code(); s != http.StatusServiceUnavailable || c != "revocations_stale" {
		t.Fatalf("stale: %d %s", s, c)
	}
	now.Store(&t0)
	for range 3 {
		c.Append(context.Background(), &audit.Event{Type: audit.TypeProxyCall})
	}
	if s, c := code(); s != http.StatusServiceUnavailable || c != "audit_spool_full" {
		t.Fatalf("spool full: %d %s", s, c)
	}
	// The refusals reach the trail as one counted event.
	c.FlushRefusals(context.Background())
	last := sp.evs[len(sp.evs)-1].Event
	if last.Type != audit.TypeProxyRefused || last.Details["codes"] != "audit_spool_full=1,proxy_not_enrolled=1,revocations_stale=1" || last.Details["count"] != "3" {
		t.Fatalf("refusals event: %+v", last)
	}
	n := len(sp.evs)
	c.FlushRefusals(context.Background())
	if len(sp.evs) != n {
		t.Fatal("an empty window was recorded")
	}
}

func TestJWKSRefetchOnUnknownKidIsRateLimited(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var hits atomic.Int32
	var doc atomic.Value
	doc.Store(token.JWKS{Keys: []token.JWK{}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		json.NewEncoder(w).Encode(doc.Load())
	}))
	defer srv.Close()
	var now atomic.Pointer[time.Time]
	t0 := time.Now()
	now.Store(&t0)
	c, _ := NewClient(ClientOptions{BrokerURL: srv.URL, IDTokenFile: "x", Spool: &memSpool{}, Now: func() time.Time { return *now.Load() }})
	if err := c.loadJWKS(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A rotation: the broker now publishes a new key.
	kid := token.KeyID(pub)
	doc.Store(token.JWKS{Keys: []token.JWK{jwkOf(kid, pub)}})
	if _, ok := c.PublicKey(kid); ok {
		t.Fatal("refetched within the rate limit")
	}
	t1 := t0.Add(2 * jwksMinInterval)
	now.Store(&t1)
	for range 5 {
		if _, ok := c.PublicKey("nope"); ok {
			t.Fatal("unknown kid accepted")
		}
	}
	if _, ok := c.PublicKey(kid); !ok {
		t.Fatal("new key not found after refetch")
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2 (start, one refetch)", n)
	}
}

func jwkOf(kid string, pub ed25519.PublicKey) token.JWK {
	return token.JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Use: "sig", Alg: "EdDSA"}
}

func TestRenewAheadOfTheEnd(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ life, before time.Duration }{
		{8 * time.Hour, 96 * time.Minute}, // a fifth
		{2 * time.Minute, time.Minute},    // at least a minute
		{time.Minute, 30 * time.Second},   // at most half: never at once
	} {
		e := &Enrollment{LastContact: t0, ExpiresAt: t0.Add(tc.life)}
		if got := e.ExpiresAt.Sub(renewAt(e)); got != tc.before {
			t.Errorf("life %s: renews %s before the end, want %s", tc.life, got, tc.before)
		}
	}
}

// shipOne is a batch of one event at seq.
func shipOne(seq uint64, ev audit.Event) AuditBatch {
	return AuditBatch{Events: []SpooledEvent{{Seq: seq, Event: ev}}}
}

// A proxy's identity writes only what a proxy records: a shipment with a
// broker-side type (an approval, a vault change, an anchor, a login) or
// an unknown one is refused whole, nothing of it in the trail.
func TestShipRefusesTypesAProxyDoesNotRecord(t *testing.T) {
	ctx := context.Background()
	for _, typ := range []audit.Type{audit.TypeRequestApproved, audit.TypeVaultSet, audit.TypeAuditAnchor, audit.TypeProxyEnrolled,
		audit.TypeProxyRevoked, "login", "", "proxy.call.x"} {
		st, log, rev := &memStore{}, &memLog{}, &revSet{}
		r := newRegistry(st, log, rev, grants{})
		e := enroll(t, r)
		before := len(log.evs)
		b := batch(1, 2)
		b.Events[1].Event.Type = typ
		if ack, err := r.Ship(ctx, e, b); !errors.Is(err, ErrInvalid) || ack.Acked != 0 {
			t.Errorf("%q: %+v %v", typ, ack, err)
		}
		if len(log.evs) != before {
			t.Errorf("%q: the refused batch left %d events in the trail", typ, len(log.evs)-before)
		}
		// The real proxy's events still go in from 1.
		if ack, err := r.Ship(ctx, e, batch(1, 2)); err != nil || ack.Acked != 2 {
			t.Errorf("%q: the proxy's own shipment after: %+v %v", typ, ack, err)
		}
	}
}

// Sequence numbers are contiguous from the acknowledged one: a jump (even
// on a fresh enrollment) or a hole inside a batch is refused, so nobody
// can make the broker skip the proxy's later events as retries.
func TestShipRefusesSequenceJumpsAndHoles(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	e := enroll(t, r)
	for name, b := range map[string]AuditBatch{
		"jump on a fresh enrollment": batch(1000000, 1000000),
		"starts at 2":                batch(2, 3),
		"seq 0":                      shipOne(0, audit.Event{Type: audit.TypeProxyCall}),
	} {
		if ack, err := r.Ship(ctx, e, b); !errors.Is(err, ErrInvalid) || ack.Acked != 0 {
			t.Errorf("%s: %+v %v", name, ack, err)
		}
	}
	if ack, err := r.Ship(ctx, e, batch(1, 2)); err != nil || ack.Acked != 2 {
		t.Fatalf("ship: %+v %v", ack, err)
	}
	hole := batch(3, 3)
	hole.Events = append(hole.Events, batch(5, 5).Events...)
	back := batch(3, 3)
	back.Events = append(back.Events, batch(3, 3).Events...)
	for name, b := range map[string]AuditBatch{"jump": batch(1000000, 1000000), "hole": hole, "repeat": back, "gap": batch(4, 4)} {
		if ack, err := r.Ship(ctx, e, b); !errors.Is(err, ErrInvalid) || ack.Acked != 2 {
			t.Errorf("%s: %+v %v", name, ack, err)
		}
	}
	if ack, err := r.Ship(ctx, e, batch(3, 4)); err != nil || ack.Acked != 4 {
		t.Fatalf("the real next events: %+v %v", ack, err)
	}
	if got := strings.Join(log.calls(e.ID), " "); got != "r1@1 r2@2 r3@3 r4@4" {
		t.Fatalf("trail: %s", got)
	}
}

// A malformed event (one the trail would refuse) refuses the batch
// before anything is appended: the proxy gets the error, the trail's
// append never fails (it would take the broker out of readiness).
func TestShipChecksEventsBeforeAppending(t *testing.T) {
	ctx := context.Background()
	log := &strictLog{}
	for name, ev := range map[string]audit.Event{
		"actor kind":     {Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "x", Kind: "robot"}},
		"code of a type": {Type: audit.TypeProxyCall, Code: "PAM-X999"},
	} {
		r := newRegistry(&memStore{}, &log.memLog, &revSet{}, grants{})
		r.Audit = log
		e := enroll(t, r)
		b := batch(1, 1)
		b.Events = append(b.Events, SpooledEvent{Seq: 2, Event: ev})
		ack, err := r.Ship(ctx, e, b)
		if name == "code of a type" { // the broker sets the code itself
			if err != nil || ack.Acked != 2 {
				t.Errorf("%s: %+v %v", name, ack, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || ack.Acked != 0 {
			t.Errorf("%s: %+v %v", name, ack, err)
		}
	}
	if log.failed != 0 {
		t.Fatalf("%d appends failed in the trail", log.failed)
	}
}

// strictLog appends like the real trail: it refuses what Normalize
// refuses.
type strictLog struct {
	memLog
	failed int
}

func (l *strictLog) Append(ctx context.Context, e *audit.Event) error {
	if err := e.Normalize(time.Now()); err != nil {
		l.failed++
		return err
	}
	return l.memLog.Append(ctx, e)
}

// The broker keeps its own time and chain fields: the proxy's time goes
// to details.proxy_time, its seq/hash/prev_hash and any details.proxy*
// are overwritten, and every field is bounded.
func TestShipStampsAttributesAndCaps(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	now := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	r.Now = func() time.Time { return now }
	e := enroll(t, r)
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	long := strings.Repeat("é", 100000)
	details := map[string]string{"proxy": "someone-else", "proxy_seq": "77", "proxy_time": "x", "request_id": "r1", "span": long,
		"Proxy": "someone-else", "PROXY_SEQ": "78", "Proxy_Time": "y"}
	for i := range 100 {
		details[fmt.Sprintf("k%03d", i)] = long
	}
	ev := audit.Event{Type: audit.TypeProxyCall, Seq: 99, Hash: "ab", PrevHash: "cd", Time: old, Model: long, Error: long,
		Actor:   &audit.Actor{Subject: long, Groups: slices.Repeat([]string{long}, 1000)},
		Reasons: slices.Repeat([]string{"r"}, 1000), Unscanned: slices.Repeat([]string{long}, 1000), Details: details}
	if _, err := r.Ship(ctx, e, shipOne(1, ev)); err != nil {
		t.Fatal(err)
	}
	got := log.evs[len(log.evs)-1]
	if !got.Time.Equal(now) || got.Details["proxy_time"] != old.Format(time.RFC3339Nano) {
		t.Errorf("time %v, proxy_time %q", got.Time, got.Details["proxy_time"])
	}
	if got.Details["proxy"] != e.ID || got.Details["proxy_seq"] != "1" || got.Hash != "" || got.PrevHash != "" || got.Code != "PAM-P001" {
		t.Errorf("attribution: %v hash %q prev %q code %q", got.Details, got.Hash, got.PrevHash, got.Code)
	}
	for _, k := range []string{"Proxy", "PROXY_SEQ", "Proxy_Time"} {
		if v, ok := got.Details[k]; ok {
			t.Errorf("the proxy's own %q=%q passed beside the broker's attribution", k, v)
		}
	}
	if len(got.Model) > shipShort || len(got.Error) > shipError || len(got.Actor.Subject) > shipShort ||
		len(got.Actor.Groups) > shipList || len(got.Reasons) > shipList || len(got.Unscanned) > shipList || len(got.Details) > shipDetails+3 {
		t.Errorf("not bounded: model %d error %d subject %d groups %d reasons %d unscanned %d details %d",
			len(got.Model), len(got.Error), len(got.Actor.Subject), len(got.Actor.Groups), len(got.Reasons), len(got.Unscanned), len(got.Details))
	}
	for k, v := range got.Details {
		if len(v) > shipDetail || !utf8.ValidString(v) {
			t.Errorf("details[%s]: %d bytes, valid UTF-8 %v", k, len(v), utf8.ValidString(v))
		}
	}
	if len(ev.Details) != 108 || ev.Details["proxy"] != "someone-else" {
		t.Error("the shipped event's own maps were changed")
	}
}

// A new enrollment takes the spool where it is (spool_next); a renewal
// keeps the broker's position whatever the request says.
func TestEnrollTakesTheSpoolWhereItIs(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	in := EnrollRequest{Grant: "g1", PublicKey: priv.PublicKey().Bytes(), SpoolNext: 5}
	e, err := r.Enroll(ctx, alice, in)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := r.Ship(ctx, e, batch(1, 1)); err != nil || ack.Acked != 4 {
		t.Fatalf("before the spool's position: %+v %v", ack, err)
	}
	if ack, err := r.Ship(ctx, e, batch(5, 6)); err != nil || ack.Acked != 6 {
		t.Fatalf("from the spool's position: %+v %v", ack, err)
	}
	in.ID, in.SpoolNext = e.ID, 1000
	if _, err := r.Enroll(ctx, alice, in); err != nil {
		t.Fatal(err)
	}
	if ack, err := r.Ship(ctx, e, batch(1000, 1000)); !errors.Is(err, ErrInvalid) || ack.Acked != 6 {
		t.Fatalf("a renewal moved the position: %+v %v", ack, err)
	}
	if got := strings.Join(log.calls(e.ID), " "); got != "r5@5 r6@6" {
		t.Fatalf("trail: %s", got)
	}
}

// Enrollment refuses keys no key can be sealed to: a wrong length, the
// all-zero key and the other low-order points (and their non-canonical
// encodings).
func TestEnrollRefusesUnusableX25519Keys(t *testing.T) {
	ctx := context.Background()
	hexKey := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, k := range map[string][]byte{
		"short":    make([]byte, 31),
		"zero":     make([]byte, 32),
		"one":      append([]byte{1}, make([]byte, 31)...),
		"order 8":  hexKey("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
		"order 8b": hexKey("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
		"p-1":      hexKey("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
		"p":        hexKey("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
		"p+1":      hexKey("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
	} {
		st, log, rev := &memStore{}, &memLog{}, &revSet{}
		r := newRegistry(st, log, rev, grants{})
		if _, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: k}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		if len(st.m) != 0 {
			t.Errorf("%s: enrolled", name)
		}
	}
}

// The broker ends a proxy's stream with an error event: a refusal of the
// enrollment (code forbidden) cuts the proxy off; the broker's own failure
// (its store, its vault: any other code) is a lost link to reconnect,
// served on until revocation_staleness (found by a review: every error
// event was taken for a refusal, so one replica's etcd hiccup stopped
// every proxy streaming from it).
func TestStreamErrorEventsTellARefusalFromAFailure(t *testing.T) {
	for _, tc := range []struct {
		code    string
		refused bool
	}{{"forbidden", true}, {"", true}, {"unavailable", false}, {"internal", false}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "event: error\ndata: {\"error\":{\"code\":%q,\"message\":\"m\"}}\n\n", tc.code)
		}))
		c, err := NewClient(ClientOptions{BrokerURL: srv.URL, IDTokenFile: "x", Spool: &memSpool{}})
		if err != nil {
			t.Fatal(err)
		}
		err = c.stream(context.Background())
		srv.Close()
		var ae *apiError
		if !errors.As(err, &ae) || ae.refused() != tc.refused || (ae.Status == http.StatusForbidden) != tc.refused {
			t.Errorf("code %q: %v (%+v), want refused=%v", tc.code, err, ae, tc.refused)
		}
	}
}

// A proxy sends the held call's method and its excerpt's pieces with their
// places; a broker older than those fields reads holds strictly and
// refuses a body with a field it does not know, before it records
// anything. The proxy then sends the hold again without them, so holds
// keep working while the brokers are upgraded after their proxies (the
// broker shows the path without a method, and the excerpt's text, which
// names the places). Any other refusal is not retried.
func TestHoldToAnOlderBroker(t *testing.T) {
	// The body an older broker knows: HoldRequest before Method.
	type olderHold struct {
		Grant        string         `json:"grant"`
		Claims       token.Claims   `json:"claims"`
		Rule         string         `json:"rule"`
		Approvers    Subjects       `json:"approvers"`
		Approvals    []HoldApproval `json:"approvals,omitempty"`
		Model        string         `json:"model,omitempty"`
		Endpoint     string         `json:"endpoint,omitempty"`
		Excerpt      string         `json:"excerpt,omitempty"`
		PromptSHA256 string         `json:"prompt_sha256,omitempty"`
		CallSHA256   string         `json:"call_sha256,omitempty"`
		Tool         string         `json:"tool,omitempty"`
		Arguments    string         `json:"arguments,omitempty"`
	}
	for _, older := range []bool{true, false} {
		var mu sync.Mutex
		var bodies []map[string]any
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var raw json.RawMessage
			json.NewDecoder(r.Body).Decode(&raw)
			var seen map[string]any
			json.Unmarshal(raw, &seen)
			mu.Lock()
			bodies = append(bodies, seen)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			var err error
			if older {
				dec := json.NewDecoder(strings.NewReader(string(raw)))
				dec.DisallowUnknownFields() // as broker/api's readJSON
				err = dec.Decode(&olderHold{})
			} else {
				err = errors.New("the hold's grant does not match its token")
			}
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "invalid", "message": "malformed JSON body: " + err.Error()}})
				return
			}
			json.NewEncoder(w).Encode(HoldDecision{ID: "req_h", Reason: "no"})
		}))
		c, err := NewClient(ClientOptions{BrokerURL: srv.URL, IDTokenFile: "x", Spool: &memSpool{}})
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Hold(context.Background(), HoldRequest{Grant: "req_g", Rule: "r", Model: "gpt-4o", Method: "DELETE", Endpoint: "/v1/chat/completions/x",
			Excerpt: "[found in messages[0] (user)]\ne", Matches: []HeldMatch{{Where: []string{"messages[0] (user)"}, Text: "e"}}, MatchSummary: "s"})
		srv.Close()
		switch {
		case len(bodies) == 0 || bodies[0]["method"] != "DELETE" || bodies[0]["matches"] == nil || bodies[0]["match_summary"] != "s":
			t.Fatalf("older=%v: the first hold sent %v", older, bodies)
		case older && (err != nil || d.ID != "req_h" || len(bodies) != 2 || bodies[1]["method"] != nil || bodies[1]["matches"] != nil ||
			bodies[1]["match_summary"] != nil || bodies[1]["endpoint"] != "/v1/chat/completions/x" || bodies[1]["excerpt"] != "[found in messages[0] (user)]\ne"):
			t.Errorf("an older broker: %v %+v, bodies %v", err, d, bodies)
		case !older && (err == nil || len(bodies) != 1):
			t.Errorf("another refusal was retried: %v, bodies %v", err, bodies)
		}
	}
}
