package oidc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/pamctl/pamctl/broker/safetext"
)

// Identity kinds.
const (
	KindUser    = "user"
	KindService = "service"
)

// Identity is who a verified ID token says the caller is.
type Identity struct {
	Subject string
	// Display is what people see (display_claims: preferred_username,
	// email, name by default; the subject when none is set). Never used
	// for access decisions.
	Display   string
	Email     string
	Groups    []string
	Issuer    string // configured issuer name
	IssuerURL string
	Kind      string // KindUser or KindService
	Act       string // the person a workload acts for (IssuerConfig.ActClaim), if any
	ActFor    string // who Act is at a person issuer (IssuerConfig.ActPeople), if mapped
	Expiry    time.Time
	// AuthTime is the ID token's auth_time: when the person last
	// authenticated at the IdP. Zero when the token has none (such a
	// login cannot pass step-up), except for an issuer with
	// step_up_without_auth_time, or a workload issuer (no person
	// authenticates there; its platform mints each token), whose logins
	// without one are taken as authenticated now, at verification.
	AuthTime time.Time
}

// asymmetricAlgs are the only signature algorithms accepted. Symmetric (HS*)
// and "none" are refused before anything else looks at the token.
var asymmetricAlgs = []string{
	gooidc.RS256, gooidc.RS384, gooidc.RS512,
	gooidc.PS256, gooidc.PS384, gooidc.PS512,
	gooidc.ES256, gooidc.ES384, gooidc.ES512,
	gooidc.EdDSA,
}

// ClockSkew is how far an issuer's clock may run ahead of the broker's: a
// token's iat may be this far in the future, as go-oidc allows for nbf.
// (A future auth_time is taken as the login's time: broker.Service.Login.)
const ClockSkew = 5 * time.Minute

// maxTokenSize bounds the raw token accepted by Verify.
const maxTokenSize = 16 << 10

// Verifier verifies ID tokens from a fixed set of trusted issuers. It is safe
// for concurrent use.
type Verifier struct {
	client *http.Client
	now    func() time.Time
	byURL  map[string]*trustedIssuer
}

// trustedIssuer holds one issuer's config and, once discovery succeeded, its
// go-oidc verifier and key set.
type trustedIssuer struct {
	cfg IssuerConfig // with defaults

	mu          sync.Mutex
	verifier    *gooidc.IDTokenVerifier
	keys        *gooidc.RemoteKeySet
	userinfoURL string
}

// NewVerifier validates the issuers and returns a Verifier. It does not
// contact them: discovery happens on first use and is retried on the next
// call after a failure, so the broker starts while an IdP is down. client is
// used for discovery and JWKS (nil: a client with a 10 s timeout); now is the
// clock for expiry checks (nil: time.Now).
func NewVerifier(issuers []IssuerConfig, client *http.Client, now func() time.Time) (*Verifier, error) {
	if len(issuers) == 0 {
		return nil, errors.New("oidc: no issuers configured")
	}
	if err := errors.Join(ValidateIssuers(issuers)...); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	v := &Verifier{client: client, now: now, byURL: map[string]*trustedIssuer{}}
	for _, c := range issuers {
		v.byURL[c.URL] = &trustedIssuer{cfg: c.WithDefaults()}
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// ValidateIssuers reports every problem with a set of trusted issuers, one
// error per issuer and problem, prefixed issuers[i]: each issuer's own
// (IssuerConfig.Validate), a name used twice, and a url another issuer
// already has (a token's iss picks its issuer, so the second could never
// verify a token, whatever its kind). NewVerifier refuses what it reports,
// and `pamctl config check` runs it, so the check passes exactly what
// serve's start accepts.
func ValidateIssuers(issuers []IssuerConfig) []error {
	var errs []error
	names := map[string]bool{}
	byURL := map[string]string{}
	for i, c := range issuers {
		if err := c.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("issuers[%d]: %w", i, err))
			continue
		}
		if names[c.Name] {
			errs = append(errs, fmt.Errorf("issuers[%d]: issuer %q: name is used twice", i, c.Name))
		}
		names[c.Name] = true
		if prev, dup := byURL[c.URL]; dup {
			errs = append(errs, fmt.Errorf("issuers[%d]: issuer %q: url %s is already used by issuer %q; one url names one issuer: drop one, or give each its own issuer url", i, c.Name, c.URL, prev))
			continue
		}
		byURL[c.URL] = c.Name
	}
	return errs
}

