package ui

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// The live queue's stream tells a session only about requests it may see,
// and never how many events the trail holds: no sequence number, no
// event for another person's request (red team: a non-approver read
// {"seq":51} then {"seq":54} and learned three events happened).
func TestEventsOnlyForVisibleRequestsAndNoSeq(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// carol: no approver, requester of nothing (a non-approver's view).
	carol := browser(t)
	e.login(t, carol, "/ui/", "carol", "ml")
	cs := openEvents(t, ctx, e.base, carol)
	// alice: the requester of req_access, no approver.
	alice := browser(t)
	e.login(t, alice, "/ui/", "alice", "ml")
	as := openEvents(t, ctx, e.base, alice)
	// bob: an approver, sees both.
	bob := browser(t)
	e.login(t, bob, "/ui/", "bob", "security")
	bs := openEvents(t, ctx, e.base, bob)

	// carol's and alice's own requests (each sees the events of hers).
	e.svc.mu.Lock()
	for id, who := range map[string]string{"req_carol": "carol", "req_alice": "alice"} {
		c := *e.svc.reqs["req_access"]
		c.ID, c.Requester.Subject = id, who
		e.svc.reqs[id] = &c
	}
	e.svc.mu.Unlock()
	for _, ev := range []audit.Event{
		{Type: audit.TypeRequestCreated, Request: "req_unknown"},           // no one may see it
		{Type: audit.TypeGrantRevoked},                                     // names nothing
		{Type: audit.TypePromptHeld, Review: "req_held", Decision: "hold"}, // approvers'
		{Type: audit.TypeRequestCreated, Request: "req_carol"},             // carol's and approvers'
		{Type: audit.TypeRequestApproved, Request: "req_access"},           // alice's and approvers'
		{Type: audit.TypeRequestDenied, Request: "req_carol"},
		{Type: audit.TypeRequestCreated, Request: "req_alice"},
	} {
		e.audit.Append(ctx, &ev)
	}
	// Each stream is read up to its last expected event: one it should
	// not have had would have come before, so the counts are exact.
	for _, c := range []struct {
		who  string
		s    *eventStream
		want int
	}{{"carol", cs, 2}, {"alice", as, 2}, {"bob", bs, 5}} {
		for strings.Count(c.s.got.String(), "event: queue") < c.want {
			c.s.readMore()
		}
		got := c.s.got.String()
		if n := strings.Count(got, "event: queue"); n != c.want {
			t.Errorf("%s got %d events, want %d:\n%s", c.who, n, c.want, got)
		}
		if strings.Contains(got, "seq") || strings.Contains(got, "req_") || strings.Count(got, "data: {}") != c.want {
			t.Errorf("%s's stream says more than that something changed:\n%s", c.who, got)
		}
	}
}
