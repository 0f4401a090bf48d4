package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// In a real browser, the queue page never navigates by itself: when the
// web session goes past sessions.idle_timeout with only the live queue
// open, the stream says so at the next queue event and the page shows
// "Your session has ended … Reload to sign in again" with a link, without
// reloading (a reload would count as a use and, with idle_timeout under
// approvals.reauth_after, renew the session with nobody at the keyboard)
// and without starting a login.
func TestBrowserQueueSaysTheSessionEnded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	clk := &offsetClock{}
	s := startServerOpts(t, nil, AppOptions{Dev: true, Now: clk.Now})
	base := s.app.BrokerURL()
	ctx := newBrowser(t)
	run(t, ctx, "open the queue", chromedp.Navigate(base+"/ui/"))
	browserLogin(t, ctx, "bob", "security")
	run(t, ctx, "the live queue connects", chromedp.WaitVisible(chromedp.CSS(`html[data-live="connected"]`)))
	bjs[bool](t, ctx, "mark the page", `(window.__notReloaded = true)`)

	// Past the idle timeout (and the web session's lifetime) with only the
	// queue open; then something arrives in the queue.
	clk.Advance(61 * time.Minute)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--nowait", "-o", "json").must(t, "request")

	run(t, ctx, "the page says the session ended", chromedp.WaitVisible(chromedp.CSS(`.notice[role="alert"] a`)))
	if txt := bget(t, ctx, "the notice", chromedp.Text(chromedp.CSS(`.notice[role="alert"]`))); !strings.Contains(txt, "Your session has ended") || !strings.Contains(txt, "Reload") {
		t.Fatalf("the notice says %q", txt)
	}
	// Give a reload, had there been one, the time to happen.
	time.Sleep(500 * time.Millisecond)
	if !bjs[bool](t, ctx, "the page was not reloaded", `window.__notReloaded === true`) {
		t.Fatal("the queue page navigated by itself when the session ended")
	}
	if loc := bget(t, ctx, "location", chromedp.Location()); loc != base+"/ui/" {
		t.Fatalf("the page moved to %s", loc)
	}
	if href := bjs[string](t, ctx, "the reload link", `document.querySelector('.notice[role="alert"] a').getAttribute("href")`); href != "/ui/" {
		t.Fatalf("the notice's link goes to %q, want the page itself", href)
	}
}
