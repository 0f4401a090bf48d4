package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// maxUserinfo bounds a userinfo response (a user with many groups can make a
// large one, but not megabytes).
const maxUserinfo = 1 << 20

// userinfo fetches the claims of the issuer's userinfo endpoint with the
// login's access token, for issuers with groups_source: userinfo. The answer
// must be about the ID token's subject: a mix-up (or an access token of
// someone else) would otherwise hand one person another's groups.
func (v *Verifier) userinfo(ctx context.Context, iss *trustedIssuer, tok *gooidc.IDToken, accessToken string) (map[string]any, error) {
	name := iss.cfg.Name
	if accessToken == "" {
		return nil, newVerifyError(ErrInvalidToken, ReasonUserinfo, name,
			errors.New("groups_source is userinfo but the login presented no access token (a pamctl older than the broker, or a workload token file)"))
	}
	// A code-flow ID token may bind the access token (at_hash): check it,
	// so a token from another login cannot be paired with this ID token.
	if tok.AccessTokenHash != "" {
		if err := tok.VerifyAccessToken(accessToken); err != nil {
			return nil, newVerifyError(ErrInvalidToken, ReasonUserinfo, name, fmt.Errorf("access token does not match the ID token's at_hash: %w", err))
		}
	}
	iss.mu.Lock()
	endpoint := iss.userinfoURL
	iss.mu.Unlock()
	if endpoint == "" {
		return nil, newVerifyError(ErrIssuerUnavailable, ReasonUserinfo, name,
			errors.New("groups_source is userinfo but the issuer's discovery document has no userinfo_endpoint"))
	}
	// The access token must not cross the network in clear text: the same
	// rule as issuer URLs (https, or http on loopback only).
	if err := validateIssuerURL(endpoint); err != nil {
		return nil, newVerifyError(ErrIssuerUnavailable, ReasonUserinfo, name, fmt.Errorf("userinfo_endpoint %q refused: %w", truncate(endpoint, 200), err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, newVerifyError(ErrIssuerUnavailable, ReasonUserinfo, name, fmt.Errorf("userinfo request: %w", err))
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, newVerifyError(ErrIssuerUnavailable, ReasonIssuerUnavailable, name, fmt.Errorf("userinfo: %w", err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserinfo+1))
	if err != nil {
		return nil, newVerifyError(ErrIssuerUnavailable, ReasonIssuerUnavailable, name, fmt.Errorf("userinfo: %w", err))
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, newVerifyError(ErrInvalidToken, ReasonUserinfo, name, fmt.Errorf("userinfo answered %s", resp.Status))
	case resp.StatusCode/100 != 2:
		return nil, newVerifyError(ErrIssuerUnavailable, ReasonIssuerUnavailable, name, fmt.Errorf("userinfo answered %s", resp.Status))
	case len(body) > maxUserinfo:
		return nil, newVerifyError(ErrInvalidToken, ReasonUserinfo, name, fmt.Errorf("userinfo response larger than %d bytes", maxUserinfo))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		// Signed (application/jwt) userinfo would need its own key checks;
		// the IdPs documented in docs/identity.md answer JSON.
		return nil, newVerifyError(ErrInvalidToken, ReasonUserinfo, name, fmt.Errorf("userinfo answered content type %q, want application/json", truncate(mt, 60)))
	}
	var claims map[string]any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&claims); err != nil {
		return nil, newVerifyError(ErrInvalidToken, ReasonUserinfo, name, fmt.Errorf("userinfo is not a JSON object: %w", err))
	}
	sub, _ := claims["sub"].(string)
	if sub == "" || sub != tok.Subject {
		return nil, newVerifyError(ErrInvalidToken, ReasonUserinfoSubject, name,
			errors.New("userinfo sub differs from the ID token's sub"))
	}
	return claims, nil
}
