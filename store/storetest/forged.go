package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/link"
)

// RecordStore is what the Forged suite reads and writes through.
type RecordStore interface {
	broker.Store
	link.Store
}

// ForgedBackend describes a backend for the Forged suite. Its stores
// authenticate records (store.RecordKey); the suite plays a writer of the
// storage (the bbolt file, the etcd prefix) who lacks the master key.
type ForgedBackend struct {
	// New opens a fresh, empty store with its record key set.
	New func(t *testing.T) RecordStore
	// Raw reads the bytes stored at a record's logical name ("requests/"
	// + id, "sessions/" + id, "proxies/" + id), nil when absent.
	Raw func(t *testing.T, s RecordStore, name string) []byte
	// WriteRaw writes raw at a record's logical name as a writer of the
	// storage would: a bbolt bucket Put, an etcd Put.
	WriteRaw func(t *testing.T, s RecordStore, name string, raw []byte)
	// Seal is the upgrade: SealRecords with the store's record key.
	Seal func(s RecordStore) (int, error)
	// Encode is store.EncodeRecord: a record as builds before
	// authenticators wrote it (and as a forger can).
	Encode func(v any) ([]byte, error)
	// ErrForged is store.ErrRecordForged.
	ErrForged error
	// WriteIndex writes, as a writer of the storage would, the entries
	// of one request index ("state", "owner", "party", "due", "grant",
	// "settled") that r would have (store.RequestIndexEntries); DropIndex
	// deletes them.
	WriteIndex, DropIndex func(t *testing.T, s RecordStore, index string, r *broker.Request)
	// Observe gives s its record key with fn as its forged-record
	// observer (store.RecordKey.OnForged).
	Observe func(s RecordStore, fn func(kind string, err error))
}

