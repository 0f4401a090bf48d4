package broker_test

import (
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
)

// A workload's request tells the approvers whose run it is (act_claim and
// act_people), in every notification.
func TestWebhookNotifierCarriesTheAct(t *testing.T) {
	job := broker.Identity{Subject: "repo:acme/app:ref:refs/heads/main", Issuer: "gha", Kind: "service", Act: "alice-gh", ActFor: "alice@example.com"}
	r := &broker.Request{ID: "req_0123456789abcdef0123", Kind: broker.KindAccess, Requester: job, Scopes: []string{"model:gpt-4o"},
		State: broker.StatePending, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	e, ok := (broker.WebhookNotifier{}).Event(r, "request.created")
	if !ok || e.Act != "alice-gh" || e.ActFor != "alice@example.com" {
		t.Fatalf("event: %v %+v", ok, e)
	}
}
