package cli

import (
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/oidc"
)

// TestConfigRefusesWhatTheVerifierRefuses: config check validates the
// issuers as serve's start does (oidc.NewVerifier): two issuers at one url
// (the broker picks an issuer by a token's iss, so the second could never
// be used), whatever their kind, and one name twice.
func TestConfigRefusesWhatTheVerifierRefuses(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"person and workload at one url",
			"issuers:\n  - { name: corp, url: https://idp.example.com, client_id: pamctl }\n  - { name: gha, url: https://idp.example.com, audience: pamctl, workload: true }\n",
			`issuer "gha": url https://idp.example.com is already used by issuer "corp"`},
		{"two persons at one url",
			"issuers:\n  - { name: a, url: https://idp.example.com, client_id: x }\n  - { name: b, url: https://idp.example.com, client_id: y }\n",
			`issuer "b": url https://idp.example.com is already used by issuer "a"`},
		{"one name twice",
			"issuers:\n  - { name: a, url: https://idp.example.com, client_id: x }\n  - { name: a, url: https://other.example.com, client_id: y }\n",
			`issuer "a": name is used twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadYAML(t, c.yaml)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("config: %v, want an error with %q", err, c.want)
			}
			if _, verr := oidc.NewVerifier(cfg.Issuers, nil, nil); verr == nil || !strings.Contains(verr.Error(), c.want) {
				t.Errorf("verifier: %v, want an error with %q", verr, c.want)
			}
		})
	}
	// Distinct urls (a trailing slash is another issuer to OIDC) pass both.
	ok := "issuers:\n  - { name: corp, url: https://idp.example.com, client_id: pamctl }\n  - { name: gha, url: https://idp.example.com/gha, audience: pamctl, workload: true }\n"
	cfg, err := loadYAML(t, ok)
	if err != nil {
		t.Fatalf("distinct urls refused: %v", err)
	}
	if _, err := oidc.NewVerifier(cfg.Issuers, nil, nil); err != nil {
		t.Fatalf("verifier refused distinct urls: %v", err)
	}
}
