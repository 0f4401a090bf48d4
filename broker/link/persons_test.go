package link

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// proxy:serve hands out every vaulted provider key (sealed to the key the
// caller sends), so only a workload identity (kind service) may enroll a
// proxy or act for one. A person (kind user) holding an approved
// proxy:serve grant is refused at enrollment, recorded; an enrollment a
// person made before this check (stored as it was) is refused at every
// route (Authorize: keys, stream, config, holds, shipping). A caller whose
// kind is unknown is refused too: fail closed.
func TestEnrollAndAuthorizeRefusePersons(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pub := priv.PublicKey().Bytes()
	for _, who := range []Caller{
		{Subject: "alice", Issuer: "corp", Kind: "user"},
		{Subject: "alice", Issuer: "corp"},
		{Subject: "alice", Issuer: "corp", Kind: "Service"},
	} {
		_, err := r.Enroll(ctx, who, EnrollRequest{Grant: "g1", PublicKey: pub})
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "workload") || !strings.Contains(err.Error(), "provider key") {
			t.Fatalf("kind %q enrolled: %v, want refused saying only a workload identity may, as it hands out the provider keys", who.Kind, err)
		}
	}
	refused := 0
	for _, ev := range log.evs {
		if ev.Type == audit.TypeProxyEnrolled && ev.Decision == "refused" && ev.Actor != nil && ev.Actor.Subject == "alice" {
			refused++
		}
	}
	if refused != 3 {
		t.Fatalf("%d refusals recorded, want 3", refused)
	}
	if es, _ := st.ListEnrollments(ctx); len(es) != 0 {
		t.Fatalf("a person's enrollment was stored: %+v", es[0])
	}

	// An enrollment a person made before the upgrade.
	old := &Enrollment{ID: "oldperson", Subject: "alice", Issuer: "corp", Grant: "g1", PublicKey: pub, Enrolled: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := st.PutEnrollment(ctx, old); err != nil {
		t.Fatal(err)
	}
	alicePerson := Caller{Subject: "alice", Issuer: "corp", Kind: "user"}
	if _, err := r.Authorize(ctx, alicePerson, old.ID); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "workload") {
		t.Fatalf("a person's old enrollment authorized: %v", err)
	}
	// Nor renewed.
	if _, err := r.Enroll(ctx, alicePerson, EnrollRequest{Grant: "g1", PublicKey: pub, ID: old.ID}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a person's old enrollment renewed: %v", err)
	}

	// A workload is admitted, and acts for its enrollment.
	e := enroll(t, r)
	if _, err := r.Authorize(ctx, alice, e.ID); err != nil {
		t.Fatalf("workload refused: %v", err)
	}
	if alice.Kind != "service" {
		t.Fatalf("test identity alice must be a workload, is %q", alice.Kind)
	}
}

// Enrollments persons made before enrolling took workloads only are found
// at start (the broker warns about each): live ones from a configured
// issuer that is not a workload issuer; revoked or ended ones, workloads'
// and those of issuers no longer configured are left out.
func TestPersonEnrollments(t *testing.T) {
	ctx := context.Background()
	st := &memStore{}
	r := newRegistry(st, &memLog{}, &revSet{}, grants{})
	now := time.Now()
	past := now.Add(-time.Minute)
	for _, e := range []*Enrollment{
		{ID: "person-live", Subject: "alice", Issuer: "corp", ExpiresAt: now.Add(time.Hour)},
		{ID: "person-revoked", Subject: "alice", Issuer: "corp", ExpiresAt: now.Add(time.Hour), RevokedAt: &past},
		{ID: "person-ended", Subject: "alice", Issuer: "corp", ExpiresAt: past},
		{ID: "workload", Subject: "proxy-a", Issuer: "k8s", ExpiresAt: now.Add(time.Hour)},
		{ID: "gone-issuer", Subject: "bob", Issuer: "old", ExpiresAt: now.Add(time.Hour)},
	} {
		if err := st.PutEnrollment(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	issuers := map[string]bool{"corp": false, "k8s": true}
	got, err := r.PersonEnrollments(ctx, func(name string) (workload, known bool) { w, ok := issuers[name]; return w, ok })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "person-live" {
		t.Fatalf("person enrollments: %+v", got)
	}
}
