package link

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

type memStore struct {
	mu sync.Mutex
	m  map[string]Enrollment
}

func (s *memStore) PutEnrollment(_ context.Context, e *Enrollment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Enrollment{}
	}
	s.m[e.ID] = *e
	return nil
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

var alice = Caller{Subject: "proxy-a", Issuer: "k8s"}

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
	mallory := Caller{Subject: "mallory", Issuer: "k8s"}
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
