// Package oidc owns pamctl's identity layer: verifying OpenID Connect ID
// tokens from the configured issuers on the broker side (Verifier, built on
// go-oidc), turning them into an Identity (subject, email, groups, issuer,
// user or service kind), and the CLI-side login flows that obtain a raw ID
// token (authorization code + PKCE with a loopback redirect, and the device
// authorization grant). The CLI never trusts its own copy of a token: it sends
// the raw token to the broker, which verifies it here.
//
// The embedded development issuer lives in the devissuer subpackage.
package oidc