// Forged runs the forged-record suite: every kind of authenticated record
// refuses what a writer without the master key can put there.
func Forged(t *testing.T, b ForgedBackend) {
	ctx := context.Background()
	alice := broker.Identity{Subject: "alice", Issuer: "corp", Groups: []string{"ml"}}
	exp := t0.Add(time.Hour)
	grant := func(id string) *broker.Request {
		return &broker.Request{ID: id, Kind: broker.KindAccess, Requester: alice, Scopes: []string{"proxy:serve"}, TTL: time.Hour,
			State: broker.StateApproved, CreatedAt: t0, PendingUntil: t0, ApprovedAt: &t0, ExpiresAt: &exp}
	}
	session := func(id string) *broker.SessionRecord {
		return &broker.SessionRecord{ID: id, Identity: alice, CreatedAt: t0, LastUsedAt: t0, ExpiresAt: exp, State: broker.SessionActive}
	}
	enrollment := func(id string) *link.Enrollment {
		return &link.Enrollment{ID: id, Grant: "req_a", Subject: alice.Subject, Issuer: alice.Issuer}
	}
	encode := func(t *testing.T, v any) []byte {
		t.Helper()
		raw, err := b.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	forged := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, b.ErrForged) {
			t.Fatalf("%s: got %v, want the record refused as forged", what, err)
		}
	}
	// refusedEverywhere checks every read path of the record named name.
	refusedEverywhere := func(t *testing.T, s RecordStore, name string) {
		t.Helper()
		kind, id, _ := bytes.Cut([]byte(name), []byte("/"))
		switch string(kind) {
		case "requests":
			_, err := s.GetRequest(ctx, string(id))
			forged(t, "GetRequest "+name, err)
			_, err = s.UpdateRequest(ctx, string(id), func(r *broker.Request) error { return nil })
			forged(t, "UpdateRequest "+name, err)
		case "sessions":
			_, err := s.GetSession(ctx, string(id))
			forged(t, "GetSession "+name, err)
			_, err = s.UpdateSession(ctx, string(id), func(*broker.SessionRecord) error { return nil })
			forged(t, "UpdateSession "+name, err)
			_, err = s.ListSessions(ctx, nil)
			forged(t, "ListSessions with "+name, err)
			_, err = s.DeleteSessions(ctx, func(*broker.SessionRecord) bool { return false })
			forged(t, "DeleteSessions with "+name, err)
		case "proxies":
			_, err := s.GetEnrollment(ctx, string(id))
			forged(t, "GetEnrollment "+name, err)
			_, err = s.UpdateEnrollment(ctx, string(id), func(*link.Enrollment) error { return nil })
			forged(t, "UpdateEnrollment "+name, err)
			_, err = s.ListEnrollments(ctx)
			forged(t, "ListEnrollments with "+name, err)
		}
	}

	t.Run("Unsealed", func(t *testing.T) {
		s := b.New(t)
		b.WriteRaw(t, s, "requests/req_forged", encode(t, grant("req_forged")))
		b.WriteRaw(t, s, "sessions/ses_forged", encode(t, session("ses_forged")))
		b.WriteRaw(t, s, "proxies/prx_forged", encode(t, enrollment("prx_forged")))
		for _, n := range []string{"requests/req_forged", "sessions/ses_forged", "proxies/prx_forged"} {
			refusedEverywhere(t, s, n)
		}
	})
	// Every refusal is told to the key's observer, by kind: what an
	// operator's metric counts and alerts on.
	t.Run("Observed", func(t *testing.T) {
		s := b.New(t)
		if err := s.CreateRequest(ctx, grant("req_ok")); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		b.Observe(s, func(kind string, err error) {
			if !errors.Is(err, b.ErrForged) {
				t.Errorf("observed %s: %v, want %v", kind, err, b.ErrForged)
			}
			seen[kind]++
		})
		if _, err := s.GetRequest(ctx, "req_ok"); err != nil || len(seen) != 0 {
			t.Fatalf("a genuine record: %v, observed %v", err, seen)
		}
		b.WriteRaw(t, s, "requests/req_forged", encode(t, grant("req_forged")))
		b.WriteRaw(t, s, "sessions/ses_forged", encode(t, session("ses_forged")))
		b.WriteRaw(t, s, "proxies/prx_forged", encode(t, enrollment("prx_forged")))
		_, err := s.GetRequest(ctx, "req_forged")
		forged(t, "GetRequest", err)
		_, err = s.GetSession(ctx, "ses_forged")
		forged(t, "GetSession", err)
		_, err = s.GetEnrollment(ctx, "prx_forged")
		forged(t, "GetEnrollment", err)
		_, err = s.GetRequest(ctx, "req_forged")
		forged(t, "GetRequest again", err)
		if want := map[string]int{"requests": 2, "sessions": 1, "proxies": 1}; len(seen) != len(want) ||
			seen["requests"] != 2 || seen["sessions"] != 1 || seen["proxies"] != 1 {
			t.Fatalf("observed %v, want %v", seen, want)
		}
	})
	t.Run("WrongAuthenticator", func(t *testing.T) {
		s := b.New(t)
		if err := s.CreateRequest(ctx, grant("req_a")); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateSession(ctx, session("ses_a")); err != nil {
			t.Fatal(err)
		}
		// The authenticator kept, the content changed: another group, a
		// pending request made approved.
		raw := b.Raw(t, s, "sessions/ses_a")
		b.WriteRaw(t, s, "sessions/ses_a", bytes.Replace(raw, []byte(`"ml"`), []byte(`"security"`), 1))
		refusedEverywhere(t, s, "sessions/ses_a")
		var env map[string]json.RawMessage
		if err := json.Unmarshal(b.Raw(t, s, "requests/req_a"), &env); err != nil || len(env["m"]) == 0 {
			t.Fatalf("a request written by the store carries no authenticator: %v %s", err, b.Raw(t, s, "requests/req_a"))
		}
		env["m"] = json.RawMessage(`"AAAAAAAAAAAAAAAAAAAAAA"`)
		bad, _ := json.Marshal(env)
		b.WriteRaw(t, s, "requests/req_a", bad)
		refusedEverywhere(t, s, "requests/req_a")
		_, err := s.RequestsInState(ctx, broker.StateApproved, nil) // through the index
		forged(t, "RequestsInState naming requests/req_a", err)
		_, err = s.GrantsExpiringAfter(ctx, t0)
		forged(t, "GrantsExpiringAfter naming requests/req_a", err)
	})
	t.Run("MovedToAnotherID", func(t *testing.T) {
		s := b.New(t)
		if err := s.CreateRequest(ctx, grant("req_a")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutEnrollment(ctx, enrollment("prx_a")); err != nil {
			t.Fatal(err)
		}
		b.WriteRaw(t, s, "requests/req_b", b.Raw(t, s, "requests/req_a"))
		refusedEverywhere(t, s, "requests/req_b")
		b.WriteRaw(t, s, "proxies/prx_b", b.Raw(t, s, "proxies/prx_a"))
		refusedEverywhere(t, s, "proxies/prx_b")
		if _, err := s.GetRequest(ctx, "req_a"); err != nil {
			t.Fatalf("the original: %v", err)
		}
	})
	// The indexes carry no authenticator: an entry added for a record
	// that does not have it is refused, not taken for what the record
	// says, and a deleted one hides no revoked grant from the set the
	// broker refuses tokens by.
	t.Run("ForgedIndexEntries", func(t *testing.T) {
		s := b.New(t)
		g := grant("req_rev")
		if err := s.CreateRequest(ctx, g); err != nil {
			t.Fatal(err)
		}
		ended := t0.Add(time.Minute)
		if _, err := s.UpdateRequest(ctx, g.ID, func(r *broker.Request) error {
			r.State, r.EndedAt, r.EndedBy = broker.StateRevoked, &ended, &alice
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		revoked, err := s.GetRequest(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		asApproved := grant(g.ID) // the entries it had while approved
		for _, index := range []string{"owner", "state"} {
			b.WriteIndex(t, s, index, asApproved)
			by := &alice
			if index == "state" {
				by = nil
			}
			rs, err := s.RequestsInState(ctx, broker.StateApproved, by)
			if !errors.Is(err, b.ErrForged) {
				t.Errorf("a forged %s index entry listing revoked %s as approved: %d requests, err %v; want %v", index, g.ID, len(rs), err, b.ErrForged)
			}
			b.DropIndex(t, s, index, asApproved)
		}
		b.WriteIndex(t, s, "party", &broker.Request{ID: g.ID, Requester: broker.Identity{Subject: "mallory", Issuer: "corp"}})
		if _, err := s.RequestsOf(ctx, broker.Identity{Subject: "mallory", Issuer: "corp"}); !errors.Is(err, b.ErrForged) {
			t.Errorf("a forged party entry showed %s to another person: err %v", g.ID, err)
		}
		b.DropIndex(t, s, "grant", revoked)
		rs, err := s.GrantsExpiringAfter(ctx, t0)
		if err != nil || len(rs) != 1 || rs[0].ID != g.ID || rs[0].State != broker.StateRevoked {
			t.Errorf("with its grant index entry deleted, GrantsExpiringAfter = %v (%v); want revoked %s still there", rs, err, g.ID)
		}
	})
	t.Run("MovedToAnotherKind", func(t *testing.T) {
		s := b.New(t)
		if err := s.CreateSession(ctx, session("x")); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateRequest(ctx, grant("y")); err != nil {
			t.Fatal(err)
		}
		b.WriteRaw(t, s, "proxies/x", b.Raw(t, s, "sessions/x"))
		refusedEverywhere(t, s, "proxies/x")
		b.WriteRaw(t, s, "sessions/y", b.Raw(t, s, "requests/y"))
		refusedEverywhere(t, s, "sessions/y")
	})
	t.Run("LegacyRecordsSealedOnce", func(t *testing.T) {
		s := b.New(t)
		if err := s.CreateRequest(ctx, grant("req_new")); err != nil { // already sealed
			t.Fatal(err)
		}
		b.WriteRaw(t, s, "requests/req_old", encode(t, grant("req_old")))
		b.WriteRaw(t, s, "sessions/ses_old", encode(t, session("ses_old")))
		b.WriteRaw(t, s, "proxies/prx_old", encode(t, enrollment("prx_old")))
		if n, err := b.Seal(s); err != nil || n != 3 {
			t.Fatalf("the upgrade sealed %d records (%v), want the 3 legacy ones", n, err)
		}
		if r, err := s.GetRequest(ctx, "req_old"); err != nil || r.State != broker.StateApproved {
			t.Fatalf("legacy request after the upgrade: %+v %v", r, err)
		}
		if ss, err := s.GetSession(ctx, "ses_old"); err != nil || ss.Identity.Subject != "alice" {
			t.Fatalf("legacy session after the upgrade: %+v %v", ss, err)
		}
		if es, err := s.ListEnrollments(ctx); err != nil || len(es) != 1 {
			t.Fatalf("legacy enrollment after the upgrade: %v %v", es, err)
		}
		before := b.Raw(t, s, "requests/req_new")
		if n, err := b.Seal(s); err != nil || n != 0 {
			t.Fatalf("a second upgrade sealed %d records again (%v)", n, err)
		}
		if !bytes.Equal(before, b.Raw(t, s, "requests/req_new")) {
			t.Fatal("the upgrade rewrote a sealed record")
		}
		// A record with a wrong authenticator is not "legacy": the
		// upgrade refuses it rather than seal it.
		raw := b.Raw(t, s, "sessions/ses_old")
		b.WriteRaw(t, s, "sessions/ses_bad", raw)
		_, err := b.Seal(s)
		forged(t, "the upgrade of a store holding a record with a wrong authenticator", err)
	})
	// A held call recorded by a build older than PromptHold.TokenID (the
	// record as that build wrote it, byte for byte, then sealed) loads,
	// with no token id, and its end can be recorded.
	t.Run("HeldCallWithoutTokenID", func(t *testing.T) {
		s := b.New(t)
		old := json.RawMessage(`{"id":"req_held_old","kind":"prompt","requester":{"subject":"alice","groups":["ml"],"issuer":"corp"},` +
			`"scopes":null,"ttl":600000000000,"state":"pending","approval":{"required":true,"approvers":{"groups":["security"]},"count":1},` +
			`"limits":{},"created_at":"2026-01-01T12:00:00Z","pending_until":"2026-01-01T12:10:00Z",` +
			`"prompt":{"rule":"destructive-sql","model":"gpt-4o","method":"POST","endpoint":"/v1/chat/completions","excerpt":"DROP TABLE users",` +
			`"prompt_sha256":"ab","call_sha256":"cd","grant":"req_grant"}}`)
		b.WriteRaw(t, s, "requests/req_held_old", encode(t, old))
		if n, err := b.Seal(s); err != nil || n != 1 {
			t.Fatalf("the upgrade sealed %d records (%v), want the held call", n, err)
		}
		r, err := s.GetRequest(ctx, "req_held_old")
		if err != nil || r.Kind != broker.KindPrompt || r.Prompt == nil || r.Prompt.GrantID != "req_grant" || r.Prompt.Model != "gpt-4o" ||
			r.Prompt.SHA256 != "ab" || r.Prompt.TokenID != "" || r.State != broker.StatePending {
			t.Fatalf("the older build's held call: %v %+v %+v", err, r, r.Prompt)
		}
		end := time.Date(2026, 1, 1, 12, 1, 0, 0, time.UTC)
		if r, err = s.UpdateRequest(ctx, "req_held_old", func(r *broker.Request) error {
			r.State, r.EndedAt, r.EndReason = broker.StateExpired, &end, "grant req_grant was revoked or ended early"
			return nil
		}); err != nil || r.State != broker.StateExpired || r.Prompt.GrantID != "req_grant" {
			t.Fatalf("ending the older build's held call: %v %+v", err, r)
		}
	})
	t.Run("HeldCallOnAnUnreadableGrant", func(t *testing.T) { forgedHeldGrant(t, b) })
	t.Run("StrippedAfterTheUpgrade", func(t *testing.T) {
		s := b.New(t)
		if err := s.CreateRequest(ctx, grant("req_a")); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateSession(ctx, session("ses_a")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutEnrollment(ctx, enrollment("prx_a")); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"requests/req_a", "sessions/ses_a", "proxies/prx_a"} {
			var env map[string]json.RawMessage
			if err := json.Unmarshal(b.Raw(t, s, n), &env); err != nil {
				t.Fatal(err)
			}
			delete(env, "m")
			raw, _ := json.Marshal(env)
			b.WriteRaw(t, s, n, raw)
			refusedEverywhere(t, s, n)
		}
	})
}
