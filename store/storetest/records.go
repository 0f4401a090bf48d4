package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

// Sessions runs the broker.SessionStore suite.
func Sessions(t *testing.T, newStore func(t *testing.T) broker.SessionStore) {
	ctx := context.Background()
	sess := func(id, who string) *broker.SessionRecord {
		return &broker.SessionRecord{ID: id, Identity: broker.Identity{Subject: who, Issuer: "corp"}, ClientAddr: "10.0.0.1",
			CreatedAt: t0, LastUsedAt: t0, ExpiresAt: t0.Add(8 * time.Hour), State: "active"}
	}
	t.Run("RoundTripAndCAS", func(t *testing.T) {
		s := newStore(t)
		if err := s.CreateSession(ctx, sess("ses_a", "alice")); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetSession(ctx, "ses_a")
		if err != nil || got.Identity.Subject != "alice" || !got.ExpiresAt.Equal(t0.Add(8*time.Hour)) || got.ClientAddr != "10.0.0.1" {
			t.Fatalf("round trip: %v %+v", err, got)
		}
		if _, err := s.GetSession(ctx, "ses_nope"); !errors.Is(err, broker.ErrSessionNotFound) {
			t.Fatalf("missing: %v", err)
		}
		if _, err := s.UpdateSession(ctx, "ses_nope", func(*broker.SessionRecord) error { return nil }); !errors.Is(err, broker.ErrSessionNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		refuse := errors.New("refused")
		if _, err := s.UpdateSession(ctx, "ses_a", func(r *broker.SessionRecord) error { r.State = "revoked"; return refuse }); !errors.Is(err, refuse) {
			t.Fatal(err)
		}
		if got, _ := s.GetSession(ctx, "ses_a"); got.State != "active" {
			t.Fatalf("refused update leaked: %s", got.State)
		}
		r, err := s.UpdateSession(ctx, "ses_a", func(r *broker.SessionRecord) error {
			r.State, r.EndedAt, r.EndReason = "logged_out", at(time.Minute), "logout"
			return nil
		})
		if err != nil || r.State != "logged_out" {
			t.Fatalf("update: %v %+v", err, r)
		}
		if got, _ := s.GetSession(ctx, "ses_a"); got.State != "logged_out" || got.EndedAt == nil || !got.EndedAt.Equal(*at(time.Minute)) {
			t.Fatalf("after update: %+v", got)
		}
	})
	t.Run("ConcurrentUpdatesAllLand", func(t *testing.T) {
		s := newStore(t)
		if err := s.CreateSession(ctx, sess("ses_c", "carol")); err != nil {
			t.Fatal(err)
		}
		// Each update adds a minute to LastUsedAt: a lost update (a write
		// over a stale read) shows as a shorter total.
		const n = 8
		concurrently(t, n, func(int) error {
			_, err := s.UpdateSession(ctx, "ses_c", func(r *broker.SessionRecord) error {
				r.LastUsedAt = r.LastUsedAt.Add(time.Minute)
				return nil
			})
			return err
		})
		if got, _ := s.GetSession(ctx, "ses_c"); !got.LastUsedAt.Equal(t0.Add(n * time.Minute)) {
			t.Fatalf("lost updates: last used %s, want %s", got.LastUsedAt, t0.Add(n*time.Minute))
		}
	})
	t.Run("ListAndDelete", func(t *testing.T) {
		s := newStore(t)
		for _, r := range []*broker.SessionRecord{sess("ses_1", "alice"), sess("ses_2", "bob"), sess("ses_3", "alice")} {
			if err := s.CreateSession(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		sessionIDs := func(rs []*broker.SessionRecord, err error) []string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			slices.Sort(out)
			return out
		}
		want(t, "all", sessionIDs(s.ListSessions(ctx, nil)), "ses_1", "ses_2", "ses_3")
		alices := func(r *broker.SessionRecord) bool { return r.Identity.Subject == "alice" }
		want(t, "alice's", sessionIDs(s.ListSessions(ctx, alices)), "ses_1", "ses_3")
		n, err := s.DeleteSessions(ctx, alices)
		if err != nil || n != 2 {
			t.Fatalf("delete: %d %v", n, err)
		}
		want(t, "after delete", sessionIDs(s.ListSessions(ctx, nil)), "ses_2")
		if n, err := s.DeleteSessions(ctx, alices); err != nil || n != 0 {
			t.Fatalf("second delete: %d %v", n, err)
		}
		if _, err := s.GetSession(ctx, "ses_1"); !errors.Is(err, broker.ErrSessionNotFound) {
			t.Fatalf("deleted session: %v", err)
		}
	})
	t.Run("RedeemLoginOnce", func(t *testing.T) {
		s := newStore(t)
		now := time.Now()
		exp := now.Add(time.Hour)
		redeem := func(key string) bool {
			t.Helper()
			first, err := s.RedeemLogin(ctx, key, now, exp)
			if err != nil {
				t.Fatal(err)
			}
			return first
		}
		if !redeem("k1") {
			t.Fatal("a new key was not redeemed")
		}
		if redeem("k1") {
			t.Fatal("a key was redeemed twice")
		}
		if !redeem("k2") {
			t.Fatal("another key was not redeemed")
		}
		// Racing redemptions of one key (two replicas, two requests):
		// exactly one wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Go(func() {
				first, err := s.RedeemLogin(ctx, "k3", now, exp)
				if err != nil {
					t.Error(err)
					return
				}
				if first {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d of 8 racing redemptions won, want 1", wins)
		}
	})
}

// KeyData is what the Keys suite needs of a store: the key records, and
// some other data to tell a new store from one that lost its keys.
type KeyData interface {
	token.BatchKeyStore
	vault.Store
}

// Keys runs the token.BatchKeyStore suite through a real keyring: records
// round-trip as the keyring sealed and authenticated them, a rotation is
// saved whole, an edited record is refused on load, and a store holding
// data but no key fails with errKeysMissing (the backend's sentinel)
// instead of letting the keyring mint a new key.
func Keys(t *testing.T, newStore func(t *testing.T) KeyData, errKeysMissing error) {
	ctx := context.Background()
	mk, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := vault.NewSealer(mk)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("KeyringRoundTripAndRotation", func(t *testing.T) {
		s := newStore(t)
		if ks, err := s.Keys(ctx); err != nil || len(ks) != 0 {
			t.Fatalf("new store: %v %v", ks, err)
		}
		kr, err := token.LoadKeyring(ctx, s, sealer, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		first := kr.ActiveKID()
		second, err := kr.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := s.Keys(ctx)
		if err != nil || len(ks) != 2 {
			t.Fatalf("after rotation: %d keys, %v", len(ks), err)
		}
		again, err := token.LoadKeyring(ctx, s, sealer, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		if again.ActiveKID() != second {
			t.Fatalf("reloaded active key %s, want %s", again.ActiveKID(), second)
		}
		if _, ok := again.PublicKey(first); !ok {
			t.Fatal("the retired key is not published after reload")
		}
		if err := kr.RaiseHighWater(ctx, second, 42, "h"); err != nil {
			t.Fatal(err)
		}
		third, err := token.LoadKeyring(ctx, s, sealer, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		if seq, _, ok := third.HighWater(); !ok || seq != 42 {
			t.Fatalf("high-water mark lost: %d %v", seq, ok)
		}
	})
	t.Run("EditedRecordRefused", func(t *testing.T) {
		s := newStore(t)
		kr, err := token.LoadKeyring(ctx, s, sealer, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := s.Keys(ctx)
		if err != nil || len(ks) != 1 || ks[0].KID != kr.ActiveKID() {
			t.Fatalf("keys: %v %v", ks, err)
		}
		k := ks[0]
		k.Created = k.Created.Add(-time.Hour) // an edit without the master key
		if err := s.SaveKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := token.LoadKeyring(ctx, s, sealer, time.Hour, nil); !errors.Is(err, token.ErrTampered) {
			t.Fatalf("edited record loaded: %v", err)
		}
	})
	t.Run("OtherDeploymentRefused", func(t *testing.T) {
		s := newStore(t)
		if _, err := token.LoadKeyring(ctx, s, sealer, time.Hour, nil); err != nil {
			t.Fatal(err)
		}
		mk2, _ := vault.GenerateMasterKey()
		other, _ := vault.NewSealer(mk2)
		if _, err := token.LoadKeyring(ctx, s, other, time.Hour, nil); err == nil {
			t.Fatal("keys sealed under another master key loaded")
		}
	})
	t.Run("MissingKeysRefused", func(t *testing.T) {
		s := newStore(t)
		if err := s.SetMasterCheck(ctx, []byte("check")); err != nil {
			t.Fatal(err)
		}
		if ks, err := s.Keys(ctx); err != nil || len(ks) != 0 {
			t.Fatalf("a store with only its master check is new: %v %v", ks, err)
		}
		if err := s.PutEntry(ctx, vault.Entry{Name: "openai", Created: t0, Sealed: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Keys(ctx); !errors.Is(err, errKeysMissing) {
			t.Fatalf("a store with data and no keys: %v, want %v", err, errKeysMissing)
		}
		if _, err := token.LoadKeyring(ctx, s, sealer, time.Hour, nil); !errors.Is(err, errKeysMissing) {
			t.Fatalf("keyring over data without keys: %v", err)
		}
	})
}

// Vault runs the vault.Store suite, master-key check included.
func Vault(t *testing.T, newStore func(t *testing.T) vault.Store) {
	ctx := context.Background()
	t.Run("Entries", func(t *testing.T) {
		s := newStore(t)
		if es, err := s.ListEntries(ctx); err != nil || len(es) != 0 {
			t.Fatalf("new store: %v %v", es, err)
		}
		for _, n := range []string{"openai", "anthropic", "openai.prod"} {
			if err := s.PutEntry(ctx, vault.Entry{Name: n, Created: t0, Fingerprint: "fp-" + n, Sealed: []byte("sealed-" + n)}); err != nil {
				t.Fatal(err)
			}
		}
		e, err := s.GetEntry(ctx, "openai")
		if err != nil || e.Name != "openai" || string(e.Sealed) != "sealed-openai" || e.Fingerprint != "fp-openai" || !e.Created.Equal(t0) {
			t.Fatalf("round trip: %v %+v", err, e)
		}
		if _, err := s.GetEntry(ctx, "nope"); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("missing: %v", err)
		}
		if err := s.PutEntry(ctx, vault.Entry{Name: "openai", Created: t0.Add(time.Hour), Sealed: []byte("rotated")}); err != nil {
			t.Fatal(err)
		}
		if e, _ := s.GetEntry(ctx, "openai"); string(e.Sealed) != "rotated" {
			t.Fatalf("replace: %+v", e)
		}
		es, err := s.ListEntries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name)
		}
		if !slices.Equal(names, []string{"anthropic", "openai", "openai.prod"}) {
			t.Fatalf("list in name order: %v", names)
		}
		if err := s.DeleteEntry(ctx, "openai"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteEntry(ctx, "openai"); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		if _, err := s.GetEntry(ctx, "openai"); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("deleted: %v", err)
		}
		if _, err := s.GetEntry(ctx, "openai.prod"); err != nil {
			t.Fatalf("a neighbour went with it: %v", err)
		}
	})
	t.Run("MasterCheckIsWrittenOnce", func(t *testing.T) {
		s := newStore(t)
		if c, err := s.MasterCheck(ctx); err != nil || c != nil {
			t.Fatalf("new store: %q %v", c, err)
		}
		if err := s.SetMasterCheck(ctx, []byte("first")); err != nil {
			t.Fatal(err)
		}
		if err := s.SetMasterCheck(ctx, []byte("second")); err != nil {
			t.Fatal(err)
		}
		if c, err := s.MasterCheck(ctx); err != nil || string(c) != "first" {
			t.Fatalf("check: %q %v, want the first value kept", c, err)
		}
	})
	t.Run("OpenChecksTheMasterKey", func(t *testing.T) {
		s := newStore(t)
		mk, _ := vault.GenerateMasterKey()
		if _, err := vault.Open(ctx, s, mk, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := vault.Open(ctx, s, mk, nil); err != nil {
			t.Fatalf("same key again: %v", err)
		}
		other, _ := vault.GenerateMasterKey()
		if _, err := vault.Open(ctx, s, other, nil); !errors.Is(err, vault.ErrWrongMasterKey) {
			t.Fatalf("another master key: %v, want ErrWrongMasterKey", err)
		}
	})
}

// Enrollments runs the link.Store suite.
func Enrollments(t *testing.T, newStore func(t *testing.T) link.Store) {
	ctx := context.Background()
	s := newStore(t)
	if es, err := s.ListEnrollments(ctx); err != nil || len(es) != 0 {
		t.Fatalf("new store: %v %v", es, err)
	}
	if _, err := s.GetEnrollment(ctx, "prx_nope"); !errors.Is(err, link.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	for i, id := range []string{"prx_b", "prx_a", "prx_c"} {
		e := &link.Enrollment{ID: id, Subject: "svc", Issuer: "corp", Grant: fmt.Sprintf("req_%d", i), Version: "v1", Address: "10.0.0.9:7000",
			PublicKey: []byte{1, 2, byte(i)}, Enrolled: t0, ExpiresAt: t0.Add(time.Hour), LastContact: t0}
		if err := s.PutEnrollment(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	e, err := s.GetEnrollment(ctx, "prx_a")
	if err != nil || e.Grant != "req_1" || e.PublicKey[2] != 1 || !e.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("round trip: %v %+v", err, e)
	}
	e.RevokedAt, e.Acked, e.AckedAt = at(time.Minute), 7, 99
	if err := s.PutEnrollment(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetEnrollment(ctx, "prx_a"); got.RevokedAt == nil || got.Acked != 7 || got.AckedAt != 99 {
		t.Fatalf("replace: %+v", got)
	}
	es, err := s.ListEnrollments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, []string{"prx_a", "prx_b", "prx_c"}) {
		t.Fatalf("list in id order: %v", got)
	}

	if _, err := s.UpdateEnrollment(ctx, "prx_nope", func(*link.Enrollment) error { return nil }); !errors.Is(err, link.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	refuse := errors.New("refused")
	if _, err := s.UpdateEnrollment(ctx, "prx_b", func(e *link.Enrollment) error { e.RevokedAt = at(time.Hour); return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("refused update: %v", err)
	}
	if got, _ := s.GetEnrollment(ctx, "prx_b"); got.RevokedAt != nil {
		t.Fatalf("a refused update was written: %+v", got)
	}
	// Each update moves Acked on by one: an update written over a stale
	// read (a renewal over a revoke, two replicas' shipments) shows as a
	// smaller count.
	const n = 8
	concurrently(t, n, func(int) error {
		_, err := s.UpdateEnrollment(ctx, "prx_c", func(e *link.Enrollment) error {
			e.Acked++
			return nil
		})
		return err
	})
	if got, _ := s.GetEnrollment(ctx, "prx_c"); got.Acked != n || got.Grant != "req_2" {
		t.Fatalf("lost updates: acked %d (want %d), %+v", got.Acked, n, got)
	}
}

// SinkCursors runs the auditsink.CursorStore suite.
func SinkCursors(t *testing.T, newStore func(t *testing.T) auditsink.CursorStore) {
	ctx := context.Background()
	s := newStore(t)
	if cs, err := s.SinkCursors(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("new store: %v %v", cs, err)
	}
	if err := s.SaveSinkCursor(ctx, "", auditsink.Cursor{}); err == nil {
		t.Fatal("a cursor without a name was saved")
	}
	if err := s.SaveSinkCursor(ctx, "siem", auditsink.Cursor{Seq: 10, HeadSeq: 8, Updated: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSinkCursor(ctx, "file", auditsink.Cursor{Seq: 3, Updated: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSinkCursor(ctx, "siem", auditsink.Cursor{Seq: 12, HeadSeq: 12, Updated: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.SinkCursors(ctx)
	if err != nil || len(cs) != 2 || cs["siem"].Seq != 12 || cs["siem"].HeadSeq != 12 || !cs["siem"].Updated.Equal(t0.Add(time.Second)) || cs["file"].Seq != 3 {
		t.Fatalf("cursors: %v %+v", err, cs)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.SaveSinkCursor(canceled, "siem", auditsink.Cursor{Seq: 99}); err == nil {
		t.Fatal("saved under a canceled context")
	}
	if cs, _ := s.SinkCursors(ctx); cs["siem"].Seq != 12 {
		t.Fatalf("a canceled save landed: %+v", cs["siem"])
	}
	// The authenticator is kept exactly, and so is every field it covers:
	// a backend that lost or rounded one would make every cursor look
	// forged at the next start.
	key := []byte("0123456789abcdef0123456789abcdef")
	sealed := auditsink.SealCursor(key, "siem", auditsink.Cursor{Seq: 13, HeadSeq: 12, Updated: t0.Add(123456789 * time.Nanosecond)})
	if err := s.SaveSinkCursor(ctx, "siem", sealed); err != nil {
		t.Fatal(err)
	}
	cs, err = s.SinkCursors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := cs["siem"]
	if got.MAC != sealed.MAC || got.MAC == "" || auditsink.SealCursor(key, "siem", got).MAC != sealed.MAC {
		t.Fatalf("authenticated cursor after a round trip: %+v, saved %+v", got, sealed)
	}
	if cs["file"].MAC != "" {
		t.Fatalf("a cursor saved without an authenticator reads with one: %+v", cs["file"])
	}
	// Deleting takes one cursor away, exactly that one (not a name it is
	// a prefix of); deleting an absent one is no error; a canceled delete
	// deletes nothing; a failed delete's error never shows the name (an
	// old name holds a URL's path token).
	if err := s.SaveSinkCursor(ctx, "siem2", auditsink.Cursor{Seq: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSinkCursor(canceled, "file"); err == nil {
		t.Fatal("deleted under a canceled context")
	}
	if err := s.DeleteSinkCursor(ctx, "siem"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSinkCursor(ctx, "siem"); err != nil {
		t.Fatalf("deleting an absent cursor: %v", err)
	}
	if err := s.DeleteSinkCursor(ctx, "nothing-ever-stored"); err != nil {
		t.Fatalf("deleting a name never stored: %v", err)
	}
	cs, err = s.SinkCursors(ctx)
	if _, ok := cs["siem"]; err != nil || ok || len(cs) != 2 || cs["siem2"].Seq != 5 || cs["file"].Seq != 3 {
		t.Fatalf("after deleting siem: %v %+v", err, cs)
	}
}
