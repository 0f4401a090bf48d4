package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// Every web login, not only a step-up, asks the IdP for an authentication
// no older than approvals.reauth_after (max_age), as `pamctl login` does.
// Without it an IdP may answer from its own session cookie, hours old,
// and leave auth_time out (it is required only when max_age was asked),
// so the page's session would count as freshly authenticated and could
// approve at once: whoever sits at a browser with a live IdP session
// could decide without the IdP seeing the person again.
func TestEveryLoginAsksForARecentAuthentication(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	for _, tc := range []struct {
		path, prompt string
	}{
		{"/ui/login?next=%2Fui%2F", ""},
		{"/ui/login", ""},
		{"/ui/login?reauth=1&next=%2Fui%2Frequests%2Freq_access", "login"},
	} {
		res, _ := get(t, c, e.base+tc.path)
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d", tc.path, res.StatusCode)
		}
		authz, err := url.Parse(res.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		q := authz.Query()
		if q.Get("max_age") != "600" || q.Get("prompt") != tc.prompt {
			t.Errorf("%s: authorization request %s: want max_age=600 and prompt=%q", tc.path, authz, tc.prompt)
		}
	}
	// The login still completes with the dev issuer (max_age alone shows no form).
	res, _ := e.login(t, c, "/ui/", "bob", "security")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// An IdP whose clock runs ahead of the broker's (within the step-up
// check's skew) sends an auth_time after the login: the page's session
// records the login's time instead, so it cannot pass step-up for longer
// than approvals.reauth_after after the login.
func TestLoginAuthTimeNeverAfterTheLogin(t *testing.T) {
	for _, ahead := range []time.Duration{5 * time.Second, 25 * time.Second} {
		e := newEnvWith(t, devissuer.WithClock(func() time.Time { return time.Now().Add(ahead) }))
		c := browser(t)
		res, _ := e.login(t, c, "/ui/", "bob", "security")
		done := time.Now()
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %d", res.StatusCode)
		}
		e.svc.mu.Lock()
		for _, r := range e.svc.sess {
			if r.AuthTime.After(done) {
				t.Errorf("IdP %s ahead: the session's auth_time %s is after the login (%s)", ahead, r.AuthTime, done)
			}
		}
		e.svc.mu.Unlock()
		var detail string
		e.audit.Range(context.Background(), 0, func(ev audit.Event) bool {
			if ev.Type == audit.TypeLogin {
				detail = ev.Details["auth_time"]
			}
			return true
		})
		if at, err := time.Parse(time.RFC3339, detail); err != nil || at.After(done) {
			t.Errorf("IdP %s ahead: the login event says auth_time %q", ahead, detail)
		}
	}
}

// An IdP that sends no auth_time: a plain login works (the session cannot
// step up), and a step-up through it ends on a page that says why and what
// to do instead of sending the person round the IdP again and again.
func TestStepUpWithoutAuthTimeSaysWhy(t *testing.T) {
	e := newEnvWith(t, devissuer.WithoutAuthTime())
	c := browser(t)
	if res, _ := e.login(t, c, "/ui/", "bob", "security"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	e.svc.mu.Lock()
	for _, r := range e.svc.sess {
		if !r.AuthTime.IsZero() {
			t.Errorf("the session records auth time %s; the IdP sent none", r.AuthTime)
		}
	}
	e.svc.mu.Unlock()
	// The item page says why it cannot decide, before anyone submits.
	if _, page := get(t, c, e.base+"/ui/requests/req_access"); !strings.Contains(page, "did not say when you logged in") || strings.Contains(page, "submitting sends you through") {
		t.Fatalf("item page: %s", page)
	}
	res, _ := get(t, c, e.base+"/ui/login?reauth=1&next=%2Fui%2Frequests%2Freq_access")
	// The person logs in at the form (here: the request it submits).
	authz, _ := url.Parse(res.Header.Get("Location"))
	q := authz.Query()
	q.Del("prompt")
	q.Set("login_hint", "bob")
	q.Set("groups", "security")
	authz.RawQuery = q.Encode()
	res, _ = get(t, c, authz.String())
	cb := res.Header.Get("Location")
	if !strings.HasPrefix(cb, e.base+"/ui/callback?") {
		t.Fatalf("issuer redirect: %d %s", res.StatusCode, cb)
	}
	res, body := get(t, c, cb)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "did not say when you logged in") || !strings.Contains(body, "step_up_without_auth_time") {
		t.Fatalf("step-up without auth_time: %d %s", res.StatusCode, body)
	}
}
