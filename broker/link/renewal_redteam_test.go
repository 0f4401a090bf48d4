package link

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// Red team: an admin revokes proxy E1 (on grant g1). The docs promise that
// the grants it stood on "admit no new enrollment" and that revoking is
// final: "start the proxy with a fresh data dir and a new proxy:serve grant
// to enroll again". A holder of the same workload identity that knows the
// id of any other enrollment of that identity (a sibling proxy of the same
// service account, or an old, expired enrollment of an earlier data dir:
// ids are in the trail as details.proxy and proxy.enrolled's target)
// renews THAT enrollment onto the cut-off grant g1 with a public key of its
// own. The renewal path never asks revokedOn(in.Grant), so it is admitted,
// and the attacker is handed every provider key again on g1, without the
// new (approval-gated) grant the docs say is needed.
func TestRedteamRenewalMovesAnEnrollmentOntoACutOffGrant(t *testing.T) {
	ctx := context.Background()
	st, log, rev := &memStore{}, &memLog{}, &revSet{}
	r := newRegistry(st, log, rev, grants{})

	// An old enrollment of the same identity on grant g0 (an earlier data
	// dir); it expired and was never revoked.
	oldKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	old, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g0", PublicKey: oldKey.PublicKey().Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateEnrollment(ctx, old.ID, func(e *Enrollment) error { e.ExpiresAt = time.Now().Add(-time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}

	// The current proxy on g1 is compromised; the admin cuts it off.
	e1 := enroll(t, r) // on g1
	if _, err := r.Revoke(ctx, e1.ID, &audit.Actor{Subject: "local-admin"}, "socket"); err != nil {
		t.Fatal(err)
	}
	// As documented: a new enrollment on g1 is refused.
	atk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: atk.PublicKey().Bytes()}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("new enrollment on the cut-off grant: %v (want forbidden)", err)
	}

	// The attack: renew the old enrollment onto g1 with the attacker's key.
	back, err := r.Enroll(ctx, alice, EnrollRequest{Grant: "g1", PublicKey: atk.PublicKey().Bytes(), ID: old.ID})
	if err != nil {
		return // refused: fixed
	}
	if _, aerr := r.Authorize(ctx, alice, back.ID); aerr != nil {
		t.Logf("authorize after renewal: %v", aerr)
	}
	sk, kerr := r.SealedKeys(ctx, back)
	if kerr == nil {
		if plain, oerr := Open(atk, sk.Ephemeral, sk.Nonce, sk.Sealed); oerr == nil {
			t.Errorf("the revoked proxy's identity is back on the cut-off grant g1 as enrollment %s and opened the provider keys %s", back.ID, plain)
			return
		}
	}
	t.Errorf("a renewal moved enrollment %s onto cut-off grant g1 (docs: those grants admit no new enrollment)", back.ID)
}
