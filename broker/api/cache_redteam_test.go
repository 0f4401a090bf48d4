package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// Answers that carry a bearer credential are never stored by a cache in
// between (RFC 6749 5.1, RFC 9111 5.2.2.5): the session token of a login
// as well as the access token of a grant.
func TestAnswersWithTokensAreNotCached(t *testing.T) {
	ta := newTestAPI(t, 0, 0)
	raw, err := ta.iss.Mint(devissuer.Claims{Subject: "alice", Groups: []string{"ml"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"id_token": raw})
	req, _ := http.NewRequest("POST", ta.srv.URL+"/v1/login", strings.NewReader(string(body)))
	req.Host = "pam.example.com"
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sess struct {
		Token string `json:"token"`
	}
	json.NewDecoder(res.Body).Decode(&sess)
	res.Body.Close()
	if res.StatusCode != 200 || sess.Token == "" {
		t.Fatalf("login: %d", res.StatusCode)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("POST /v1/login answers a session token with Cache-Control %q, want no-store", cc)
	}
}

// Every other answer with a person's data, and errors, are not cached
// either; the public keys may be.
func TestAPIAnswersAreNotCached(t *testing.T) {
	ta := newTestAPI(t, 0, 0)
	tok := ta.session(t, "alice", "ml")
	for _, tc := range []struct{ method, path, auth, want string }{
		{"GET", "/v1/whoami", tok, "no-store"},
		{"GET", "/v1/requests", tok, "no-store"},
		{"GET", "/v1/sessions", tok, "no-store"},
		{"GET", "/v1/whoami", "", "no-store"},
		{"POST", "/v1/token", tok, "no-store"},
		{"GET", "/.well-known/jwks.json", "", "max-age=60"},
	} {
		req, _ := http.NewRequest(tc.method, ta.srv.URL+tc.path, nil)
		req.Host = "pam.example.com"
		if tc.auth != "" {
			req.Header.Set("Authorization", "Bearer "+tc.auth)
		}
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if cc := res.Header.Get("Cache-Control"); cc != tc.want {
			t.Errorf("%s %s (%d): Cache-Control %q, want %q", tc.method, tc.path, res.StatusCode, cc, tc.want)
		}
	}
}
