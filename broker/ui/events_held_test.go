package ui

import (
	"context"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// A held call reaches the trail before the store (the broker writes the
// trail first), so its prompt.held event can arrive while the queue does
// not list it yet. The stream tells the page only once the store holds
// the call: a page told at once refreshed too early and, with no later
// event, never showed the hold (TestBrowserApprovals under load).
func TestEventsHeldCallWaitsForItsRecord(t *testing.T) {
	e := newEnv(t)
	looked := make(chan string, 16)
	e.svc.mu.Lock()
	e.svc.looked = looked
	e.svc.mu.Unlock()
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ev := openEvents(t, ctx, e.base, c)

	e.audit.Append(ctx, &audit.Event{Type: audit.TypePromptHeld, Request: "req_late"})
	select {
	case id := <-looked:
		if id != "req_late" {
			t.Fatalf("the stream looked for %q", id)
		}
	case <-ctx.Done():
		t.Fatal("the stream never looked for the held call's record before telling the page")
	}
	e.svc.mu.Lock()
	e.svc.reqs["req_late"] = &broker.Request{ID: "req_late", Kind: broker.KindPrompt, State: broker.StatePending}
	e.svc.mu.Unlock()
	ev.readUntil("event: queue")
}
