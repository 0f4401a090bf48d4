package broker

import (
	"context"

	"github.com/pamctl/pamctl/broker/notify"
)

// Webhook is what WebhookNotifier sends through (*notify.Webhook).
type Webhook interface {
	Send(ctx context.Context, e notify.Event) error
}

// WebhookNotifier turns request changes into webhook events. Send never
// blocks and reports its own failures (notify.Webhook.OnFailure).
type WebhookNotifier struct{ Hook Webhook }

var _ Notifier = WebhookNotifier{}

// Notify implements Notifier.
func (w WebhookNotifier) Notify(ctx context.Context, r *Request, event string) {
	e := notify.Event{RequestID: r.ID, Subject: r.Requester.Subject, Scopes: r.Scopes, Decision: string(r.State), Reason: r.Reason}
	switch event {
	case "request.created":
		e.Type = notify.TypeRequestPending
		if r.State == StateApproved {
			e.Type = notify.TypeRequestApproved
		}
	case "request.approved":
		e.Type = notify.TypeRequestApproved
	case "request.denied":
		e.Type = notify.TypeRequestDenied
	case "request.expired":
		e.Type = notify.TypeRequestExpired
	case "grant.revoked":
		e.Type = notify.TypeGrantRevoked
	case "prompt.held":
		e.Type = notify.TypePromptHeld
		if r.Prompt != nil {
			e.Reason = "rule " + r.Prompt.Rule + " held a call to " + r.Prompt.Model
		}
	default:
		return
	}
	if n := len(r.Reviews); n > 0 {
		e.Reviewer = r.Reviews[n-1].Reviewer.Subject
		if r.Reviews[n-1].Reason != "" {
			e.Reason = r.Reviews[n-1].Reason
		}
	}
	_ = w.Hook.Send(context.WithoutCancel(ctx), e)
}
