package broker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/policy"
)

// beforeSink runs fn before each event it appends.
type beforeSink struct {
	audit.Sink
	fn func(e *audit.Event)
}

func (b beforeSink) Append(ctx context.Context, e *audit.Event) error {
	b.fn(e)
	return b.Sink.Append(ctx, e)
}

// A held call whose caller's deadline ends while the broker records it is
// recorded whole (its prompt.held event, its request) and ends pending at
// once: the deadline bounds the wait for a decision, not the records. It
// had failed with "could not record the held call in the audit trail:
// context deadline exceeded" (TestRTRetryWithAnotherMethodIsNotTheApprovedCall
// flaked so under load, its 50 ms deadline ending in the append), and a
// deadline ending between the event and the request left a prompt.held
// for a call no approver could find (on etcd, whose writes honour the
// context; bbolt's do not, so that case passes there either way).
func TestHeldCallIsRecordedWholeWhenTheCallerStopsWaiting(t *testing.T) {
	for _, before := range []bool{true, false} {
		t.Run(map[bool]string{true: "ends before the event", false: "ends after the event"}[before], func(t *testing.T) {
			e := newEnv(t)
			alice := e.login("alice", "ml")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			end := func(ev *audit.Event) {
				if ev.Type == audit.TypePromptHeld {
					cancel()
				}
			}
			var sink audit.Sink = hookSink{Sink: e.log, fn: end}
			if before {
				sink = beforeSink{Sink: e.log, fn: end}
			}
			s, err := broker.New(context.Background(), broker.Config{Store: e.db, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: sink, Policies: testPolicies, Rules: testRules, Now: e.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			hold := broker.Hold{Caller: alice, GrantID: liveGrantID(t, e, alice), Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
				Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions", Excerpt: "please DROP TABLE users",
				SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32)}
			r, err := s.HoldPrompt(ctx, hold)
			if err != nil || r == nil || r.State != broker.StatePending {
				t.Fatalf("hold: %v %+v", err, r)
			}
			if got, err := e.svc.Get(context.Background(), alice, r.ID); err != nil || got.Prompt == nil {
				t.Fatalf("the held call is not stored: %v %+v", err, got)
			}
			if n := len(e.eventsOf(audit.TypePromptHeld)); n != 1 {
				t.Fatalf("%d prompt.held events, want 1", n)
			}
		})
	}
}
