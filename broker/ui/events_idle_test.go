package ui

import (
	"context"
	"net/http"
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
			req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/ui/events", nil)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			req.Header.Set("Sec-Fetch-Mode", "cors")
			req.Header.Set("Sec-Fetch-Dest", "empty")
			res, err := c.Do(req)
			if err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("events: %v %v", err, res)
			}
			defer res.Body.Close()
			var got strings.Builder
			buf := make([]byte, 4096)
			readUntil := func(want string) {
				t.Helper()
				for !strings.Contains(got.String(), want) {
					n, err := res.Body.Read(buf)
					got.Write(buf[:n])
					if err != nil && !strings.Contains(got.String(), want) {
						t.Fatalf("stream ended (%v) before %q:\n%s", err, want, got.String())
					}
				}
			}
			readUntil("retry:")
			// Within the idle timeout the stream stays, however long it runs.
			e.svc.advance(50 * time.Minute)
			if how == "keep-alive" {
				readUntil(": keep-alive")
				readUntil(": keep-alive")
			} else {
				e.audit.Append(ctx, &audit.Event{Type: audit.TypeRequestCreated, Request: "req_1"})
				readUntil("event: queue")
			}
			if strings.Contains(got.String(), "logout") {
				t.Fatalf("the stream logged out a session in use:\n%s", got.String())
			}
			// An hour after the last use (the login), with only the stream open.
			e.svc.advance(11 * time.Minute)
			if how == "queue event" {
				e.audit.Append(ctx, &audit.Event{Type: audit.TypeRequestCreated, Request: "req_2"})
			}
			readUntil("event: logout")
			if n, err := res.Body.Read(buf); err == nil {
				t.Fatalf("the stream goes on after logout: %q", buf[:n])
			}
		})
	}
}
