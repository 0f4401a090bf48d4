package link

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// once arms st so that f runs once, between an update's read and its
// write: where a concurrent request (or another replica's) lands.
func (s *memStore) once(f func()) {
	s.mu.Lock()
	s.beforeWrite = func(string) {
		s.mu.Lock()
		s.beforeWrite = nil // f's own writes go through
		s.mu.Unlock()
		f()
	}
	s.mu.Unlock()
}

// An admin's revoke that lands while the proxy renews its enrollment
// (POST /v1/proxies/enroll with its id, between the renewal's read of the
// record and its write) stays: revoking is final. Found by a red team:
// the renewal wrote back the whole record it had read, RevokedAt nil.
func TestRevokeSurvivesARacingRenewal(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	e := enroll(t, r)
	st.once(func() {
		if _, err := r.Revoke(ctx, e.ID, &audit.Actor{Subject: "local-admin"}, "socket"); err != nil {
			t.Errorf("revoke: %v", err)
		}
	})
	_, err := r.Enroll(ctx, alice, EnrollRequest{Grant: e.Grant, PublicKey: e.PublicKey, ID: e.ID})
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a renewal that raced the revoke: %v, want it refused as revoked", err)
	}
	if got, _ := st.GetEnrollment(ctx, e.ID); got.RevokedAt == nil {
		t.Error("the revoke was undone by the racing renewal")
	}
	if _, err := r.Authorize(ctx, alice, e.ID); !errors.Is(err, ErrForbidden) {
		t.Errorf("the revoked proxy is authorized again: %v", err)
	}
}

// The same on replicas sharing one store (etcd): a shipment's bookkeeping
// on replica B, and the contact and config version it records, never
// write back a record read before replica A's revoke.
func TestRevokeOnOneReplicaSurvivesWritesOnAnother(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		write func(b *Registry, e *Enrollment) error
	}{
		{"shipment", func(b *Registry, e *Enrollment) error { _, err := b.Ship(ctx, e, batch(1, 1)); return err }},
		{"config report", func(b *Registry, e *Enrollment) error { b.ReportConfig(ctx, e.ID, "c2"); return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, log, rev := &memStore{}, &memLog{}, &revSet{}
			a, b := newRegistry(st, log, rev, grants{}), newRegistry(st, log, rev, grants{})
			e := enroll(t, b)
			st.once(func() {
				if _, err := a.Revoke(ctx, e.ID, &audit.Actor{Subject: "local-admin"}, "socket"); err != nil {
					t.Errorf("revoke: %v", err)
				}
			})
			if err := tc.write(b, e); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.GetEnrollment(ctx, e.ID); got.RevokedAt == nil {
				t.Errorf("replica B's %s undid replica A's revoke", tc.name)
			}
			if _, err := a.Authorize(ctx, alice, e.ID); !errors.Is(err, ErrForbidden) {
				t.Errorf("the revoked proxy is authorized again: %v", err)
			}
		})
	}
}

// A proxy an admin revoked cannot come back on the same proxy:serve grant
// by leaving out its enrollment id; a new grant is needed. Found by a red
// team: it re-enrolled at once and was handed the provider keys again.
func TestRevokedProxyCannotReEnrollOnItsGrant(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	e := enroll(t, r)
	if _, err := r.Revoke(ctx, e.ID, &audit.Actor{Subject: "local-admin"}, "socket"); err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	again, err := r.Enroll(ctx, alice, EnrollRequest{Grant: e.Grant, PublicKey: priv.PublicKey().Bytes()})
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "new proxy:serve grant") {
		t.Fatalf("re-enrolling on the revoked proxy's grant: %+v %v", again, err)
	}
	log.mu.Lock()
	last := log.evs[len(log.evs)-1]
	log.mu.Unlock()
	if last.Type != TypeProxyEnrolled || last.Decision != "refused" || last.Grant != e.Grant {
		t.Errorf("the refusal is not in the trail: last event %s %s", last.Type, last.Decision)
	}
	// Another grant enrolls as before.
	if _, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g2", PublicKey: priv.PublicKey().Bytes()}); err != nil {
		t.Errorf("a new grant: %v", err)
	}
}

// Replicas behind a load balancer share the proxy's shipping position
// through the store: a shipment acknowledged by replica B is known to
// replica A, so a retry of it through A is skipped, not chained twice,
// and the next one is taken, not refused as a gap. Found by a red team:
// A kept its own position in memory forever.
func TestReplicasShareTheShippingPosition(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	a, b := newRegistry(st, log, rev, grants{}), newRegistry(st, log, rev, grants{})
	e := enroll(t, a)
	for _, step := range []struct {
		via      *Registry
		from, to uint64
		acked    uint64
	}{
		{a, 1, 3, 3},
		{b, 4, 6, 6},
		{a, 4, 6, 6}, // B's answer was lost: the retry lands on A
		{a, 7, 7, 7},
		{b, 8, 8, 8},
		{a, 9, 9, 9},
	} {
		ack, err := step.via.Ship(ctx, e, batch(step.from, step.to))
		if err != nil || ack.Acked != step.acked {
			t.Fatalf("ship %d..%d: %+v %v, want acked %d", step.from, step.to, ack, err, step.acked)
		}
	}
	want := "r1@1 r2@2 r3@3 r4@4 r5@5 r6@6 r7@7 r8@8 r9@9"
	if got := strings.Join(log.calls(e.ID), " "); got != want {
		t.Errorf("each call must be in the trail once, in order:\n got %s\nwant %s", got, want)
	}
	if got, _ := st.GetEnrollment(ctx, e.ID); got.Acked != 9 {
		t.Errorf("stored position %d, want 9", got.Acked)
	}
}

// Revoking a proxy cuts off every enrollment on the grants it stood on:
// the same identity enrolling again, with the same grant, just before the
// revoke does not keep a live enrollment.
func TestRevokeCutsOffEnrollmentsOnItsGrants(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	e1 := enroll(t, r) // on g1
	e2 := enroll(t, r) // on g1 too, without the id
	other, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g9", PublicKey: e1.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revoke(ctx, e1.ID, &audit.Actor{Subject: "local-admin"}, "socket"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authorize(ctx, alice, e2.ID); !errors.Is(err, ErrForbidden) {
		t.Errorf("an enrollment on the revoked proxy's grant stays live: %v", err)
	}
	if _, err := r.Authorize(ctx, alice, other.ID); err != nil {
		t.Errorf("an enrollment on another grant was cut off: %v", err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	n := 0
	for _, ev := range log.evs {
		if ev.Type == TypeProxyRevoked {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d proxy.revoked events, want one for each enrollment cut off", n)
	}
}