// Trusts reports whether the verifier has an issuer named name at url:
// what an identity of any other issuer holds (a session, a grant) is no
// longer vouched for, nor is one of an issuer whose name now points
// elsewhere.
func (v *Verifier) Trusts(name, url string) bool {
	is, ok := v.byURL[url]
	return ok && is.cfg.Name == name
}

// Verify checks rawIDToken and returns the identity it carries. The issuer is
// picked by the token's (unverified) iss claim; go-oidc then verifies the
// signature against the issuer's JWKS, iss, aud and exp. nonce must equal
// the token's nonce: "" only for tokens without one (workload tokens).
// Errors are *VerifyError values wrapping ErrUnknownIssuer, ErrInvalidToken
// or ErrIssuerUnavailable.
func (v *Verifier) Verify(ctx context.Context, rawIDToken, nonce string) (Identity, error) {
	return v.VerifyLogin(ctx, rawIDToken, nonce, "")
}

// VerifyLogin is Verify for an interactive login that also presents its
// access token. For an issuer with groups_source: userinfo the broker calls
// the issuer's userinfo endpoint with accessToken, requires the answer's sub
// to equal the ID token's, and takes the groups from it; when the ID token
// has an at_hash, accessToken must match it. For other issuers accessToken
// is ignored and never sent anywhere.
func (v *Verifier) VerifyLogin(ctx context.Context, rawIDToken, nonce, accessToken string) (Identity, error) {
	hdr, pre, err := parseUnverified(rawIDToken)
	if err != nil {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonMalformed, "", err)
	}
	if !slices.Contains(asymmetricAlgs, hdr.Alg) {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonUnsupportedAlg, "",
			fmt.Errorf("alg %q refused", truncate(hdr.Alg, 20)))
	}
	iss, ok := v.byURL[pre.Issuer]
	if !ok {
		return Identity{}, newVerifyError(ErrUnknownIssuer, ReasonUnknownIssuer, "",
			fmt.Errorf("iss %q is not configured", truncate(pre.Issuer, 200)))
	}
	name := iss.cfg.Name

	verifier, keys, err := iss.load(ctx, v.client, v.now)
	if err != nil {
		return Identity{}, newVerifyError(ErrIssuerUnavailable, ReasonIssuerUnavailable, name, err)
	}
	// Check the signature on its own first, so a forged token is reported as
	// such whatever else is wrong with it. The key set caches keys, so the
	// second check inside verifier.Verify costs no round trip.
	if _, err := keys.VerifySignature(ctx, rawIDToken); err != nil {
		// go-oidc prefixes JWKS fetch failures with "fetching keys".
		if strings.HasPrefix(err.Error(), "fetching keys") {
			return Identity{}, newVerifyError(ErrIssuerUnavailable, ReasonIssuerUnavailable, name, err)
		}
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonBadSignature, name, err)
	}
	tok, err := verifier.Verify(ctx, rawIDToken)
	if err != nil {
		var expired *gooidc.TokenExpiredError
		switch {
		case errors.As(err, &expired):
			return Identity{}, newVerifyError(ErrInvalidToken, ReasonExpired, name, err)
		case !slices.Contains(pre.Audience, iss.cfg.Audience):
			return Identity{}, newVerifyError(ErrInvalidToken, ReasonWrongAudience, name, err)
		case !positiveNumber(pre.IssuedAt):
			return Identity{}, newVerifyError(ErrInvalidToken, ReasonMissingIssuedAt, name, err)
		default:
			return Identity{}, newVerifyError(ErrInvalidToken, ReasonInvalid, name, err)
		}
	}
	// A token with a nonce was issued to one interactive login: only that
	// login, which knows the nonce, may present it (a captured token is
	// not a login). Workload tokens carry none.
	if (nonce != "" || tok.Nonce != "") && subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(nonce)) != 1 {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonNonceMismatch, name, errors.New("nonce differs from the login's"))
	}
	if tok.Subject == "" {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonMissingSubject, name, errors.New("empty sub"))
	}
	var claims map[string]any
	if err := decodeClaims(tok, &claims); err != nil {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonMalformed, name, err)
	}
	// OIDC Core 2 requires iat. go-oidc reads an absent or null one as the
	// zero time and a negative one as a date before 1970, and checks
	// neither: a token that does not say when it was issued is refused.
	if !positiveNumber(claims["iat"]) {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonMissingIssuedAt, name,
			errors.New("iat is missing or not a positive number of seconds"))
	}
	var userinfo map[string]any
	if iss.cfg.GroupsSource == GroupsFromUserinfo {
		if userinfo, err = v.userinfo(ctx, iss, tok, accessToken); err != nil {
			return Identity{}, err
		}
	}
	// go-oidc checks exp, and nbf with ClockSkew, but not iat: a token
	// issued in the future was minted by a clock that is wrong, or in
	// advance to outlive the person's access.
	if now := v.now(); tok.IssuedAt.After(now.Add(ClockSkew)) {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonNotYetValid, name,
			fmt.Errorf("iat is %s ahead of the broker's clock", tok.IssuedAt.Sub(now).Round(time.Second)))
	}
	id, err := iss.identity(tok, claims, userinfo)
	if err == nil && id.AuthTime.IsZero() && (iss.cfg.StepUpWithoutAuthTime || iss.cfg.Workload) {
		id.AuthTime = v.now().UTC()
	}
	return id, err
}

