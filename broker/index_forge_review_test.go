package broker_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store"
)

// Review finding: store/record_auth.go and docs/audit.md say the request
// indexes (req_*) are left unauthenticated because "they only point at
// records, and every consumer reads the record, which is checked, so a
// forged entry can only hide a request", and that they "give a forger
// nothing a deletion would not". But the consumers trust the index's
// state: Service.grant / holdsScope take whatever RequestsInState(Approved,
// who) returns without checking r.State. A writer of pamctl.db without
// the master key, holding no earlier copy of anything, adds one req_owner
// key naming a *revoked* grant as approved (and deletes its req_grant key
// so the restart's revocation set misses it): the broker mints tokens for
// the revoked grant again and the proxy does not refuse them.
func TestReviewForgedOwnerIndexResurrectsRevokedGrant(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, TTL: 30 * time.Minute, Reason: "eval"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = e.svc.Review(ctx, bob, r.ID, true, "ok", nil); err != nil || r.State != broker.StateApproved {
		t.Fatalf("approve: %v %+v", err, r)
	}
	if r, err = e.svc.Revoke(ctx, alice, r.ID, false); err != nil || r.State != broker.StateRevoked {
		t.Fatalf("revoke: %v %+v", err, r)
	}
	if _, _, err := e.svc.Token(ctx, alice, ""); err == nil {
		t.Fatal("token minted right after the revocation")
	}
	e.close()

	// The forger: only index keys, no request record touched.
	db, err := bolt.Open(filepath.Join(e.dir, store.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	principal := func(issuer, subject string) []byte {
		b := binary.AppendUvarint(nil, uint64(len(issuer)))
		b = append(b, issuer...)
		b = binary.AppendUvarint(b, uint64(len(subject)))
		return append(b, subject...)
	}
	timeKey := func(t time.Time, id string) []byte {
		b := make([]byte, 12, 12+len(id))
		binary.BigEndian.PutUint64(b, uint64(t.Unix())^(1<<63))
		binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond()))
		return append(b, id...)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		owner := append(principal(r.Requester.Issuer, r.Requester.Subject), []byte(string(broker.StateApproved)+"\x00"+r.ID)...)
		if err := tx.Bucket([]byte("req_owner")).Put(owner, []byte{}); err != nil {
			return err
		}
		return tx.Bucket([]byte("req_grant")).Delete(timeKey(*r.ExpiresAt, r.ID))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.open()

	if got, err := e.svc.Get(ctx, alice, r.ID); err != nil || got.State != broker.StateRevoked {
		t.Fatalf("the record itself is authentic and revoked: %v %+v", err, got)
	}
	raw, g, err := e.svc.Token(ctx, alice, "")
	if err == nil {
		t.Errorf("a forged index entry alone got a token minted for revoked grant %s (state %s): %.20s…", g.ID, g.State, raw)
	}
	if !e.svc.IsRevoked(r.ID) {
		t.Errorf("after the restart the revocation set no longer holds revoked grant %s (its req_grant key was deleted): its tokens pass the proxy", r.ID)
	}
}
