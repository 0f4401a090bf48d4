package oidc_test

import (
	"context"
	"encoding/base64"
	"errors"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

func newVerifier(t *testing.T, clock *fakeClock, cfgs ...oidc.IssuerConfig) *oidc.Verifier {
	t.Helper()
	v, err := oidc.NewVerifier(cfgs, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func corpConfig(iss *testIssuer) oidc.IssuerConfig {
	return oidc.IssuerConfig{Name: "corp", URL: iss.URL(), ClientID: "pamctl"}
}

func TestVerifyAcceptsDevIssuerToken(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "/dev/oidc", sharedKey(), devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock, corpConfig(iss))

	raw := mustMint(t, iss, devissuer.Claims{
		Subject: "alice", Email: "alice@example.com", Groups: []string{"ml", "security"},
		Audience: "pamctl", Nonce: "n-123", TTL: 20 * time.Minute,
	})
	id, err := v.Verify(context.Background(), raw, "n-123")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := oidc.Identity{
		Subject: "alice", Email: "alice@example.com", Groups: []string{"ml", "security"},
		Issuer: "corp", IssuerURL: iss.URL(), Kind: oidc.KindUser,
		Expiry: clock.Now().Add(20 * time.Minute),
	}
	if id.Subject != want.Subject || id.Email != want.Email || !slices.Equal(id.Groups, want.Groups) ||
		id.Issuer != want.Issuer || id.IssuerURL != want.IssuerURL || id.Kind != want.Kind || !id.Expiry.Equal(want.Expiry) {
		t.Errorf("identity = %+v\nwant       %+v", id, want)
	}
	// A token with a nonce is one login's: presented without it (a
	// captured token replayed at /v1/login) it is refused.
	if _, err := v.Verify(context.Background(), raw, ""); !errors.Is(err, oidc.ErrInvalidToken) {
		t.Errorf("Verify of a token with a nonce, without it: %v", err)
	}
	// Workload tokens have none: "" is theirs, and a nonce refuses them.
	wl := mustMint(t, iss, devissuer.Claims{Subject: "svc", Audience: "pamctl", TTL: 20 * time.Minute})
	if _, err := v.Verify(context.Background(), wl, ""); err != nil {
		t.Errorf("Verify without nonce: %v", err)
	}
	if _, err := v.Verify(context.Background(), wl, "n-123"); !errors.Is(err, oidc.ErrInvalidToken) {
		t.Errorf("Verify of a token without a nonce, with one: %v", err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	cfg := corpConfig(iss)
	cfg.AllowedDomains = []string{"example.com", "kontoso.com"}
	cfg.RequiredClaims = map[string]string{"tenant": "acme"}
	v := newVerifier(t, clock, cfg)

	base := devissuer.Claims{
		Subject: "alice", Email: "alice@example.com", Audience: "pamctl", Nonce: "n-1",
		Extra: map[string]any{"tenant": "acme"},
	}
	with := func(f func(*devissuer.Claims)) devissuer.Claims {
		c := base
		c.Extra = map[string]any{"tenant": "acme"}
		f(&c)
		return c
	}
	mint := func(c devissuer.Claims) func() (string, error) { return func() (string, error) { return iss.Mint(c) } }

	// The baseline must pass, or the refusals below prove nothing.
	if _, err := v.Verify(context.Background(), mustMint(t, iss, base), "n-1"); err != nil {
		t.Fatalf("baseline token refused: %v", err)
	}
	// An allowed domain in another ASCII case is that domain.
	if _, err := v.Verify(context.Background(), mustMint(t, iss, with(func(c *devissuer.Claims) { c.Email = "alice@KonToso.COM" })), "n-1"); err != nil {
		t.Fatalf("alice@KonToso.COM refused: %v", err)
	}

	cases := []struct {
		name   string
		token  func() (string, error)
		nonce  string
		is     error
		reason oidc.Reason
	}{
		{"unknown issuer", func() (string, error) {
			return iss.Forge().ForeignIssuer("https://idp.evil.example", base)
		}, "n-1", oidc.ErrUnknownIssuer, oidc.ReasonUnknownIssuer},
		{"wrong audience", mint(with(func(c *devissuer.Claims) { c.Audience = "someone-else" })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonWrongAudience},
		{"expired", mint(with(func(c *devissuer.Claims) { c.Expiry = clock.Now().Add(-time.Second) })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonExpired},
		{"signed by another key", func() (string, error) { return iss.Forge().OtherKey(base) },
			"n-1", oidc.ErrInvalidToken, oidc.ReasonBadSignature},
		{"alg none", func() (string, error) { return iss.Forge().AlgNone(base) },
			"n-1", oidc.ErrInvalidToken, oidc.ReasonUnsupportedAlg},
		{"HS256 keyed with the public key", func() (string, error) { return iss.Forge().HS256WithPublicKey(base) },
			"n-1", oidc.ErrInvalidToken, oidc.ReasonUnsupportedAlg},
		{"tampered payload", func() (string, error) { return tamper(iss.Mint(base)) },
			"n-1", oidc.ErrInvalidToken, oidc.ReasonBadSignature},
		{"nonce mismatch", mint(base), "n-2", oidc.ErrInvalidToken, oidc.ReasonNonceMismatch},
		{"nonce missing from token", mint(with(func(c *devissuer.Claims) { c.Nonce = "" })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonNonceMismatch},
		{"required claim missing", mint(with(func(c *devissuer.Claims) { delete(c.Extra, "tenant") })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonClaimMismatch},
		{"required claim different", mint(with(func(c *devissuer.Claims) { c.Extra["tenant"] = "acme-evil" })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonClaimMismatch},
		{"email domain not allowed", mint(with(func(c *devissuer.Claims) { c.Email = "alice@example.com.evil.example" })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonDomainNotAllowed},
		// Unicode case mapping gives another domain: the Kelvin sign
		// lowers to k, the long s folds to s.
		{"email domain with a Kelvin sign", mint(with(func(c *devissuer.Claims) { c.Email = "alice@\u212aontoso.com" })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonDomainNotAllowed},
		{"email domain with a long s", mint(with(func(c *devissuer.Claims) { c.Email = "alice@konto\u017fo.com" })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonDomainNotAllowed},
		{"no email with allowed_domains", mint(with(func(c *devissuer.Claims) { c.Email = "" })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonDomainNotAllowed},
		{"unverified email", mint(with(func(c *devissuer.Claims) { c.Extra["email_verified"] = false })),
			"n-1", oidc.ErrInvalidToken, oidc.ReasonDomainNotAllowed},
		{"not a JWT", func() (string, error) { return "not-a-token", nil },
			"n-1", oidc.ErrInvalidToken, oidc.ReasonMalformed},
		{"empty", func() (string, error) { return "", nil }, "", oidc.ErrInvalidToken, oidc.ReasonMalformed},
		{"junk segments", func() (string, error) { return "e30.!!!.x", nil },
			"n-1", oidc.ErrInvalidToken, oidc.ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.token()
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), raw, tc.nonce)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.is)
			}
			var ve *oidc.VerifyError
			if !errors.As(err, &ve) || ve.Reason != tc.reason {
				t.Fatalf("err = %#v, want reason %s", err, tc.reason)
			}
			assertNoTokenInError(t, err, raw)
		})
	}
}

// tamper swaps the payload of a signed token for one naming another subject.
func tamper(raw string, err error) (string, error) {
	if err != nil {
		return "", err
	}
	parts := strings.Split(raw, ".")
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	p = []byte(strings.Replace(string(p), `"sub":"alice"`, `"sub":"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, "."), nil
}

// assertNoTokenInError checks the user-facing message and the detail never
// quote the token or its segments.
func assertNoTokenInError(t *testing.T, err error, raw string) {
	t.Helper()
	for _, part := range strings.Split(raw, ".") {
		if len(part) >= 8 && strings.Contains(err.Error(), part) {
			t.Errorf("error message quotes the token: %v", err)
		}
	}
	var ve *oidc.VerifyError
	if errors.As(err, &ve) && ve.Detail != nil {
		for _, part := range strings.Split(raw, ".") {
			if len(part) >= 8 && strings.Contains(ve.Detail.Error(), part) {
				t.Errorf("error detail quotes the token: %v", ve.Detail)
			}
		}
	}
}

func TestVerifyExpiryUsesInjectedClock(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock, corpConfig(iss))
	raw := mustMint(t, iss, devissuer.Claims{Subject: "alice", TTL: 5 * time.Minute})

	if _, err := v.Verify(context.Background(), raw, ""); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	clock.Advance(4*time.Minute + 59*time.Second)
	if _, err := v.Verify(context.Background(), raw, ""); err != nil {
		t.Fatalf("token one second before expiry: %v", err)
	}
	clock.Advance(2 * time.Second)
	_, err := v.Verify(context.Background(), raw, "")
	var ve *oidc.VerifyError
	if !errors.As(err, &ve) || ve.Reason != oidc.ReasonExpired || !errors.Is(err, oidc.ErrInvalidToken) {
		t.Fatalf("expired token: %v", err)
	}
	if !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), `"corp"`) {
		t.Errorf("message %q should say expired and name the issuer", err)
	}
}

func TestVerifyGroupsClaimShapes(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	cfg := corpConfig(iss)
	cfg.GroupsClaim = "team"
	v := newVerifier(t, clock, cfg)

	for _, tc := range []struct {
		name  string
		value any
		want  []string
	}{
		{"single string", "ml", []string{"ml"}},
		{"list", []string{"ml", "sre", "ml"}, []string{"ml", "sre"}},
		{"absent", nil, nil},
	} {
		c := devissuer.Claims{Subject: "alice", Groups: []string{"ignored"}}
		if tc.value != nil {
			c.Extra = map[string]any{"team": tc.value}
		}
		id, err := v.Verify(context.Background(), mustMint(t, iss, c), "")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(id.Groups, tc.want) {
			t.Errorf("%s: groups = %v, want %v", tc.name, id.Groups, tc.want)
		}
	}

	_, err := v.Verify(context.Background(), mustMint(t, iss, devissuer.Claims{
		Subject: "alice", Extra: map[string]any{"team": map[string]any{"name": "ml"}},
	}), "")
	var ve *oidc.VerifyError
	if !errors.As(err, &ve) || ve.Reason != oidc.ReasonInvalidGroupsClaim || ve.Claim != "team" {
		t.Errorf("object groups claim: %v", err)
	}
}

func TestRequiredClaimsMatchListsAndBooleans(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	cfg := corpConfig(iss)
	cfg.RequiredClaims = map[string]string{"amr": "mfa", "hd_verified": "true", "level": "2"}
	v := newVerifier(t, clock, cfg)

	ok := map[string]any{"amr": []string{"pwd", "mfa"}, "hd_verified": true, "level": 2}
	if _, err := v.Verify(context.Background(), mustMint(t, iss, devissuer.Claims{Subject: "a", Extra: ok}), ""); err != nil {
		t.Fatalf("matching claims refused: %v", err)
	}
	bad := map[string]any{"amr": []string{"pwd"}, "hd_verified": true, "level": 2}
	_, err := v.Verify(context.Background(), mustMint(t, iss, devissuer.Claims{Subject: "a", Extra: bad}), "")
	var ve *oidc.VerifyError
	if !errors.As(err, &ve) || ve.Reason != oidc.ReasonClaimMismatch || ve.Claim != "amr" {
		t.Errorf("amr without mfa: %v", err)
	}
}

func TestVerifyDiscoversLazilyAndRetries(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	iss.down.Store(true)

	// The IdP is down at start: NewVerifier does not need it.
	v := newVerifier(t, clock, corpConfig(iss))
	if n := iss.discoveries.Load(); n != 0 {
		t.Fatalf("NewVerifier made %d discovery requests", n)
	}
	raw := mustMint(t, iss, devissuer.Claims{Subject: "alice"})

	_, err := v.Verify(context.Background(), raw, "")
	var ve *oidc.VerifyError
	if !errors.Is(err, oidc.ErrIssuerUnavailable) || !errors.As(err, &ve) || ve.Reason != oidc.ReasonIssuerUnavailable {
		t.Fatalf("IdP down: %v", err)
	}
	if strings.Contains(err.Error(), "maintenance") {
		t.Errorf("user message leaks the IdP's response: %v", err)
	}

	iss.down.Store(false)
	if _, err := v.Verify(context.Background(), raw, ""); err != nil {
		t.Fatalf("IdP back: %v", err)
	}
	if _, err := v.Verify(context.Background(), raw, ""); err != nil {
		t.Fatalf("again: %v", err)
	}
	if n := iss.discoveries.Load(); n != 2 {
		t.Errorf("discovery requests = %d, want 2 (one failed, one cached)", n)
	}
}

func TestVerifyJWKSUnavailable(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	iss.keysDown.Store(true)
	v := newVerifier(t, clock, corpConfig(iss))
	raw := mustMint(t, iss, devissuer.Claims{Subject: "alice"})

	if _, err := v.Verify(context.Background(), raw, ""); !errors.Is(err, oidc.ErrIssuerUnavailable) {
		t.Fatalf("JWKS down: %v", err)
	}
	iss.keysDown.Store(false)
	// go-oidc forgets a failed JWKS fetch in a goroutine of its own, just
	// after reporting it; a call racing that cleanup still sees the failure.
	// Retry without sleeping, for a bounded time.
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); runtime.Gosched() {
		if _, err = v.Verify(context.Background(), raw, ""); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("JWKS back: %v", err)
	}
}

func TestVerifyConcurrentFirstUse(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock, corpConfig(iss))
	raw := mustMint(t, iss, devissuer.Claims{Subject: "alice"})

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), raw, ""); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := iss.discoveries.Load(); n != 1 {
		t.Errorf("discovery requests = %d, want 1", n)
	}
}

func TestTwoIssuersUserAndWorkload(t *testing.T) {
	clock := newClock()
	corp := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	// The CI issuer has its own key, so cross-issuer signatures fail.
	ci := startIssuer(t, "/ci", devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock,
		corpConfig(corp),
		oidc.IssuerConfig{
			Name: "github", URL: ci.URL(), Audience: "pamctl-ci", Workload: true,
			GroupsClaim:    "repository",
			RequiredClaims: map[string]string{"repository_owner": "acme"},
		},
	)

	person, err := v.Verify(context.Background(), mustMint(t, corp, devissuer.Claims{
		Subject: "alice", Email: "alice@example.com", Groups: []string{"ml"},
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if person.Kind != oidc.KindUser || person.Issuer != "corp" || person.IssuerURL != corp.URL() {
		t.Errorf("person = %+v", person)
	}

	const sub = "repo:acme/app:ref:refs/heads/main"
	workload := devissuer.Claims{
		Subject: sub, Audience: "pamctl-ci",
		Extra: map[string]any{"repository_owner": "acme", "repository": "acme/app", "ref": "refs/heads/main"},
	}
	svc, err := v.Verify(context.Background(), mustMint(t, ci, workload), "")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Kind != oidc.KindService || svc.Issuer != "github" || svc.Subject != sub ||
		!slices.Equal(svc.Groups, []string{"acme/app"}) || svc.Email != "" {
		t.Errorf("service = %+v", svc)
	}

	// Trust is by name and URL together: each issuer at its own URL,
	// never a name at another's URL, an unknown name, or no URL.
	for _, tc := range []struct {
		name, url string
		want      bool
	}{
		{"corp", corp.URL(), true}, {"github", ci.URL(), true},
		{"corp", ci.URL(), false}, {"github", corp.URL(), false},
		{"dev", corp.URL(), false}, {"corp", "", false}, {"", corp.URL(), false},
		{"corp", corp.URL() + "/", false}, {"CORP", corp.URL(), false},
	} {
		if got := v.Trusts(tc.name, tc.url); got != tc.want {
			t.Errorf("Trusts(%q, %q) = %v, want %v", tc.name, tc.url, got, tc.want)
		}
	}

	// A token claiming the CI issuer but signed with corp's key is refused.
	forged, err := corp.Forge().ForeignIssuer(ci.URL(), workload)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), forged, "")
	var ve *oidc.VerifyError
	if !errors.As(err, &ve) || ve.Reason != oidc.ReasonBadSignature || ve.Issuer != "github" {
		t.Errorf("cross-signed token: %v", err)
	}

	// The person's audience is not the CI one.
	_, err = v.Verify(context.Background(), mustMint(t, ci, devissuer.Claims{
		Subject: sub, Audience: "pamctl", Extra: map[string]any{"repository_owner": "acme"},
	}), "")
	if !errors.As(err, &ve) || ve.Reason != oidc.ReasonWrongAudience {
		t.Errorf("CI token for the person audience: %v", err)
	}
}

func TestNewVerifierReportsEveryProblem(t *testing.T) {
	if _, err := oidc.NewVerifier(nil, nil, nil); err == nil {
		t.Error("no issuers accepted")
	}
	_, err := oidc.NewVerifier([]oidc.IssuerConfig{
		{Name: "a", URL: "https://idp.example.com", ClientID: "x"},
		{Name: "b", URL: "https://idp.example.com", ClientID: "y"},
		{Name: "a", URL: "https://other.example.com", ClientID: "z"},
		{Name: "c", URL: "http://idp.example.com", ClientID: "w"},
	}, nil, nil)
	if err == nil {
		t.Fatal("bad issuers accepted")
	}
	for _, want := range []string{`issuer "b": url`, `issuer "a": name is used twice`, `issuer "c": url: must use https`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestVerifyRefusesRespelledTokens: the signature check verifies what a
// token's parts decode to, and the decoders skip CR and LF, trim padding
// and ignore a last character's spare bits. A token must have one text
// (the broker redeems a person's ID token by it), so every other
// spelling of a valid token is malformed.
func TestVerifyRefusesRespelledTokens(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock, corpConfig(iss))
	raw := mustMint(t, iss, devissuer.Claims{Subject: "alice", Audience: "pamctl", Nonce: "n-1"})
	if _, err := v.Verify(context.Background(), raw, "n-1"); err != nil {
		t.Fatalf("the token as minted: %v", err)
	}
	spellings := devissuer.Respell(raw)
	for _, want := range []string{"header with a LF", "payload with a CR LF", "signature with a LF", "payload with spare bits set", "signature with spare bits set"} {
		if _, ok := spellings[want]; !ok {
			t.Fatalf("Respell made no %q: %v", want, slices.Collect(maps.Keys(spellings)))
		}
	}
	for what, tok := range spellings {
		_, err := v.Verify(context.Background(), tok, "n-1")
		var ve *oidc.VerifyError
		if !errors.As(err, &ve) || ve.Reason != oidc.ReasonMalformed {
			t.Errorf("%s: err = %v, want malformed", what, err)
		}
	}
}
