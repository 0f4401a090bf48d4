package oidc_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

func devClient(iss *testIssuer, user, groups string) oidc.ClientConfig {
	return oidc.ClientConfig{
		IssuerURL:       iss.URL(),
		ClientID:        "pamctl",
		ExtraAuthParams: map[string]string{"login_hint": user, "groups": groups},
		HTTPClient:      iss.srv.Client(),
	}
}

func loginCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rewriteQuery returns an opener that edits the authorization URL before
// following it, standing in for an attacker or a broken client.
func rewriteQuery(edit func(url.Values)) func(string) error {
	follow := oidc.FollowRedirects(nil)
	return func(raw string) error {
		u, err := url.Parse(raw)
		if err != nil {
			return err
		}
		q := u.Query()
		edit(q)
		u.RawQuery = q.Encode()
		return follow(u.String())
	}
}

func TestCodeFlowEndToEnd(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "/dev/oidc", sharedKey(), devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock, corpConfig(iss))

	var seen *url.URL
	open := func(raw string) error {
		seen, _ = url.Parse(raw)
		return oidc.FollowRedirects(nil)(raw)
	}
	raw, nonce, err := oidc.CodeFlow(loginCtx(t), devClient(iss, "alice", "ml,security"), open)
	if err != nil {
		t.Fatalf("CodeFlow: %v", err)
	}
	q := seen.Query()
	redirect, _ := url.Parse(q.Get("redirect_uri"))
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 ||
		q.Get("state") == "" || q.Get("nonce") != nonce || nonce == "" ||
		redirect.Hostname() != "127.0.0.1" || redirect.Path != oidc.CallbackPath ||
		!slices.Contains(strings.Fields(q.Get("scope")), "openid") {
		t.Errorf("authorization request = %v", q)
	}

	id, err := v.Verify(context.Background(), raw, nonce)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Subject != "alice" || id.Email != "alice@example.com" || !slices.Equal(id.Groups, []string{"ml", "security"}) || id.Kind != oidc.KindUser {
		t.Errorf("identity = %+v", id)
	}
	if _, err := v.Verify(context.Background(), raw, "another-login"); !errors.Is(err, oidc.ErrInvalidToken) {
		t.Errorf("token accepted with another login's nonce: %v", err)
	}

	// Two logins never share state, nonce or PKCE challenge.
	var second *url.URL
	_, nonce2, err := oidc.CodeFlow(loginCtx(t), devClient(iss, "alice", ""), func(raw string) error {
		second, _ = url.Parse(raw)
		return oidc.FollowRedirects(nil)(raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if second.Query().Get(k) == q.Get(k) {
			t.Errorf("%s reused across logins", k)
		}
	}
	if nonce2 == nonce {
		t.Error("nonce reused")
	}
}

func TestCodeFlowRefusesTamperedState(t *testing.T) {
	iss := startIssuer(t, "", sharedKey())
	_, _, err := oidc.CodeFlow(loginCtx(t), devClient(iss, "alice", ""), rewriteQuery(func(q url.Values) {
		q.Set("state", q.Get("state")+"x")
	}))
	if !errors.Is(err, oidc.ErrStateMismatch) {
		t.Fatalf("err = %v, want ErrStateMismatch", err)
	}
}

func TestCodeFlowPKCEMismatchRefusedByTokenEndpoint(t *testing.T) {
	iss := startIssuer(t, "", sharedKey())
	// Swap the challenge for one of a verifier the client does not hold: the
	// issuer must refuse the client's real verifier at /token.
	sum := sha256.Sum256([]byte(strings.Repeat("a", 43)))
	other := base64.RawURLEncoding.EncodeToString(sum[:])
	_, _, err := oidc.CodeFlow(loginCtx(t), devClient(iss, "alice", ""), rewriteQuery(func(q url.Values) {
		q.Set("code_challenge", other)
	}))
	var pe *oidc.ProviderError
	if !errors.As(err, &pe) || pe.Code != "invalid_grant" || !strings.Contains(pe.Description, "code_verifier") {
		t.Fatalf("err = %v, want invalid_grant about the code_verifier", err)
	}

	// Without a challenge the issuer refuses at /authorize.
	_, _, err = oidc.CodeFlow(loginCtx(t), devClient(iss, "alice", ""), rewriteQuery(func(q url.Values) {
		q.Del("code_challenge")
	}))
	if !errors.As(err, &pe) || pe.Code != "invalid_request" {
		t.Fatalf("err = %v, want invalid_request", err)
	}
}

func TestCodeFlowProviderErrorIsShownSafely(t *testing.T) {
	iss := startIssuer(t, "", sharedKey())
	cc := devClient(iss, "", "")
	cc.ExtraAuthParams = nil // no login_hint: the dev issuer refuses the login
	_, _, err := oidc.CodeFlow(loginCtx(t), cc, oidc.FollowRedirects(nil))
	var pe *oidc.ProviderError
	if !errors.As(err, &pe) || pe.Code != "login_required" || !strings.Contains(err.Error(), "login_hint") {
		t.Fatalf("err = %v", err)
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("message has control characters: %q", err)
	}
}

func TestCodeFlowEndsWithContext(t *testing.T) {
	iss := startIssuer(t, "", sharedKey())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The "browser" opens but the user never comes back.
	_, _, err := oidc.CodeFlow(ctx, devClient(iss, "alice", ""), func(string) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCodeFlowOpenerFailure(t *testing.T) {
	iss := startIssuer(t, "", sharedKey())
	boom := errors.New("no display")
	_, _, err := oidc.CodeFlow(loginCtx(t), devClient(iss, "alice", ""), func(string) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the opener's error", err)
	}
}

func TestClientConfigValidation(t *testing.T) {
	iss := startIssuer(t, "", sharedKey())
	for name, cc := range map[string]oidc.ClientConfig{
		"no issuer":      {ClientID: "pamctl"},
		"no client":      {IssuerURL: iss.URL()},
		"plain http":     {IssuerURL: "http://idp.example.com", ClientID: "pamctl"},
		"reserved param": {IssuerURL: iss.URL(), ClientID: "pamctl", ExtraAuthParams: map[string]string{"state": "fixed"}},
		"bad port":       {IssuerURL: iss.URL(), ClientID: "pamctl", RedirectPort: 70000},
	} {
		if _, _, err := oidc.CodeFlow(loginCtx(t), cc, oidc.FollowRedirects(nil)); err == nil {
			t.Errorf("%s: CodeFlow accepted the config", name)
		}
		if _, err := oidc.DeviceFlow(loginCtx(t), cc, func(string, string) {}); err == nil {
			t.Errorf("%s: DeviceFlow accepted the config", name)
		}
	}
}

func TestDeviceFlowEndToEnd(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "/dev/oidc", sharedKey(), devissuer.WithClock(clock.Now), devissuer.WithPollInterval(0))
	v := newVerifier(t, clock, corpConfig(iss))
	cc := devClient(iss, "", "")
	cc.ExtraAuthParams = nil

	approved := make(chan error, 1)
	show := func(uri, code string) {
		if uri != iss.URL()+devissuer.PathDevice || code == "" {
			approved <- errors.New("bad verification URI or code: " + uri + " " + code)
			return
		}
		// The person approves from another device while the CLI polls.
		go func() {
			resp, err := http.Get(uri + "?" + url.Values{
				"user_code": {code}, "login_hint": {"alice"}, "groups": {"ml"},
			}.Encode())
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = errors.New("approval answered " + resp.Status)
				}
			}
			approved <- err
		}()
	}
	raw, err := oidc.DeviceFlow(loginCtx(t), cc, show)
	if err != nil {
		t.Fatalf("DeviceFlow: %v", err)
	}
	if err := <-approved; err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), raw, "")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Subject != "alice" || !slices.Equal(id.Groups, []string{"ml"}) || id.Issuer != "corp" {
		t.Errorf("identity = %+v", id)
	}
}

