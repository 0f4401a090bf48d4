package broker

import (
	"context"
	"fmt"

	"github.com/pamctl/pamctl/broker/notify"
)

// Webhook is what WebhookNotifier sends through (*notify.Webhook: the
// generic webhook, Slack or Teams, by its Format).
type Webhook interface {
	Send(ctx context.Context, e notify.Event) error
}

// WebhookNotifier turns request changes into notify events and hands each
// to every hook. Send never blocks and reports its own failures
// (notify.Webhook.OnFailure).
type WebhookNotifier struct {
	Hooks []Webhook
	// PublicURL is ui.public_url when the web UI is on: events then carry
	// the item's page (ItemURL), which chat messages show as a button.
	PublicURL string
}

var _ Notifier = WebhookNotifier{}

// Notify implements Notifier.
func (w WebhookNotifier) Notify(ctx context.Context, r *Request, event string) {
	e, ok := w.Event(r, event)
	if !ok {
		return
	}
	for _, h := range w.Hooks {
		_ = h.Send(context.WithoutCancel(ctx), e)
	}
}

// Event is the notify event for r's change named event ("request.created",
// "request.approved", "prompt.held", …); ok is false for changes nobody is
// told about.
func (w WebhookNotifier) Event(r *Request, event string) (notify.Event, bool) {
	e := notify.Event{RequestID: r.ID, Kind: r.Kind, Subject: r.Requester.Subject, Display: r.Requester.Display, Scopes: r.Scopes,
		Act: r.Requester.Act, ActFor: r.Requester.ActFor,
		Decision: string(r.State), Reason: r.Reason, CreatedAt: r.CreatedAt, URL: ItemURL(w.PublicURL, r.ID)}
	if r.TTL > 0 && r.Kind == KindAccess {
		e.TTL = r.TTL.String()
	}
	if r.Approval.Required {
		e.Approvals = fmt.Sprintf("%d/%d", r.Approvals(), max(r.Approval.Count, 1))
	}
	if r.ApprovedAt != nil {
		at := *r.ApprovedAt
		e.ApprovedAt = &at
	}
	if r.Prompt != nil {
		e.Rule, e.Model, e.Excerpt, e.Tool = r.Prompt.Rule, r.Prompt.Model, r.Prompt.Excerpt, r.Prompt.Tool
		e.Method, e.Endpoint = r.Prompt.Method, r.Prompt.Endpoint
		for _, m := range r.Prompt.Matches {
			e.Matches = append(e.Matches, notify.HeldMatch{Where: m.Where, Text: m.Text})
		}
	}
	switch event {
	case "request.created":
		e.Type = notify.TypeRequestPending
		if r.State == StateApproved {
			e.Type = notify.TypeRequestApproved
			e.Time = r.CreatedAt
		}
	case "request.approved":
		e.Type = notify.TypeRequestApproved
	case "request.denied":
		e.Type = notify.TypeRequestDenied
	case "request.expired":
		e.Type = notify.TypeRequestExpired
		if r.EndedAt != nil {
			e.Time = *r.EndedAt
		}
		if r.Kind == KindPrompt && r.EndReason != "" {
			e.Reason = r.EndReason // a held call that ended with its grant (Service.endHeld)
		}
	case "grant.revoked":
		e.Type = notify.TypeGrantRevoked
		if r.EndedBy != nil {
			e.Reviewer, e.ReviewerDisplay = r.EndedBy.Subject, r.EndedBy.Display
		}
		if r.EndedAt != nil {
			e.Time = *r.EndedAt
		}
		e.Reason = ""
		return e, true
	case "prompt.held":
		e.Type = notify.TypePromptHeld
		switch {
		case r.Prompt != nil && r.Prompt.Tool != "":
			e.Reason = "rule " + r.Prompt.Rule + " held a tool call " + r.Prompt.Model + " proposed"
		case r.Prompt != nil:
			e.Reason = "rule " + r.Prompt.Rule + " held a call to " + r.Prompt.Model
		}
		e.Time = r.CreatedAt
	default:
		return notify.Event{}, false
	}
	if n := len(r.Reviews); n > 0 && event != "request.expired" {
		last := r.Reviews[n-1]
		e.Reviewer, e.ReviewerDisplay = last.Reviewer.Subject, last.Reviewer.Display
		e.Time = last.At
		if last.Reason != "" {
			e.Reason = last.Reason
		} else if r.Kind == KindPrompt {
			e.Reason = ""
		}
	}
	return e, true // Send stamps a zero Time
}
