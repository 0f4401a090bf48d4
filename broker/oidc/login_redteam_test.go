package oidc_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/pamctl/pamctl/broker/oidc"
)

// A request to the CLI's loopback callback that carries a wrong (or no)
// state must not decide the login: the listener on 127.0.0.1 is reachable
// by every local user and, by a plain <img src>, by every web page the
// person has open (with a fixed redirect_port, as documented for Okta,
// the port is public knowledge). Today the first request to /callback
// flips the one-shot "handled" flag before the state is compared, so a
// single forged hit aborts `pamctl login` and every step-up re-login
// (`pamctl approve` then cannot get a fresh session): a denial of
// approvals that needs no credential at all.
func TestLoopbackCallbackIgnoresForgedState(t *testing.T) {
	iss := startIssuer(t, "/dev/oidc", sharedKey())
	follow := oidc.FollowRedirects(nil)
	open := func(raw string) error {
		u, err := url.Parse(raw)
		if err != nil {
			return err
		}
		redirect := u.Query().Get("redirect_uri")
		// The attacker: one GET with a state it made up.
		resp, err := http.Get(redirect + "?state=forged&code=x")
		if err == nil {
			resp.Body.Close()
		}
		// Then the person's browser arrives with the real redirect.
		return follow(raw)
	}
	raw, nonce, err := oidc.CodeFlow(loginCtx(t), devClient(iss, "alice", "ml"), open)
	if err != nil {
		t.Fatalf("a forged callback hit before the real one aborted the login: %v", err)
	}
	if raw == "" || nonce == "" {
		t.Fatal("no ID token")
	}
}