func TestDeviceFlowExpiredCode(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now), devissuer.WithDeviceTTL(time.Minute))
	cc := devClient(iss, "", "")
	cc.ExtraAuthParams = nil
	// Nobody approves; the code's lifetime passes before the first poll.
	_, err := oidc.DeviceFlow(loginCtx(t), cc, func(string, string) { clock.Advance(time.Minute) })
	var pe *oidc.ProviderError
	if !errors.As(err, &pe) || pe.Code != "expired_token" {
		t.Fatalf("err = %v, want expired_token", err)
	}
}

func TestDeviceFlowUnsupported(t *testing.T) {
	// An issuer whose discovery document has no device endpoint.
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": base, "authorization_endpoint": base + "/auth",
			"token_endpoint": base + "/token", "jwks_uri": base + "/keys",
		})
	})
	srv.Start()
	t.Cleanup(srv.Close)
	_, err := oidc.DeviceFlow(loginCtx(t), oidc.ClientConfig{IssuerURL: base, ClientID: "pamctl"}, func(string, string) {
		t.Error("show called")
	})
	if !errors.Is(err, oidc.ErrDeviceFlowUnsupported) {
		t.Fatalf("err = %v", err)
	}
}

func TestFollowRedirectsKeepsCodesOutOfErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/final?code=SECRET-CODE&state=SECRET-STATE", http.StatusFound)
			return
		}
		http.Error(w, "refused", http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	err := oidc.FollowRedirects(srv.Client())(srv.URL + "/start")
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "/final") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error quotes the query: %v", err)
	}
	if err := oidc.FollowRedirects(nil)(srv.URL + "/nowhere"); err == nil {
		t.Error("a 400 page counted as success")
	}
}

func TestOpenBrowserRefusesNonHTTP(t *testing.T) {
	for _, u := range []string{"file:///etc/passwd", "javascript:alert(1)", "-flag", "myapp://x", ""} {
		if err := oidc.OpenBrowser(u); err == nil {
			t.Errorf("OpenBrowser(%q) accepted", u)
		}
	}
}

// A step-up login says on the browser's last page what it was for.
func TestCodeFlowPageSaysWhatTheLoginIsFor(t *testing.T) {
	iss := startIssuer(t, "", sharedKey())
	c := devClient(iss, "alice", "")
	c.Purpose = "approving req_1 (bob: <model:gpt-4o>)"
	pages := make(chan string, 1)
	_, _, err := oidc.CodeFlow(loginCtx(t), c, func(raw string) error {
		res, err := http.Get(raw)
		if err != nil {
			pages <- err.Error()
			return err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		pages <- string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The flow ends when the redirect arrives; the page follows.
	page := <-pages
	if !strings.Contains(page, "login complete, for approving req_1 (bob: &lt;model:gpt-4o&gt;).") {
		t.Fatalf("page: %s", page)
	}
}
