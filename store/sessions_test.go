package store

import (
	"context"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
)

func TestSessionsPersistCompareAndSwapAndDelete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.SetRecordKey(testRecKey)
	now := time.Now().UTC().Truncate(time.Second)
	for _, id := range []string{"ses_a", "ses_b", "ses_c"} {
		r := &broker.SessionRecord{ID: id, Identity: broker.Identity{Subject: "alice", Issuer: "corp"}, ClientAddr: "10.0.0.1", UserAgent: "pamctl/test",
			CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(8 * time.Hour), State: broker.SessionActive}
		if err := db.CreateSession(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.GetSession(ctx, "ses_nope"); !errors.Is(err, broker.ErrSessionNotFound) {
		t.Fatalf("missing session: %v", err)
	}
	if _, err := db.UpdateSession(ctx, "ses_nope", func(*broker.SessionRecord) error { return nil }); !errors.Is(err, broker.ErrSessionNotFound) {
		t.Fatalf("update of a missing session: %v", err)
	}
	// A refusing fn changes nothing.
	refused := errors.New("no")
	if _, err := db.UpdateSession(ctx, "ses_a", func(r *broker.SessionRecord) error { r.State = broker.SessionRevoked; return refused }); !errors.Is(err, refused) {
		t.Fatal(err)
	}
	if r, _ := db.GetSession(ctx, "ses_a"); r.State != broker.SessionActive {
		t.Fatalf("refused update was written: %+v", r)
	}
	ended := now.Add(time.Minute)
	if _, err := db.UpdateSession(ctx, "ses_a", func(r *broker.SessionRecord) error {
		r.State, r.EndedAt = broker.SessionRevoked, &ended
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Records survive a reopen.
	db.Close()
	db = openTest(t, dir)
	r, err := db.GetSession(ctx, "ses_a")
	if err != nil || r.State != broker.SessionRevoked || r.EndedAt == nil || !r.EndedAt.Equal(ended) || r.UserAgent != "pamctl/test" {
		t.Fatalf("after reopen: %v %+v", err, r)
	}
	active, err := db.ListSessions(ctx, func(r *broker.SessionRecord) bool { return r.State == broker.SessionActive })
	if err != nil || len(active) != 2 {
		t.Fatalf("active: %v %d", err, len(active))
	}

	// A delete that matches nothing writes nothing.
	var txBefore int
	db.bolt.View(func(tx *bolt.Tx) error { txBefore = int(tx.ID()); return nil })
	if n, err := db.DeleteSessions(ctx, func(*broker.SessionRecord) bool { return false }); err != nil || n != 0 {
		t.Fatalf("delete none: %d %v", n, err)
	}
	var txAfter int
	db.bolt.View(func(tx *bolt.Tx) error { txAfter = int(tx.ID()); return nil })
	if txAfter != txBefore {
		t.Fatalf("an empty delete committed a write transaction (%d -> %d)", txBefore, txAfter)
	}
	n, err := db.DeleteSessions(ctx, func(r *broker.SessionRecord) bool { return r.State != broker.SessionActive })
	if err != nil || n != 1 {
		t.Fatalf("delete ended: %d %v", n, err)
	}
	if _, err := db.GetSession(ctx, "ses_a"); !errors.Is(err, broker.ErrSessionNotFound) {
		t.Fatalf("deleted session still there: %v", err)
	}
	if rest, _ := db.ListSessions(ctx, nil); len(rest) != 2 {
		t.Fatalf("left: %d", len(rest))
	}
}

// TestRedeemLoginExpiresAndPrunes: a redeemed ID token stays redeemed
// until its expiry, across a reopen; after it, the key is free again, and
// the next redemption drops it from the file.
func TestRedeemLoginExpiresAndPrunes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openTest(t, dir)
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	redeem := func(key string, now time.Time) bool {
		t.Helper()
		first, err := db.RedeemLogin(ctx, key, now, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return first
	}
	if !redeem("k1", t0) || redeem("k1", t0.Add(59*time.Minute)) {
		t.Fatal("k1 was not redeemed once")
	}
	db.Close()
	db = openTest(t, dir)
	if redeem("k1", t0.Add(30*time.Minute)) {
		t.Fatal("k1 was redeemed again after a reopen")
	}
	if got, err := db.RedeemedLogins(ctx, t0); err != nil || len(got) != 1 || !got["k1"].Equal(t0.Add(time.Hour)) {
		t.Fatalf("redeemed logins: %v %v", got, err)
	}
	// Past its expiry (a token the verifier refuses by then anyway).
	if !redeem("k1", t0.Add(time.Hour)) {
		t.Fatal("an expired redemption still blocks its key")
	}
	if !redeem("k2", t0.Add(3*time.Hour)) {
		t.Fatal("k2 not redeemed")
	}
	var keys []string
	if err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLogins).ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "k2" {
		t.Fatalf("logins kept after pruning: %v", keys)
	}
	if got, _ := db.RedeemedLogins(ctx, t0.Add(3*time.Hour)); len(got) != 0 {
		t.Fatalf("expired logins listed: %v", got)
	}
}