// load discovers the issuer on first use. A failed discovery is not cached:
// the next call tries again.
func (t *trustedIssuer) load(ctx context.Context, client *http.Client, now func() time.Time) (*gooidc.IDTokenVerifier, *gooidc.RemoteKeySet, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.verifier != nil {
		return t.verifier, t.keys, nil
	}
	provider, err := gooidc.NewProvider(gooidc.ClientContext(ctx, client), t.cfg.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("discover %s: %w", t.cfg.URL, err)
	}
	var meta struct {
		JWKSURL    string   `json:"jwks_uri"`
		Algorithms []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, nil, fmt.Errorf("discover %s: %w", t.cfg.URL, err)
	}
	if meta.JWKSURL == "" {
		return nil, nil, fmt.Errorf("discover %s: no jwks_uri", t.cfg.URL)
	}
	t.userinfoURL = provider.UserInfoEndpoint()
	// Accept what the issuer advertises, restricted to asymmetric algorithms;
	// all asymmetric ones when it advertises none.
	algs := slices.DeleteFunc(slices.Clone(meta.Algorithms), func(a string) bool {
		return !slices.Contains(asymmetricAlgs, a)
	})
	if len(algs) == 0 {
		algs = slices.Clone(asymmetricAlgs)
	}
	// The key set outlives this call, so it gets a background context that
	// carries only the HTTP client.
	keys := gooidc.NewRemoteKeySet(gooidc.ClientContext(context.Background(), client), meta.JWKSURL)
	t.keys = keys
	t.verifier = gooidc.NewVerifier(t.cfg.URL, keys, &gooidc.Config{
		ClientID:             t.cfg.Audience,
		SupportedSigningAlgs: algs,
		Now:                  now,
	})
	return t.verifier, t.keys, nil
}

