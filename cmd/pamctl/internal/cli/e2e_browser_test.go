package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/proxy/rules"
)

// chromiumPath is where Debian's chromium package puts the browser
// (.ci/run installs it); PAMCTL_CHROMIUM overrides it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("PAMCTL_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	// CI must run the browser test, never skip it.
	if os.Getenv("CI") != "" || os.Getenv("PAMCTL_CI") != "" {
		t.Fatal("chromium is not installed, and CI must run the browser test: apt-get install -y chromium (.ci/run does), or set PAMCTL_CHROMIUM")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium, or set PAMCTL_CHROMIUM): the web UI's browser test is skipped")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// run runs browser steps with a generous deadline (the machine is shared).
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	bget(t, ctx, what, chromedp.Steps(steps...))
}

// bget runs one browser action and returns its value.
func bget[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		lc, cancel2 := context.WithTimeout(ctx, 5*time.Second)
		defer cancel2()
		loc, _ := chromedp.Run(lc, chromedp.Location())
		body, _ := chromedp.Run(lc, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 1500) : ""`))
		t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, body)
	}
	return v
}

// bjs evaluates expr in the page (awaiting a promise).
func bjs[T any](t *testing.T, ctx context.Context, what, expr string) T {
	t.Helper()
	return bget(t, ctx, what, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// postStatus POSTs a form from the page (same origin, the session cookie
// attached) and returns the HTTP status.
func postStatus(t *testing.T, ctx context.Context, path, body string) int {
	t.Helper()
	expr := fmt.Sprintf(`fetch(%q, {method: "POST", credentials: "same-origin", redirect: "manual", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: %q}).then(r => r.status)`, path, body)
	return bjs[int](t, ctx, "POST "+path, expr)
}

// browserLogin logs in at the dev issuer's form as user with groups.
func browserLogin(t *testing.T, ctx context.Context, user, groups string) {
	t.Helper()
	run(t, ctx, "log in as "+user,
		chromedp.WaitVisible(chromedp.CSS("#login_hint")),
		chromedp.SetValue(chromedp.CSS("#login_hint"), user),
		chromedp.SetValue(chromedp.CSS("#groups"), groups),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("main h1")),
	)
}

type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// TestBrowserApprovals drives a real headless Chromium through the web
// approval page: login at the issuer's form, the queue, approving a
// request and a held call (the waiting client gets its answer), a
// CSRF-less POST refused, the requester's own approve button absent and
// her POST refused, and a stale login sent back to the IdP.
func TestBrowserApprovals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	clk := &offsetClock{}
	s := startServerOpts(t, func(c *Config) {
		c.Rules = []rules.Rule{{Name: "destructive-sql", Pattern: `(?i)drop\s+table`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}}
		c.Proxy.HoldTimeout = 3 * time.Minute
	}, AppOptions{Dev: true, Now: clk.Now})
	base := s.app.BrokerURL()
	// alice is in ml and in security: an approver, but never of her own requests.
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml,security").must(t, "alice login")
	newRequest := func(reason string) *broker.Request {
		t.Helper()
		r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--scope", "model:gpt-4o", "--reason", reason, "--nowait", "-o", "json").must(t, "request")
		var req broker.Request
		if err := json.Unmarshal([]byte(r.out), &req); err != nil || req.State != broker.StatePending {
			t.Fatalf("request: %v %+v", err, req)
		}
		if want := "Review page:  " + base + "/ui/requests/" + req.ID; !strings.Contains(r.err, want) {
			t.Fatalf("pamctl request does not link the review page (%q):\n%s", want, r.err)
		}
		return &req
	}
	req1 := newRequest("nightly eval run")
	hostile := newRequest(`<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> ‮evil‬ ` + strings.Repeat("W", 900))

	ctx := newBrowser(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	// Log in: /ui/ sends the browser to the issuer's login form and back.
	run(t, ctx, "open the queue", chromedp.Navigate(base+"/ui/"))
	browserLogin(t, ctx, "bob", "security")
	run(t, ctx, "the queue lists the request", chromedp.WaitVisible(css(`a[href="/ui/requests/`+req1.ID+`"]`)))
	if loc := bget(t, ctx, "location", chromedp.Location()); loc != base+"/ui/" {
		t.Fatalf("after login at %s, want the queue", loc)
	}

	// The hostile reason renders inert: no script ran, no element made,
	// the bidi override shown as an escape.
	run(t, ctx, "open the hostile request", chromedp.Navigate(base+"/ui/requests/"+hostile.ID), chromedp.WaitVisible(css("#approve")))
	if bjs[bool](t, ctx, "look for injected markup", `window.pwned !== undefined || document.querySelector("main img, main script") !== null`) {
		t.Fatal("a hostile reason ran script or made an element")
	}
	if txt := bjs[string](t, ctx, "page text", `document.querySelector("main").innerText`); !strings.Contains(txt, `<script>window.pwned=1</script>`) || !strings.Contains(txt, `\u202e`) || strings.ContainsRune(txt, '\u202e') {
		t.Fatalf("the hostile reason is not shown as inert text:\n%.400s", txt)
	}

	// Approve the first request, narrowed to one scope.
	run(t, ctx, "open the request", chromedp.Navigate(base+"/ui/requests/"+req1.ID), chromedp.WaitVisible(css("#approve")))
	shot(t, ctx, "approvals-request.png")
	run(t, ctx, "approve with a narrower scope",
		chromedp.Click(css(`input[value="model:gpt-4o"]`)),
		chromedp.Click(css("#narrow")),
		chromedp.SetValue(css("#reason"), "ok for the eval"),
		chromedp.Click(css("#approve")),
		chromedp.WaitVisible(css(".notice.ok")))
	aliceAPI := s.sessionClient(t, "alice")
	got, err := aliceAPI.Request(context.Background(), req1.ID, 0)
	if err != nil || got.State != broker.StateApproved || strings.Join(got.Scopes, " ") != "model:gpt-4o-mini" || got.Reviews[0].Reviewer.Subject != "bob" || got.Reviews[0].Reason != "ok for the eval" {
		t.Fatalf("after approving in the browser: %v %+v", err, got)
	}

	// A held call: the queue shows it live (SSE), bob approves, the
	// waiting client gets its answer.
	tok := strings.TrimSpace(s.as(t, "alice", "", "token", req1.ID).must(t, "token").out)
	run(t, ctx, "back to the queue", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(css(`html[data-live="connected"]`)))
	answer := make(chan callResult, 1)
	go func() { answer <- chat(t, s.app.ProxyURL(), tok, "please DROP TABLE users") }()
	run(t, ctx, "the held call appears without a reload", chromedp.WaitVisible(css(".tag.hold")))
	shot(t, ctx, "approvals-queue.png")
	select {
	case res := <-answer:
		t.Fatalf("the held call returned before anyone decided: %+v", res)
	default:
	}
	run(t, ctx, "open and approve the held call",
		chromedp.Click(css("tr:has(.tag.hold) a.id")),
		chromedp.WaitVisible(css("pre.excerpt")))
	if place := bget(t, ctx, "where the rule matched", chromedp.Text(css(".found .place"))); place != "messages[0] (user)" {
		t.Fatalf("the held call's page says the match is in %q", place)
	}
	if call := bjs[string](t, ctx, "the held call's method and path", `[...document.querySelectorAll(".facts dd")].map(d => d.textContent).join("|")`); !strings.Contains(call, "|POST /v1/chat/completions|") {
		t.Fatalf("the held call's page shows %q", call)
	}
	shot(t, ctx, "approvals-held-call.png")
	run(t, ctx, "approve the held call",
		chromedp.Click(css("#approve")),
		chromedp.WaitVisible(css(".notice.ok")))
	select {
	case res := <-answer:
		if res.status != 200 || !strings.Contains(res.body, devMockPrefix) {
			t.Fatalf("the released call: %+v", res)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the waiting client got no answer within 60s of the approval")
	}

	// A POST without the CSRF token is refused, and changes nothing.
	req2 := newRequest("second")
	if st := postStatus(t, ctx, "/ui/requests/"+req2.ID+"/decide", "decision=approve"); st != 403 {
		t.Fatalf("CSRF-less POST: status %d, want 403", st)
	}
	if got, _ := aliceAPI.Request(context.Background(), req2.ID, 0); got.State != broker.StatePending {
		t.Fatalf("after a CSRF-less POST the request is %s", got.State)
	}

	// alice: her own request shows no approve button, and her POST (with
	// a valid token) is refused by the broker.
	run(t, ctx, "log out", chromedp.Click(css("form.who button")), chromedp.WaitVisible(css(`a[href="/ui/login"]`)))
	run(t, ctx, "open a request as its requester", chromedp.Navigate(base+"/ui/requests/"+req2.ID))
	browserLogin(t, ctx, "alice", "ml,security")
	run(t, ctx, "the page says why there is no form", chromedp.WaitVisible(css("#no-decision")))
	if bjs[bool](t, ctx, "look for the approve button", `document.querySelector("#approve") !== null`) {
		t.Fatal("the requester sees an approve button on her own request")
	}
	if why := bget(t, ctx, "why", chromedp.Text(css("#no-decision"))); !strings.Contains(why, "you made this request") {
		t.Fatalf("requester's page says %q", why)
	}
	csrf := bjs[string](t, ctx, "the session's CSRF token", `document.querySelector("input[name=csrf]").value`)
	if st := postStatus(t, ctx, "/ui/requests/"+req2.ID+"/decide", "decision=approve&csrf="+csrf); st != 403 {
		t.Fatalf("self-approval POST: status %d, want 403", st)
	}
	if got, _ := aliceAPI.Request(context.Background(), req2.ID, 0); got.State != broker.StatePending {
		t.Fatalf("after a self-approval POST the request is %s", got.State)
	}

	// A stale login is sent back to the IdP (prompt=login, max_age) before
	// deciding, and the decision goes through after a fresh login.
	s.as(t, "carol", "", "login", "--user", "carol", "--groups", "ml").must(t, "carol login")
	r3 := s.as(t, "carol", "", "request", "--scope", "model:gpt-4o", "--nowait", "-o", "json").must(t, "carol's request")
	var req3 broker.Request
	if err := json.Unmarshal([]byte(r3.out), &req3); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "log alice out", chromedp.Click(css("form.who button")), chromedp.WaitVisible(css(`a[href="/ui/login"]`)))
	run(t, ctx, "open carol's request", chromedp.Navigate(base+"/ui/requests/"+req3.ID))
	browserLogin(t, ctx, "bob", "security")
	run(t, ctx, "a fresh login decides without a detour", chromedp.WaitVisible(css("#approve")))
	if bjs[bool](t, ctx, "look for the step-up notice", `document.querySelector(".notice.warn") !== null`) {
		t.Fatal("a fresh login is told it needs a new one")
	}
	clk.Advance(broker.DefaultReauthAfter + time.Minute)
	run(t, ctx, "reload as a stale login", chromedp.Reload(), chromedp.WaitVisible(css(".notice.warn")), chromedp.Click(css("#approve")), chromedp.WaitVisible(css("#login_hint")))
	idp := bjs[string](t, ctx, "the IdP's URL", `location.href`)
	if !strings.Contains(idp, "/dev/oidc/authorize?") || !strings.Contains(idp, "prompt=login") || !strings.Contains(idp, fmt.Sprintf("max_age=%d", int(broker.DefaultReauthAfter/time.Second))) {
		t.Fatalf("a stale login was not sent to the IdP with prompt=login and max_age: %s", idp)
	}
	carolAPI := s.sessionClient(t, "carol")
	if got, err := carolAPI.Request(context.Background(), req3.ID, 0); err != nil || got.State != broker.StatePending {
		t.Fatalf("a stale login's approval went through: %v %+v", err, got)
	}
	browserLogin(t, ctx, "bob", "security")
	run(t, ctx, "back on the request, decide again", chromedp.WaitVisible(css("#approve")), chromedp.Click(css("#approve")), chromedp.WaitVisible(css(".notice.ok")))
	if got, err := carolAPI.Request(context.Background(), req3.ID, 0); err != nil || got.State != broker.StateApproved || got.Reviews[0].Reviewer.Subject != "bob" {
		t.Fatalf("after a fresh login the approval did not go through: %v %+v", err, got)
	}
}

// shot saves a screenshot under docs/img when PAMCTL_SCREENSHOTS is set
// (the PNGs in docs/approvals.md are made this way).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("PAMCTL_SCREENSHOTS")
	if dir == "" {
		return
	}
	buf := bget(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserQueueCatchesUpWhenLive: the queue page is rendered, then its
// event stream subscribes to the trail; a request that arrives in between
// (a slow connection, a loaded broker: what made TestBrowserApprovals miss
// its held call) has no event left to announce it. The page must show it
// without a reload, and say it is live only once the stream is open. The
// stream is held back here until the request exists.
func TestBrowserQueueCatchesUpWhenLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	s := startServerOpts(t, nil, AppOptions{Dev: true})
	base := s.app.BrokerURL()
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	ctx := newBrowser(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	run(t, ctx, "open the queue", chromedp.Navigate(base+"/ui/"))
	browserLogin(t, ctx, "bob", "security")
	// The queue itself, not any h1 (the login form has one too): leaving
	// before the login's callback has set the cookie would log bob out.
	run(t, ctx, "the queue after the login", chromedp.WaitVisible(css("#queue")))
	run(t, ctx, "leave the queue", chromedp.Navigate("about:blank"))

	// Hold every request for the event stream until released.
	paused := make(chan fetch.RequestID, 8)
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*fetch.EventRequestPaused); ok {
			select {
			case paused <- e.RequestID:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "hold the event stream back", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/ui/events*"}}})
		return err
	}))
	run(t, ctx, "open the queue again", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(css("#queue")))
	var held fetch.RequestID
	select {
	case held = <-paused:
	case <-time.After(60 * time.Second):
		lc, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(lc, chromedp.Location())
		body, _ := chromedp.Run(lc, chromedp.Evaluate[string](`document.documentElement.outerHTML.slice(0, 3000)`))
		t.Fatalf("the queue page opened no event stream within 60s\nat %s\n%s", loc, body)
	}
	if live := bjs[string](t, ctx, "the live state", `document.documentElement.getAttribute("data-live") || ""`); live == "connected" {
		t.Fatal("the page says it is live while its event stream is not open")
	}

	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--reason", "arrived before the stream", "--nowait", "-o", "json").must(t, "request")
	var req broker.Request
	if err := json.Unmarshal([]byte(r.out), &req); err != nil {
		t.Fatalf("request: %v", err)
	}
	run(t, ctx, "let the event stream through", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: held})
		return err
	}))
	run(t, ctx, "the page is live", chromedp.WaitVisible(css(`html[data-live="connected"]`)))
	run(t, ctx, "the request that arrived before the stream is listed without a reload",
		chromedp.WaitVisible(css(`a[href="/ui/requests/`+req.ID+`"]`)))
}
