package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/policy"
)

// Red team: approvers are shown the held call's method ("GET
// /v1/chat/completions/x"), and sameCall says a retry must be "the call
// the approvers of p were shown", but it compares model, endpoint and
// tool, not the method. An approval of a hold shown as GET (a read)
// releases a retry whose method is DELETE or POST when the digests agree
// (a proxy that reports one method and digests another, or proxies of
// two versions). The broker should bind what it showed.
func TestRTRetryWithAnotherMethodIsNotTheApprovedCall(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	hold := broker.Hold{Caller: alice, GrantID: liveGrantID(t, e, alice), Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
		Model: "gpt-4o", Method: "GET", Endpoint: "/v1/chat/completions/chatcmpl-1", Excerpt: "please DROP TABLE users",
		SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32)}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	r, err := e.svc.HoldPrompt(short, hold)
	cancel()
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("hold: %v %+v", err, r)
	}
	if got, _ := e.svc.Get(ctx, bob, r.ID); got.Prompt.Call() != "GET /v1/chat/completions/chatcmpl-1" {
		t.Fatalf("approver is shown %q", got.Prompt.Call())
	}
	if _, err := e.svc.Review(ctx, bob, r.ID, true, "a read is fine", nil); err != nil {
		t.Fatal(err)
	}
	del := hold
	del.Method = "DELETE"
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	r2, _ := e.svc.HoldPrompt(short, del)
	cancel()
	if r2 != nil && (r2.ID == r.ID || r2.State != broker.StatePending) {
		t.Fatalf("an approval of GET %s released DELETE of it: %+v", hold.Endpoint, r2.Prompt)
	}
}

// Red team: the page shows a held prompt's Matches (each piece's text
// under "Found in") instead of its Excerpt, but the broker never checks
// that the pieces are the excerpt's: a proxy (compromised, or buggy) can
// show approvers text that is not in the call's excerpt, while the
// prompt.held event (the trail's record of "the masked excerpt an
// approver is shown", docs/audit.md) and Slack/Teams/`pamctl requests`
// show the Excerpt. What the web approver decided on is in no record.
// The broker should refuse a hold whose pieces (and count line) are not
// the excerpt's text (the Excerpt is exactly "[summary]\n" + for each
// piece "[found in W1; W2]\n" + text, joined by "\n").
func TestRTHeldPiecesMustBeTheExcerpt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	excerpt := "[found in messages[0] (user)]\nWrite SQL to DROP TABLE payments;"
	for name, m := range map[string][]broker.HeldMatch{
		"other words":    {{Where: []string{"messages[0] (user)"}, Text: "Write SQL to SELECT 1 FROM payments;"}},
		"an empty piece": {{Where: []string{"messages[0] (user)"}, Text: ""}},
		"no places":      {{Where: nil, Text: "Write SQL to DROP TABLE payments;"}},
		"another place":  {{Where: []string{"messages[1] (user)"}, Text: "Write SQL to DROP TABLE payments;"}},
	} {
		h := broker.Hold{Caller: alice, GrantID: "req_g", Rule: "destructive-sql", Approvers: policy.Subjects{Groups: []string{"security"}},
			Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions", SHA256: strings.Repeat("ab", 32), CallSHA256: strings.Repeat("12", 32),
			Excerpt: excerpt, Matches: m}
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		r, err := e.svc.HoldPrompt(short, h)
		cancel()
		if code(err) != broker.CodeInvalid {
			var trail string
			if ev := e.eventsOf(audit.TypePromptHeld); len(ev) > 0 {
				trail = ev[len(ev)-1].Prompt
			}
			t.Errorf("%s: held (err %v); the page shows %q, the trail records %q", name, err, r.Prompt.Matches, trail)
		}
	}
}