// equalFoldASCII reports whether a and b are equal with the ASCII letters
// compared case-insensitively and every other byte exactly.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// identity applies the issuer's claim filters and builds the Identity.
// userinfo is nil unless the issuer takes its groups from userinfo.
func (t *trustedIssuer) identity(tok *gooidc.IDToken, claims, userinfo map[string]any) (Identity, error) {
	c := t.cfg
	email, _ := claims["email"].(string)
	// Policies and the no-self-review rule match people by email, so an
	// address counts only when the issuer says it verified it: an IdP that
	// lets users edit their email must not let them become someone else.
	// Everywhere below, an unverified address is no address.
	verified := emailVerified(claims)
	if !verified {
		email = ""
	}
	if email != "" && !plainEmail(email) {
		// Shown trimmed or with its invisible characters escaped, such an
		// address would pass for a namesake's while matching no policy
		// entry: the IdP's record is wrong, and nobody is admitted by it.
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonInvalidEmail, c.Name,
			errors.New("email has spaces, control or invisible characters"))
	}
	if len(c.AllowedDomains) > 0 {
		if !verified {
			return Identity{}, newVerifyError(ErrInvalidToken, ReasonDomainNotAllowed, c.Name,
				errors.New("email_verified is not true: the email is unverified"))
		}
		at := strings.LastIndexByte(email, '@')
		domain := ""
		if at >= 0 {
			domain = email[at+1:]
		}
		// ASCII letters in any case, every other character exactly:
		// Unicode case mapping would let another domain in (the Kelvin
		// sign K lowers to k, the long s ſ folds to s).
		if !slices.ContainsFunc(c.AllowedDomains, func(d string) bool { return equalFoldASCII(d, domain) }) {
			return Identity{}, newVerifyError(ErrInvalidToken, ReasonDomainNotAllowed, c.Name,
				fmt.Errorf("email domain %q not in allowed_domains", truncate(domain, 100)))
		}
	}
	for _, k := range sortedKeys(c.RequiredClaims) {
		if !claimHas(claims[k], c.RequiredClaims[k]) {
			e := newVerifyError(ErrInvalidToken, ReasonClaimMismatch, c.Name, fmt.Errorf("claim %q missing or different", k))
			e.Claim = k
			return Identity{}, e
		}
	}
	groupsFrom, where := claims, "ID token"
	if userinfo != nil {
		groupsFrom, where = userinfo, "userinfo response"
	}
	if _, present := groupsFrom[c.GroupsClaim]; !present && hasOverage(groupsFrom, c.GroupsClaim) {
		// Entra puts a reference to Microsoft Graph instead of the list when
		// a user has too many groups. Going on with no groups would quietly
		// drop the user's access (or approval rights): refuse and say why.
		e := newVerifyError(ErrInvalidToken, ReasonGroupsOverage, c.Name,
			fmt.Errorf("%s has _claim_names.%s (group overage) and no %s claim", where, c.GroupsClaim, c.GroupsClaim))
		e.Claim = c.GroupsClaim
		return Identity{}, e
	}
	groups, ok := stringList(groupsFrom[c.GroupsClaim])
	if !ok {
		e := newVerifyError(ErrInvalidToken, ReasonInvalidGroupsClaim, c.Name,
			fmt.Errorf("claim %q of the %s has type %T", c.GroupsClaim, where, groupsFrom[c.GroupsClaim]))
		e.Claim = c.GroupsClaim
		return Identity{}, e
	}
	kind := KindUser
	if c.Workload {
		kind = KindService
	}
	authTime, err := authTimeClaim(claims)
	if err != nil {
		return Identity{}, newVerifyError(ErrInvalidToken, ReasonMalformed, c.Name, err)
	}
	act, actFor := "", ""
	if c.ActClaim != "" {
		act, _ = claims[c.ActClaim].(string)
		if act != "" {
			for k, person := range c.ActPeople {
				if ActKey(k) == ActKey(act) {
					actFor = strings.TrimSpace(person)
				}
			}
		}
	}
	return Identity{
		Act:       act,
		ActFor:    actFor,
		Subject:   tok.Subject,
		Display:   displayName(c.DisplayClaims, tok.Subject, email, claims, userinfo),
		Email:     email,
		Groups:    groups,
		Issuer:    c.Name,
		IssuerURL: c.URL,
		Kind:      kind,
		Expiry:    tok.Expiry,
		AuthTime:  authTime,
	}, nil
}

