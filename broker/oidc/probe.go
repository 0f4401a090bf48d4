package oidc

import (
	"context"
	"fmt"
	"net/http"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// Discovery is what CheckDiscovery read of a discovery document besides
// what it checks.
type Discovery struct {
	// ClaimsSupported is claims_supported; nil when the document has none.
	ClaimsSupported []string
}

// CheckDiscovery fetches issuerURL's discovery document, as the first login
// against it would, and checks that it names this issuer and a JWKS. It
// answers whether logins through the issuer can work now; it caches
// nothing. client nil: http.DefaultClient (give it a timeout).
func CheckDiscovery(ctx context.Context, client *http.Client, issuerURL string) (Discovery, error) {
	if client == nil {
		client = http.DefaultClient
	}
	provider, err := gooidc.NewProvider(gooidc.ClientContext(ctx, client), issuerURL)
	if err != nil {
		return Discovery{}, fmt.Errorf("oidc: discover %s: %w", issuerURL, err)
	}
	var meta struct {
		JWKSURL         string   `json:"jwks_uri"`
		ClaimsSupported []string `json:"claims_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return Discovery{}, fmt.Errorf("oidc: discover %s: %w", issuerURL, err)
	}
	if meta.JWKSURL == "" {
		return Discovery{}, fmt.Errorf("oidc: discover %s: no jwks_uri", issuerURL)
	}
	return Discovery{ClaimsSupported: meta.ClaimsSupported}, nil
}
