package devissuer

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestLoginForm(t *testing.T) {
	const cb = "http://127.0.0.1:5555/ui/callback"
	page := func(iss *Issuer, p url.Values) (*http.Response, string) {
		t.Helper()
		resp, err := noRedirect.Get(iss.URL() + PathAuthorize + "?" + p.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	// Without the option nothing changes: no login_hint is login_required.
	plain, _ := start(t, "")
	p := authParams(cb)
	p.Del("login_hint")
	if _, loc := authorize(t, plain, p); loc == nil || loc.Query().Get("error") != "login_required" {
		t.Fatalf("without WithLoginForm: %v", loc)
	}

	iss, _ := start(t, "", WithLoginForm())
	// With it, a browser without login_hint is asked who it is; the form
	// carries the request over, escaped, and submits it with login_hint.
	p.Set("state", `"><script>alert(1)</script>`)
	resp, body := page(iss, p)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="login_hint"`) || !strings.Contains(body, `name="code_challenge" value="`+s256(testVerifier)+`"`) ||
		strings.Contains(body, "<script>alert") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("login form: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, `name="prompt"`) || strings.Contains(body, `name="max_age"`) {
		t.Fatal("the form resubmits prompt or max_age (it would loop)")
	}
	// prompt=login shows the form even with a login_hint (step-up)...
	p = authParams(cb)
	p.Set("prompt", "login")
	p.Set("max_age", "600")
	if resp, body := page(iss, p); resp.StatusCode != 200 || !strings.Contains(body, `value="alice"`) {
		t.Fatalf("prompt=login: %d %s", resp.StatusCode, body)
	}
	// ...and a login_hint without it still auto-consents (the CLI's flow).
	if _, loc := authorize(t, iss, authParams(cb)); loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("auto-consent with login_hint: %v", loc)
	}
	// A page on another site cannot drive the form.
	req, _ := http.NewRequest("GET", iss.URL()+PathAuthorize+"?"+authParams(cb).Encode(), nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := noRedirect.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site: %v %v", err, resp)
	}
}

func TestExtraRedirectURIs(t *testing.T) {
	if _, err := New("http://127.0.0.1:1", WithRedirectURIs("javascript:alert(1)")); err == nil {
		t.Fatal("a non-http redirect URI was accepted")
	}
	const webCB = "https://127.0.0.1:8700/ui/callback"
	iss, _ := start(t, "", WithRedirectURIs(webCB))
	if _, loc := authorize(t, iss, authParams(webCB)); loc == nil || loc.Query().Get("code") == "" || loc.Host != "127.0.0.1:8700" {
		t.Fatalf("listed redirect URI: %v", loc)
	}
	for _, other := range []string{"https://127.0.0.1:8700/ui/callback/x", "https://127.0.0.1:8701/ui/callback", "https://evil.example/ui/callback"} {
		if resp, loc := authorize(t, iss, authParams(other)); resp.StatusCode != http.StatusBadRequest || loc != nil {
			t.Errorf("%s: %s", other, resp.Status)
		}
	}
}