// ActKey is how act_people keys and act claims are compared: NFKC, full
// case folding, NFKC again, outer spaces trimmed (as the review guard
// compares acts, broker/policy).
func ActKey(s string) string {
	return norm.NFKC.String(cases.Fold().String(norm.NFKC.String(strings.TrimSpace(s))))
}

// emailVerified reports whether the issuer vouches for the token's email:
// email_verified is boolean true (OIDC Core 5.1), or the string "true",
// which Sign in with Apple sends (its documentation gives the claim as a
// string or a boolean) and AWS Cognito sends where it keeps the attribute
// as a string. Anything else — no claim, null, false, "false", "True",
// 1 — is an unverified address.
func emailVerified(claims map[string]any) bool {
	switch v := claims["email_verified"].(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// plainEmail reports whether email has no space, separator, control or
// invisible character anywhere (safetext.Unsafe): what a person reads is
// then the whole address. RFC 5321 allows spaces only in a quoted local
// part, which no IdP this broker meets issues.
func plainEmail(email string) bool {
	return !strings.ContainsFunc(email, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp) || safetext.Unsafe(r)
	})
}

// authTimeClaim reads auth_time (OIDC Core 2: seconds since the epoch; an
// IdP must send it when the login asked for max_age). A token with an
// auth_time that is not a plain positive number is refused rather than
// read as "no auth_time": step-up trusts this value. No auth_time is the
// zero time: the login then cannot pass step-up (see Identity.AuthTime).
func authTimeClaim(claims map[string]any) (time.Time, error) {
	v, ok := claims["auth_time"]
	if !ok || v == nil {
		return time.Time{}, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, errors.New("auth_time is not a number")
	}
	secs, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil || f != f || f < 1 || f > 1<<40 {
			return time.Time{}, errors.New("auth_time is not a valid time")
		}
		secs = int64(f)
	}
	if secs < 1 || secs > 1<<40 {
		return time.Time{}, errors.New("auth_time is not a valid time")
	}
	return time.Unix(secs, 0).UTC(), nil
}

// hasOverage reports whether claims carry a distributed-claims reference
// (OIDC Core 5.6.2, Entra's group overage) for claim, or Entra's implicit-flow
// "hasgroups" marker.
func hasOverage(claims map[string]any, claim string) bool {
	if names, ok := claims["_claim_names"].(map[string]any); ok {
		if _, ok := names[claim]; ok {
			return true
		}
	}
	has, _ := claims["hasgroups"].(bool)
	return has
}

// maxDisplay bounds a display name.
const maxDisplay = 128

// displayName picks the first non-empty display claim, from the ID token
// then userinfo. The email counts only when verified (verifiedEmail is ""
// otherwise), so nobody is shown under an address they merely typed.
func displayName(keys []string, subject, verifiedEmail string, claims, userinfo map[string]any) string {
	for _, k := range keys {
		var v string
		if k == "email" {
			v = verifiedEmail
		} else if s, ok := claims[k].(string); ok {
			v = s
		} else if s, ok := userinfo[k].(string); ok {
			v = s
		}
		if v = strings.TrimSpace(sanitize(plainName(v), maxDisplay)); shows(v) {
			return v
		}
	}
	return subject
}

// shows reports whether s has a character a person sees: not only spaces
// and characters that render as nothing.
func shows(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsSpace(r) && !safetext.Unsafe(r) })
}

