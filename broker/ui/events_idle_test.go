package ui

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// The live queue's stream does not keep a web session alive, and it ends
// when the session idles out: it checks the session against its last real
// use (sessions.idle_timeout, here on a fake clock), not as if the stream
// were a use, and tells the page "logout", at the next keep-alive or the
// next queue event, whichever comes first; the page then says the session
// ended. A session still in use keeps its stream.
func TestEventsStreamEndsWhenTheSessionIdlesOut(t *testing.T) {
	for _, how := range []string{"keep-alive", "queue event"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			e.svc.mu.Lock()
			e.svc.idle, e.svc.at = time.Hour, time.Now()
			e.svc.mu.Unlock()
			if how == "keep-alive" {
				e.ui.keepAliveNS.Store(int64(20 * time.Millisecond))
			}
			c := browser(t)
			e.login(t, c, "/ui/", "bob", "security")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			ev := openEvents(t, ctx, e.base, c)
			// Within the idle timeout the stream stays, however long it runs.
			e.svc.advance(50 * time.Minute)
			if how == "keep-alive" {
				ev.readUntil(": keep-alive")
				ev.readUntil(": keep-alive")
			} else {
				e.audit.Append(ctx, &audit.Event{Type: audit.TypeRequestCreated, Request: "req_access"})
				ev.readUntil("event: queue")
			}
			if strings.Contains(ev.got.String(), "logout") {
				t.Fatalf("the stream logged out a session in use:\n%s", ev.got.String())
			}
			// An hour after the last use (the login), with only the stream open.
			e.svc.advance(11 * time.Minute)
			if how == "queue event" {
				e.audit.Append(ctx, &audit.Event{Type: audit.TypeRequestCreated, Request: "req_held"})
			}
			ev.readUntil("event: logout")
			if n, err := ev.res.Body.Read(ev.buf); err == nil {
				t.Fatalf("the stream goes on after logout: %q", ev.buf[:n])
			}
		})
	}
}
