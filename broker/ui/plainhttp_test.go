package ui

import (
	"strings"
	"testing"
)

// A page on plain http cannot keep its session cookie from other ports of
// the same host (no Secure, no __Host-; cookies ignore ports): another
// local user's listener on 127.0.0.1 would be sent every approver's
// session. New refuses such a public_url unless it is allowed
// (ui.insecure_plaintext, serve --dev).
func TestNewRefusesPlainHTTPUnlessAllowed(t *testing.T) {
	for _, c := range []struct {
		url     string
		allowed bool
		refused bool
	}{
		{"http://127.0.0.1:8700", false, true},
		{"http://localhost:8700", false, true},
		{"HTTP://[::1]:8700", false, true},
		{"http://127.0.0.1:8700", true, false},
		{"https://127.0.0.1:8700", false, false},
		{"https://pam.example.com", false, false},
	} {
		_, err := New(Config{PublicURL: c.url, InsecurePlaintext: c.allowed})
		if err == nil {
			t.Fatalf("%s: New with no service succeeded", c.url)
		}
		refused := strings.Contains(err.Error(), "ui.public_url: plain http")
		if refused != c.refused {
			t.Errorf("%s (allowed %v): %v; want refused as plain http: %v", c.url, c.allowed, err, c.refused)
		}
		if refused && !strings.Contains(err.Error(), "ui.insecure_plaintext") {
			t.Errorf("%s: the refusal does not name the way out: %v", c.url, err)
		}
	}
}
