package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/notify"
	"github.com/pamctl/pamctl/broker/policy"
)

type hookRec struct {
	mu sync.Mutex
	es []notify.Event
}

func (h *hookRec) Send(_ context.Context, e notify.Event) error {
	h.mu.Lock()
	h.es = append(h.es, e)
	h.mu.Unlock()
	return nil
}

func TestWebhookNotifierEvents(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	approved := now.Add(time.Minute)
	alice := broker.Identity{Subject: "alice", Display: "Alice", Issuer: "corp"}
	bob := broker.Identity{Subject: "bob", Display: "Bob", Issuer: "corp"}
	r := &broker.Request{ID: "req_0123456789abcdef0123", Kind: broker.KindAccess, Requester: alice, Scopes: []string{"model:gpt-4o"},
		TTL: 30 * time.Minute, Reason: "eval", State: broker.StatePending, CreatedAt: now,
		Approval: policy.Terms{Required: true, Count: 2}}
	h1, h2 := &hookRec{}, &hookRec{}
	n := broker.WebhookNotifier{Hooks: []broker.Webhook{h1, h2}, PublicURL: "https://pam.example.com/"}
	n.Notify(context.Background(), r, "request.created")
	if len(h1.es) != 1 || len(h2.es) != 1 {
		t.Fatalf("every hook gets the event: %d %d", len(h1.es), len(h2.es))
	}
	e := h1.es[0]
	if e.Type != notify.TypeRequestPending || e.URL != "https://pam.example.com/ui/requests/req_0123456789abcdef0123" || e.Display != "Alice" ||
		e.TTL != "30m0s" || e.Approvals != "0/2" || !e.CreatedAt.Equal(now) || e.Kind != "access" || e.Reason != "eval" {
		t.Fatalf("pending event: %+v", e)
	}
	// A decision carries the reviewer, the review's reason and time.
	r.State, r.ApprovedAt = broker.StateApproved, &approved
	r.Reviews = []broker.Review{{Reviewer: bob, Approve: true, Reason: "ok", At: approved}}
	e, ok := n.Event(r, "request.approved")
	if !ok || e.Type != notify.TypeRequestApproved || e.Reviewer != "bob" || e.ReviewerDisplay != "Bob" || e.Reason != "ok" || !e.Time.Equal(approved) || e.ApprovedAt == nil {
		t.Fatalf("approved event: %+v", e)
	}
	// Without ui.public_url there is no link.
	if e, _ := (broker.WebhookNotifier{}).Event(r, "request.approved"); e.URL != "" {
		t.Fatalf("a link without the web UI: %s", e.URL)
	}
	// A held call carries the rule, the model, the method and path, and the
	// masked excerpt.
	held := &broker.Request{ID: "req_89ab", Kind: broker.KindPrompt, Requester: alice, State: broker.StatePending, CreatedAt: now,
		Approval: policy.Terms{Required: true, Count: 1}, Prompt: &broker.PromptHold{Rule: "dsql", Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions",
			Excerpt: "[found in messages[0] (system)]\nDROP TABLE [EMAIL]", Matches: []broker.HeldMatch{{Where: []string{"messages[0] (system)"}, Text: "DROP TABLE [EMAIL]"}}}}
	e, ok = n.Event(held, "prompt.held")
	if !ok || e.Type != notify.TypePromptHeld || e.Rule != "dsql" || e.Model != "gpt-4o" || e.Excerpt != held.Prompt.Excerpt || e.TTL != "" ||
		e.Method != "POST" || e.Endpoint != "/v1/chat/completions" || len(e.Matches) != 1 || e.Matches[0].Where[0] != "messages[0] (system)" || e.Matches[0].Text != "DROP TABLE [EMAIL]" {
		t.Fatalf("held event: %+v", e)
	}
	// A held tool call names its tool; the summary the generic webhook
	// sends says which.
	held.Prompt = &broker.PromptHold{Rule: "rm-needs-security", Model: "gpt-4o", Tool: "shell", Arguments: `{"commands":["rm -rf /srv"]}`}
	e, ok = n.Event(held, "prompt.held")
	if !ok || e.Tool != "shell" || e.Reason != "rule rm-needs-security held a tool call gpt-4o proposed" ||
		!strings.HasPrefix(e.Summary(), `pamctl: prompt.held req_89ab of tool "shell" by alice`) {
		t.Fatalf("held tool call event: %+v %s", e, e.Summary())
	}
	// Revocation names who revoked; unknown changes are not sent.
	r.State, r.EndedBy, r.EndedAt = broker.StateRevoked, &bob, &approved
	if e, _ := n.Event(r, "grant.revoked"); e.Type != notify.TypeGrantRevoked || e.Reviewer != "bob" || e.Reason != "" {
		t.Fatalf("revoked event: %+v", e)
	}
	if _, ok := n.Event(r, "request.touched"); ok {
		t.Fatal("an unknown change was sent")
	}
}
