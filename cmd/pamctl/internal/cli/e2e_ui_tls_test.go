package cli

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// TestWebUIOverDevTLS: under serve --dev --tls the page's callback is
// https, the dev issuer accepts it (exact match), and the session cookie is
// a Secure __Host- cookie.
func TestWebUIOverDevTLS(t *testing.T) {
	s, files := startTLSServer(t)
	base := s.app.BrokerURL()
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("broker at %s", base)
	}
	c := trusting(t, files.CAFile)
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(u string) *http.Response {
		t.Helper()
		res, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	res := get(base + "/ui/")
	res = get(base + res.Header.Get("Location")) // /ui/login -> the issuer
	authz := res.Header.Get("Location")
	if !strings.Contains(authz, "redirect_uri="+url.QueryEscape(base+"/ui/callback")) {
		t.Fatalf("authorization request: %s", authz)
	}
	res = get(authz + "&login_hint=bob&groups=security")
	cb := res.Header.Get("Location")
	if !strings.HasPrefix(cb, base+"/ui/callback?") {
		t.Fatalf("issuer answered %d %s", res.StatusCode, cb)
	}
	res = get(cb)
	var sc *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "__Host-pamctl-ui" && ck.Value != "" {
			sc = ck
		}
	}
	if res.StatusCode != http.StatusSeeOther || sc == nil || !sc.Secure || !sc.HttpOnly || sc.Path != "/" || sc.Domain != "" {
		t.Fatalf("callback: %d, cookie %+v", res.StatusCode, sc)
	}
	if res := get(base + "/ui/"); res.StatusCode != 200 || !strings.Contains(res.Header.Get("Strict-Transport-Security"), "max-age") {
		t.Fatalf("queue over TLS: %d %v", res.StatusCode, res.Header)
	}
}
