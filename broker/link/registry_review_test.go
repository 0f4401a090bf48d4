package link

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// A revoked proxy cannot come back on a grant it stood on before a
// renewal moved it to a newer one (found by a review: only the current
// grant was checked).
func TestRevokedProxyCannotReEnrollOnAnEarlierGrant(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	e := enroll(t, r) // on g1
	// renewal onto a newer grant g2 (g1 still live)
	if _, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g2", PublicKey: e.PublicKey, ID: e.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revoke(ctx, e.ID, &audit.Actor{Subject: "local-admin"}, "socket"); err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	again, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: priv.PublicKey().Bytes()})
	if err == nil {
		t.Fatalf("the revoked proxy re-enrolled on its earlier live grant g1 as %s", again.ID)
	}
}

// listHookStore runs afterList once, after the next ListEnrollments.
type listHookStore struct {
	*memStore
	afterList func()
}

func (s *listHookStore) ListEnrollments(ctx context.Context) ([]*Enrollment, error) {
	out, err := s.memStore.ListEnrollments(ctx)
	if f := s.afterList; f != nil {
		s.afterList = nil
		f()
	}
	return out, err
}

// A revoke that lands between a new enrollment's check of its grant and
// its write does not leave it standing on the revoked proxy's grant
// (found by a review).
func TestRevokeRacingANewEnrollmentOnTheSameGrant(t *testing.T) {
	ctx := context.Background()
	ms, log, rev := &memStore{}, &memLog{}, &revSet{}
	st := &listHookStore{memStore: ms}
	r := &Registry{Store: st, Grants: grants{}, Revoked: rev, Keys: keys{"v1"}, Audit: log}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	e, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: priv.PublicKey().Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	st.afterList = func() {
		if _, err := r.Revoke(ctx, e.ID, &audit.Actor{Subject: "local-admin"}, "socket"); err != nil {
			t.Error(err)
		}
	}
	again, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: priv.PublicKey().Bytes()})
	if err == nil {
		t.Fatalf("a new enrollment %s stands on grant g1 of revoked proxy %s", again.ID, e.ID)
	}
}

// failOnceStore fails the next UpdateEnrollment when fail is set.
type failOnceStore struct {
	*memStore
	mu   sync.Mutex
	fail bool
}

func (s *failOnceStore) UpdateEnrollment(ctx context.Context, id string, fn func(*Enrollment) error) (*Enrollment, error) {
	s.mu.Lock()
	f := s.fail
	s.fail = false
	s.mu.Unlock()
	if f {
		return nil, errors.New("etcd: context deadline exceeded")
	}
	return s.memStore.UpdateEnrollment(ctx, id, fn)
}

// afterAFailedPositionWrite sets up two replicas A and B over one store
// and trail: B took 1..3, then A appended 4..6 and failed to store the
// position. It returns B, the trail, the enrollment and A's answer.
func afterAFailedPositionWrite(t *testing.T) (*Registry, *memLog, *Enrollment, AuditAck, error) {
	t.Helper()
	ctx := context.Background()
	ms, log, rev := &memStore{}, &memLog{}, &revSet{}
	st := &failOnceStore{memStore: ms}
	mk := func() *Registry {
		return &Registry{Store: st, Grants: grants{}, Revoked: rev, Keys: keys{"v1"}, Audit: log}
	}
	a, b := mk(), mk()
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	e, err := a.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: priv.PublicKey().Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Ship(ctx, e, batch(1, 3)); err != nil { // B: 3 in memory, 3 stored
		t.Fatal(err)
	}
	st.mu.Lock()
	st.fail = true
	st.mu.Unlock()
	ack, err := a.Ship(ctx, e, batch(4, 6))
	return b, log, e, ack, err
}

// Replica A appended a shipment but failed to store its position (the
// proxy is told, and retries through B): B finds the events in the trail
// and chains them once (found by a review: B trusted its own position).
func TestRetryOnAnotherReplicaAfterAFailedPositionWriteIsChainedOnce(t *testing.T) {
	b, log, e, _, err := afterAFailedPositionWrite(t)
	if err == nil {
		t.Fatal("want the failed position write reported")
	}
	if _, err := b.Ship(context.Background(), e, batch(4, 6)); err != nil { // the proxy retries through B
		t.Fatal(err)
	}
	want := "r1@1 r2@2 r3@3 r4@4 r5@5 r6@6"
	if got := strings.Join(log.calls(e.ID), " "); got != want {
		t.Errorf("each call must be in the trail once:\n got %s\nwant %s", got, want)
	}
}

// The same failed position write, as the API answers it (200, acked 6):
// the proxy's next shipment through B is taken, not refused as a gap.
func TestNextShipmentOnAnotherReplicaAfterAFailedPositionWrite(t *testing.T) {
	b, _, e, ack, _ := afterAFailedPositionWrite(t)
	if ack.Acked != 6 {
		t.Fatalf("A acked %d", ack.Acked)
	}
	if ack, err := b.Ship(context.Background(), e, batch(7, 7)); err != nil || ack.Acked != 7 {
		t.Fatalf("next shipment through B: %+v %v", ack, err)
	}
}