// plainName makes a display name's spaces plain, so that it cannot pass for
// someone else's: every space or separator (no-break, ideographic, line
// and paragraph separators, C1 controls) becomes one plain space, and runs
// of spaces one. Unicode format characters (bidi overrides, zero-width
// joiners) and the fillers that render blank (Hangul U+115F, U+1160,
// U+3164, U+FFA0, braille U+2800) are kept: every view escapes them
// (broker/safetext), so a person sees that they are there rather than a
// name that reads as if they were not (black-box red team: whoami showed
// "alice" for "ali\u200bce"). A name of nothing else is no name.
func plainName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r), unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp), r >= 0x80 && r <= 0x9f:
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	if space {
		b.WriteByte(' ')
	}
	return b.String()
}

// stringList reads a claim that may be absent, a string or a list of strings.
func stringList(v any) ([]string, bool) {
	switch x := v.(type) {
	case nil:
		return nil, true
	case string:
		if x == "" {
			return nil, true
		}
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			if s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out, true
	default:
		return nil, false
	}
}

// claimHas reports whether claim v equals want: strings exactly, numbers and
// booleans by their JSON text, lists when one element does.
func claimHas(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return x == want
	case json.Number:
		return x.String() == want
	case bool:
		return fmt.Sprint(x) == want
	case []any:
		return slices.ContainsFunc(x, func(e any) bool {
			_, isList := e.([]any)
			return !isList && claimHas(e, want)
		})
	default:
		return false
	}
}

// decodeClaims decodes the verified claims keeping numbers exact.
// positiveNumber reports whether v, a decoded claim, is a JSON number
// greater than zero.
func positiveNumber(v any) bool {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return err == nil && f > 0
	case float64:
		return n > 0
	}
	return false
}

func decodeClaims(tok *gooidc.IDToken, out *map[string]any) error {
	var raw json.RawMessage
	if err := tok.Claims(&raw); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(out)
}

// unverifiedHeader and unverifiedClaims are read before verification only to
// route and classify; nothing in them is trusted.
type unverifiedHeader struct {
	Alg string `json:"alg"`
}

type unverifiedClaims struct {
	Issuer   string   `json:"iss"`
	Audience audience `json:"aud"`
	// IssuedAt classifies go-oidc's refusal of an iat that is not a
	// number (null, a string): missing_iat, not invalid.
	IssuedAt any `json:"iat"`
}

// audience decodes aud, a string or a list of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("aud is neither a string nor a list of strings")
	}
	*a = l
	return nil
}

func parseUnverified(raw string) (unverifiedHeader, unverifiedClaims, error) {
	var h unverifiedHeader
	var c unverifiedClaims
	if raw == "" {
		return h, c, errors.New("empty token")
	}
	if len(raw) > maxTokenSize {
		return h, c, fmt.Errorf("token longer than %d bytes", maxTokenSize)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, c, fmt.Errorf("compact JWS must have 3 parts, got %d", len(parts))
	}
	// Each part must be canonical unpadded base64url. The standard decoder
	// skips CR and LF and ignores the spare bits of the last character, and
	// the signature check verifies what the text decodes to: a lenient
	// spelling would give one signed token many texts (and the broker
	// redeems a person's ID token by its text).
	for i, p := range parts {
		if err := canonicalBase64URL(p); err != nil {
			return h, c, fmt.Errorf("%s %w", [...]string{"header", "payload", "signature"}[i], err)
		}
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, c, errors.New("header is not base64url")
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, c, errors.New("header is not JSON")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, c, errors.New("payload is not base64url")
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return h, c, errors.New("payload is not a JSON claims object")
	}
	return h, c, nil
}

// canonicalBase64URL refuses all but the one unpadded base64url spelling
// of some bytes: characters outside the alphabet (padding, whitespace, CR,
// LF) and a last character with spare bits set.
func canonicalBase64URL(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("is not unpadded base64url (byte %d is %q)", i, c)
		}
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(s); err != nil {
		return errors.New("is not canonical base64url (a bad length, or spare bits set in its last character)")
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
