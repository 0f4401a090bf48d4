package storetest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/policy"
)

// eventSink records the events a Service emits.
type eventSink struct {
	mu     sync.Mutex
	events []*audit.Event
}

func (s *eventSink) Append(_ context.Context, e *audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
	return nil
}

func (s *eventSink) count(typ audit.Type) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// forgedHeldGrant: a call held on a grant whose record the store has but
// can never read (it fails its authenticator, or is not a record at all)
// is ended by the broker's sweep, once, with a reason that names the
// grant, and the sweep then succeeds (review: the sweep failed on every
// tick for good, and serve's expiry_sweep check stayed degraded). A grant
// written by a newer build is not unreadable for good (a rolling upgrade
// on a shared store): the call stays held and the sweep keeps failing.
func forgedHeldGrant(t *testing.T, b ForgedBackend) {
	ctx := context.Background()
	alice := broker.Identity{Subject: "alice", Issuer: "corp", Groups: []string{"ml"}}
	now := t0.Add(time.Minute)
	exp := t0.Add(time.Hour)
	grant := &broker.Request{ID: "req_grant", Kind: broker.KindAccess, Requester: alice, Scopes: []string{"model:gpt-4o"}, TTL: time.Hour,
		State: broker.StateRevoked, CreatedAt: t0, PendingUntil: t0, ApprovedAt: &t0, ExpiresAt: &exp, EndedAt: &t0}
	held := &broker.Request{ID: "req_held", Kind: broker.KindPrompt, Requester: alice, TTL: 10 * time.Minute, State: broker.StatePending,
		Approval:  policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
		CreatedAt: t0, PendingUntil: t0.Add(10 * time.Minute),
		Prompt: &broker.PromptHold{Rule: "destructive-sql", Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions",
			Excerpt: "DROP TABLE users", SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("cd", 32), GrantID: grant.ID}}
	unsealed, err := b.Encode(grant)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		// write puts the grant's record as a writer of the storage would.
		write func(t *testing.T, s RecordStore)
		ends  bool
	}{
		{"WithoutAuthenticator", func(t *testing.T, s RecordStore) { b.WriteRaw(t, s, "requests/req_grant", unsealed) }, true},
		{"WrongAuthenticator", func(t *testing.T, s RecordStore) {
			if err := s.CreateRequest(ctx, grant); err != nil {
				t.Fatal(err)
			}
			var env map[string]json.RawMessage
			if err := json.Unmarshal(b.Raw(t, s, "requests/req_grant"), &env); err != nil {
				t.Fatal(err)
			}
			env["d"] = json.RawMessage(strings.Replace(string(env["d"]), `"revoked"`, `"approved"`, 1))
			raw, _ := json.Marshal(env)
			b.WriteRaw(t, s, "requests/req_grant", raw)
		}, true},
		{"NotARecord", func(t *testing.T, s RecordStore) { b.WriteRaw(t, s, "requests/req_grant", []byte("\x00not json")) }, true},
		{"UndecodableContent", func(t *testing.T, s RecordStore) {
			b.WriteRaw(t, s, "requests/req_grant", []byte(`{"v":1,"d":"a string, not a request"}`))
		}, true},
		// Sealed (so it passes its authenticator), but not a request's
		// record for any build: its content is a string.
		{"SealedNotAnObject", func(t *testing.T, s RecordStore) {
			b.WriteRaw(t, s, "requests/req_grant", []byte(`{"v":1,"d":"a string, not a request"}`))
			if _, err := b.Seal(s); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"NewerBuild", func(t *testing.T, s RecordStore) { b.WriteRaw(t, s, "requests/req_grant", []byte(`{"v":99,"d":{}}`)) }, false},
		// A build that changed a field's JSON type without a new record
		// version (ttl "1h" for nanoseconds), sealed with the master key:
		// a version skew in a rolling upgrade, not a record no build can
		// read. The call stays held and the sweep fails, loudly.
		{"FieldOfAnotherType", func(t *testing.T, s RecordStore) {
			var env map[string]json.RawMessage
			if err := json.Unmarshal(unsealed, &env); err != nil {
				t.Fatal(err)
			}
			var d map[string]json.RawMessage
			if err := json.Unmarshal(env["d"], &d); err != nil || d["ttl"] == nil {
				t.Fatalf("no ttl in %s (%v)", env["d"], err)
			}
			d["ttl"] = json.RawMessage(`"1h"`)
			env["d"], _ = json.Marshal(d)
			raw, _ := json.Marshal(env)
			b.WriteRaw(t, s, "requests/req_grant", raw)
			if _, err := b.Seal(s); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"NestedFieldOfAnotherType", func(t *testing.T, s RecordStore) {
			var env map[string]json.RawMessage
			if err := json.Unmarshal(unsealed, &env); err != nil {
				t.Fatal(err)
			}
			env["d"] = json.RawMessage(strings.Replace(string(env["d"]), `"groups":["ml"]`, `"groups":"ml"`, 1))
			if !strings.Contains(string(env["d"]), `"groups":"ml"`) {
				t.Fatalf("no groups in %s", env["d"])
			}
			raw, _ := json.Marshal(env)
			b.WriteRaw(t, s, "requests/req_grant", raw)
			if _, err := b.Seal(s); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := b.New(t)
			events := &eventSink{}
			svc, err := broker.New(ctx, broker.Config{Store: s, Audit: events, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CreateRequest(ctx, held); err != nil {
				t.Fatal(err)
			}
			c.write(t, s)
			err = svc.Sweep(ctx)
			r, gerr := s.GetRequest(ctx, held.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if !c.ends {
				if err == nil || r.State != broker.StatePending || events.count(audit.TypePromptRefused) != 0 {
					t.Fatalf("a grant another build wrote ended the call held on it: sweep %v, call %s %q", err, r.State, r.EndReason)
				}
				if !strings.Contains(err.Error(), "pamctl") {
					t.Fatalf("the sweep's error does not say what to do: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the sweep failed on a call held on an unreadable grant: %v", err)
			}
			if r.State != broker.StateExpired || !strings.Contains(r.EndReason, "req_grant") || !strings.Contains(r.EndReason, "cannot be read") {
				t.Fatalf("the call held on an unreadable grant: %s %q", r.State, r.EndReason)
			}
			if strings.Contains(r.EndReason, "master key") || strings.Contains(r.EndReason, "not json") {
				t.Fatalf("the reason the caller reads shows the store's error: %q", r.EndReason)
			}
			// The next looks (a failure is looked at again at once; else
			// every 30 s) neither fail nor record it again.
			for i := 0; i < 2; i++ {
				now = now.Add(31 * time.Second)
				if err := svc.Sweep(ctx); err != nil {
					t.Fatalf("sweep %d after: %v", i+2, err)
				}
			}
			if n := events.count(audit.TypePromptRefused); n != 1 {
				t.Fatalf("%d prompt.refused events, want 1", n)
			}
		})
	}
}
