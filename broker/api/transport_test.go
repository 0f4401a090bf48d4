package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestCheckServer(t *testing.T) {
	for _, s := range []string{
		"https://broker.example.com", "https://10.0.0.1:8730", "http://127.0.0.1:8730", "http://127.0.0.2",
		"http://localhost:8730", "http://LocalHost.:1", "http://[::1]:8730", "HTTP://127.0.0.1:1",
	} {
		if err := CheckServer(s); err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
	for _, s := range []string{
		"http://192.0.2.1:18730", "http://10.255.255.1:18730", "http://broker:8730", "http://localhost.evil.example",
		"http://[2001:db8::1]:8730", "http://[fe80::1%25eth0]:8730", "http://0.0.0.0:8730", "http://127.0.0.1.nip.io",
	} {
		err := CheckServer(s)
		if !errors.Is(err, ErrPlaintextServer) || !strings.Contains(err.Error(), "use https://") {
			t.Errorf("%s: got %v", s, err)
		}
	}
	for _, s := range []string{"ftp://127.0.0.1", "127.0.0.1:8730", ""} {
		if err := CheckServer(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// An https broker that redirects to http:// (or to another host) gets
// neither the session header nor the ID token in a re-sent body there.
func TestRedirectCarriesNoCredentialsElsewhere(t *testing.T) {
	var leaked atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer plain.Close()
	var target string
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect) // 307 re-sends the body
	}))
	defer tls.Close()
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
	}))
	defer other.Close()
	for _, to := range []string{plain.URL, other.URL} {
		target = to
		c := &Client{BaseURL: tls.URL, Token: "pamctl_s_secret", HTTP: tls.Client()}
		if _, err := c.Login(t.Context(), "eyJ.id.token", ""); err == nil || !strings.Contains(err.Error(), "does not follow a redirect") {
			t.Fatalf("login redirected to %s: %v", to, err)
		}
		if _, err := c.stream(t.Context(), "/v1/revocations", nil); err == nil || !strings.Contains(err.Error(), "does not follow a redirect") {
			t.Fatalf("stream redirected to %s: %v", to, err)
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("%d requests reached the redirect target", n)
	}
	// A same-origin redirect is still followed.
	same := httptest.NewTLSServer(nil)
	defer same.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/old/v1/info", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/v1/info", http.StatusFound) })
	mux.HandleFunc("/v1/info", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) })
	same.Config.Handler = mux
	c := &Client{BaseURL: same.URL + "/old", HTTP: same.Client()}
	if _, err := c.Info(t.Context()); err != nil {
		t.Fatalf("same-origin redirect: %v", err)
	}
}
