package ui

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// loginVia runs the code flow in c for next, starting /ui/login with the
// fetch metadata start (nil: none) and coming back through the IdP as a
// browser does: the callback and the page it redirects to arrive with
// Sec-Fetch-Site cross-site (any URL of the redirect chain, the IdP's,
// not same-origin with ours makes it so). It returns the callback's
// redirect target. (The test IdP shares the UI's origin, so the headers
// of the hops after the IdP are set by hand.)
func (e *env) loginVia(t *testing.T, c *http.Client, next string, start map[string]string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", e.base+"/ui/login?next="+url.QueryEscape(next), nil)
	for k, v := range start {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil || res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %v %v", err, res)
	}
	res.Body.Close()
	authz := res.Header.Get("Location")
	get(t, c, authz)
	res, _ = get(t, c, authz+"&login_hint=bob&groups=security")
	res = fromIdP(t, c, res.Header.Get("Location"))
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %d", res.StatusCode)
	}
	return res.Header.Get("Location")
}

// fromIdP GETs u as the browser does at the end of a redirect chain
// through the IdP (cross-site), after the person's click there.
func fromIdP(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-User", "?1")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A person who opens the audit view on this site and has to log in (or
// step up: reading the trail needs approvals.reauth_after) comes back
// through their IdP, so the browser says Sec-Fetch-Site: cross-site on
// the view. The login started on this site, so the callback sends the
// browser back with a marker bound to the new session and to that page,
// which the cross-site check accepts once: no extra click, no message that
// another site sent them.
func TestAuditAfterLoginNeedsNoExtraClick(t *testing.T) {
	e := newEnv(t)
	e.audit.Append(context.Background(), &audit.Event{Type: audit.TypeRequestCreated, Actor: &audit.Actor{Subject: "alice"}, Request: "req_access"})
	here := map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
	for name, start := range map[string]map[string]string{
		"started on this site":                  here,
		"started from the address bar":          {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
		"started by a browser without metadata": nil,
	} {
		for _, next := range []string{"/ui/audit", "/ui/audit?type=request.created&actor=alice", "/ui/audit/grants/req_access"} {
			c := browser(t)
			if got := e.loginVia(t, c, next, start); got != next {
				t.Fatalf("%s: the callback sends the browser to %q, want %q", name, got, next)
			}
			res := fromIdP(t, c, e.base+next)
			if body := readAll(t, res); res.StatusCode != http.StatusOK || strings.Contains(body, `id="confirm"`) {
				t.Errorf("%s, %s after login: %d, not the view:\n%.400s", name, next, res.StatusCode, body)
			}
			// Once: a second cross-site GET is asked to confirm again.
			res = fromIdP(t, c, e.base+next)
			if body := readAll(t, res); res.StatusCode != http.StatusForbidden || !strings.Contains(body, `id="confirm"`) {
				t.Errorf("%s, %s: the marker after login admitted a second cross-site read: %d", name, next, res.StatusCode)
			}
		}
	}
}

// The marker after login admits only what the login was for: not a login
// started from another site (a page elsewhere sending the browser to
// /ui/login?next=/ui/audit gets the confirm page after the login, as any
// cross-site read), not another page than the login's next, and not in
// another session (a marker copied from one browser to another).
func TestAuditAfterLoginMarkerIsBound(t *testing.T) {
	e := newEnv(t)
	e.audit.Append(context.Background(), &audit.Event{Type: audit.TypeRequestCreated, Actor: &audit.Actor{Subject: "alice"}, Request: "req_access"})
	confirm := func(what string, res *http.Response) {
		t.Helper()
		if body := readAll(t, res); res.StatusCode != http.StatusForbidden || !strings.Contains(body, `id="confirm"`) {
			t.Errorf("%s: %d, want the confirm page:\n%.300s", what, res.StatusCode, body)
		}
	}
	for name, start := range map[string]map[string]string{
		"cross-site":                     {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"},
		"a sibling subdomain":            {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
		"a foreign Referer, no metadata": {"Referer": "https://evil.example/page"},
	} {
		c := browser(t)
		e.loginVia(t, c, "/ui/audit", start)
		confirm("a login started from "+name, fromIdP(t, c, e.base+"/ui/audit"))
	}
	// Another page than the login's next.
	c := browser(t)
	e.loginVia(t, c, "/ui/audit?type=login", map[string]string{"Sec-Fetch-Site": "same-origin"})
	confirm("another audit page than the login's next", fromIdP(t, c, e.base+"/ui/audit/grants/req_access"))

	// Another session: the marker from a's login in b's browser.
	a, b := browser(t), browser(t)
	e.loginVia(t, a, "/ui/audit", map[string]string{"Sec-Fetch-Site": "same-origin"})
	e.loginVia(t, b, "/ui/audit", map[string]string{"Sec-Fetch-Site": "cross-site"})
	base, _ := url.Parse(e.base)
	var copied int
	for _, ck := range a.Jar.Cookies(base) {
		if ck.Name != "pamctl-ui" {
			b.Jar.SetCookies(base, []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/"}})
			copied++
		}
	}
	if copied == 0 {
		t.Fatal("no marker cookie to copy after a login started on this site")
	}
	confirm("a marker from another session", fromIdP(t, b, e.base+"/ui/audit"))
}
