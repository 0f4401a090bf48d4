package oidc

import (
	"slices"
	"strings"
	"testing"
)

func TestBrowserCommand(t *testing.T) {
	const u = "https://idp.example.com/authorize?a=b&c=d"
	cases := []struct {
		goos, env string
		name      string
		args      []string
	}{
		{"linux", "", "xdg-open", []string{u}},
		{"freebsd", "", "xdg-open", []string{u}},
		{"darwin", "", "open", []string{u}},
		{"windows", "", "rundll32", []string{"url.dll,FileProtocolHandler", u}},
		{"linux", "firefox:chromium", "firefox", []string{u}},
		{"plan9", "", "", nil},
	}
	for _, tc := range cases {
		name, args := browserCommand(tc.goos, tc.env, u)
		if name != tc.name || !slices.Equal(args, tc.args) {
			t.Errorf("%s/%q: %s %v, want %s %v", tc.goos, tc.env, name, args, tc.name, tc.args)
		}
	}
}

func TestWithoutQuery(t *testing.T) {
	got := withoutQuery("http://user:pw@127.0.0.1:5555/callback?code=SECRET&state=S#frag")
	if got != "http://127.0.0.1:5555/callback" {
		t.Errorf("withoutQuery = %q", got)
	}
}

func TestProviderErrorSanitizes(t *testing.T) {
	e := &ProviderError{Code: "access_denied", Description: "line1\nline2\x1b[31m" + strings.Repeat("x", 500)}
	msg := e.Error()
	if strings.ContainsAny(msg, "\n\x1b") || len(msg) > 320 || !strings.Contains(msg, "access_denied") {
		t.Errorf("message = %q", msg)
	}
}
