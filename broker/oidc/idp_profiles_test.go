package oidc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/oidc/oidctest"
)

// These tests are the recipes of docs/identity.md run against in-process IdPs
// with each enterprise behaviour: the login pamctl runs on the user's machine
// (CodeFlowTokens) and the broker's verification (VerifyLogin).

func profileClient(p *oidctest.IdP, user, groups string) oidc.ClientConfig {
	return oidc.ClientConfig{
		IssuerURL:       p.URL(),
		ClientID:        "pamctl",
		ExtraAuthParams: map[string]string{"login_hint": user, "groups": groups},
	}
}

func profileVerifier(t *testing.T, clock *fakeClock, c oidc.IssuerConfig) *oidc.Verifier {
	t.Helper()
	v, err := oidc.NewVerifier([]oidc.IssuerConfig{c}, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func writeSecret(t *testing.T, secret string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask may have cleared bits
		t.Fatal(err)
	}
	return p
}

// Google: the token endpoint wants the client secret even with PKCE.
func TestRecipeSecretRequired(t *testing.T) {
	clock := newClock()
	p := oidctest.Start(t, oidctest.Options{ClientSecret: "s3cret-value", Issuer: []devissuer.Option{sharedKey(), devissuer.WithClock(clock.Now)}})
	v := profileVerifier(t, clock, oidc.IssuerConfig{Name: "google", URL: p.URL(), ClientID: "pamctl", ClientSecretFile: "unused-by-the-broker"})

	// Without the secret: refused, and the message says what to configure.
	c := profileClient(p, "alice", "")
	_, err := oidc.CodeFlowTokens(loginCtx(t), c, oidc.FollowRedirects(nil))
	var pe *oidc.ProviderError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "client_secret_file") {
		t.Fatalf("no secret: err = %v, want a provider error naming client_secret_file", err)
	}

	// A wrong secret: refused with a different hint.
	c.ClientSecret = "wrong"
	if _, err := oidc.CodeFlowTokens(loginCtx(t), c, oidc.FollowRedirects(nil)); err == nil || !strings.Contains(err.Error(), "was refused") {
		t.Fatalf("wrong secret: err = %v", err)
	}

	// The secret from a 0600 file: the login completes and verifies.
	secret, err := oidc.ReadClientSecretFile(writeSecret(t, "s3cret-value", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	c.ClientSecret = secret
	if s := fmt.Sprintf("%v %+v %#v", c, c, c); strings.Contains(s, secret) {
		t.Fatalf("ClientConfig prints its secret: %s", s)
	}
	tok, err := oidc.CodeFlowTokens(loginCtx(t), c, oidc.FollowRedirects(nil))
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.VerifyLogin(context.Background(), tok.IDToken, tok.Nonce, "")
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "alice" || id.Display != "alice" {
		t.Fatalf("identity = %+v", id)
	}
}

func TestClientSecretFileRefusesLoosePermissions(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660, 0o620} {
		path := writeSecret(t, "s3cret-value", mode)
		_, err := oidc.ReadClientSecretFile(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: err = %v, want the chmod that fixes it", mode, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret-value") {
			t.Errorf("mode %04o: the error leaks the secret", mode)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if s, err := oidc.ReadClientSecretFile(writeSecret(t, "  s3cret-value ", mode)); err != nil || s != "s3cret-value" {
			t.Errorf("mode %04o: %q, %v", mode, s, err)
		}
	}
	if _, err := oidc.ReadClientSecretFile(writeSecret(t, "", 0o600)); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := oidc.ReadClientSecretFile(writeSecret(t, "a\nb", 0o600)); err == nil || strings.Contains(err.Error(), "a\nb") {
		t.Errorf("two lines: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := oidc.ReadClientSecretFile(missing); err == nil || !strings.Contains(err.Error(), "chmod 600 "+missing) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := oidc.ReadClientSecretFile(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	home, _ := os.UserHomeDir()
	if got, _ := oidc.ExpandHome("~/.config/pamctl/s"); got != filepath.Join(home, ".config/pamctl/s") {
		t.Errorf("ExpandHome = %q", got)
	}
}

// freePort finds a loopback port nobody listens on (racy, but only against
// other tests of this process).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Okta: one registered redirect URI, port included.
func TestRecipeFixedRedirectPort(t *testing.T) {
	port := freePort(t)
	p := oidctest.Start(t, oidctest.Options{
		RedirectURI: fmt.Sprintf("http://127.0.0.1:%d/callback", port),
		Issuer:      []devissuer.Option{sharedKey()},
	})
	c := profileClient(p, "bob", "ml")

	// Any free port: the IdP refuses the redirect URI.
	if _, err := oidc.CodeFlowTokens(loginCtx(t), c, oidc.FollowRedirects(nil)); err == nil || !strings.Contains(err.Error(), "redirect_uri") {
		t.Fatalf("free port: err = %v, want the IdP's redirect_uri refusal", err)
	}

	// The registered port: the login completes.
	c.RedirectPort = port
	tok, err := oidc.CodeFlowTokens(loginCtx(t), c, oidc.FollowRedirects(nil))
	if err != nil || tok.IDToken == "" {
		t.Fatalf("fixed port: %v", err)
	}

	// The port is taken: a clear error naming the port and what to do.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = oidc.CodeFlowTokens(loginCtx(t), c, oidc.FollowRedirects(nil))
	var inUse *oidc.PortInUseError
	if !errors.As(err, &inUse) || inUse.Port != port {
		t.Fatalf("port taken: err = %v, want PortInUseError", err)
	}
	for _, want := range []string{fmt.Sprint(port), "redirect_port", "another `pamctl login`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("port taken: %q lacks %q", err, want)
		}
	}
}

// Groups only at the userinfo endpoint: the CLI hands the access token to the
// broker, which reads userinfo and checks its sub.
func TestRecipeGroupsFromUserinfo(t *testing.T) {
	clock := newClock()
	p := oidctest.Start(t, oidctest.Options{GroupsOnlyInUserinfo: true, Issuer: []devissuer.Option{sharedKey(), devissuer.WithClock(clock.Now)}})
	cfg := oidc.IssuerConfig{Name: "okta", URL: p.URL(), ClientID: "pamctl", GroupsSource: oidc.GroupsFromUserinfo}
	v := profileVerifier(t, clock, cfg)
	ctx := context.Background()

	tok, err := oidc.CodeFlowTokens(loginCtx(t), profileClient(p, "carol", "ml,security"), oidc.FollowRedirects(nil))
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" {
		t.Fatal("the code flow returned no access token")
	}
	// groups_source: token (the old behaviour) sees no groups at all.
	plain := profileVerifier(t, clock, oidc.IssuerConfig{Name: "okta", URL: p.URL(), ClientID: "pamctl"})
	if id, err := plain.VerifyLogin(ctx, tok.IDToken, tok.Nonce, tok.AccessToken); err != nil || len(id.Groups) != 0 {
		t.Fatalf("token source: %+v, %v (the IdP must really keep groups out of the ID token)", id, err)
	}

	id, err := v.VerifyLogin(ctx, tok.IDToken, tok.Nonce, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.Groups, []string{"ml", "security"}) || p.UserinfoCalls() != 1 {
		t.Fatalf("groups = %v after %d userinfo calls", id.Groups, p.UserinfoCalls())
	}

	// No access token (an old CLI, or Verify): refused, never "no groups".
	if _, err := v.Verify(ctx, tok.IDToken, tok.Nonce); !isReason(err, oidc.ReasonUserinfo) {
		t.Fatalf("no access token: %v", err)
	}
	// Another login's access token: at_hash does not match.
	other, err := oidc.CodeFlowTokens(loginCtx(t), profileClient(p, "mallory", "admins"), oidc.FollowRedirects(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyLogin(ctx, tok.IDToken, tok.Nonce, other.AccessToken); !isReason(err, oidc.ReasonUserinfo) {
		t.Fatalf("foreign access token: %v", err)
	}
	// An access token the IdP does not know: userinfo answers 401.
	if _, err := v.VerifyLogin(ctx, mintNoAtHash(t, p, "carol"), "", "bogus"); !isReason(err, oidc.ReasonUserinfo) {
		t.Fatalf("unknown access token: %v", err)
	}
}

func mintNoAtHash(t *testing.T, p *oidctest.IdP, sub string) string {
	t.Helper()
	raw, err := p.Mint(devissuer.Claims{Subject: sub, Audience: "pamctl"})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestUserinfoSubjectMustMatch(t *testing.T) {
	clock := newClock()
	p := oidctest.Start(t, oidctest.Options{GroupsOnlyInUserinfo: true, UserinfoSubject: "someone-else", Issuer: []devissuer.Option{sharedKey(), devissuer.WithClock(clock.Now)}})
	v := profileVerifier(t, clock, oidc.IssuerConfig{Name: "okta", URL: p.URL(), ClientID: "pamctl", GroupsSource: oidc.GroupsFromUserinfo})
	tok, err := oidc.CodeFlowTokens(loginCtx(t), profileClient(p, "carol", "ml"), oidc.FollowRedirects(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyLogin(context.Background(), tok.IDToken, tok.Nonce, tok.AccessToken)
	if !isReason(err, oidc.ReasonUserinfoSubject) || !errors.Is(err, oidc.ErrInvalidToken) {
		t.Fatalf("err = %v, want userinfo_subject_mismatch", err)
	}
}

// Entra's group overage: a reference instead of the list is refused with
// advice, from the ID token and from userinfo alike.
func TestRecipeGroupOverage(t *testing.T) {
	clock := newClock()
	p := oidctest.Start(t, oidctest.Options{Overage: true, Issuer: []devissuer.Option{sharedKey(), devissuer.WithClock(clock.Now)}})
	for _, source := range []string{oidc.GroupsFromToken, oidc.GroupsFromUserinfo} {
		v := profileVerifier(t, clock, oidc.IssuerConfig{Name: "entra", URL: p.URL(), ClientID: "pamctl", GroupsSource: source})
		tok, err := oidc.CodeFlowTokens(loginCtx(t), profileClient(p, "dave", "g1,g2"), oidc.FollowRedirects(nil))
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.VerifyLogin(context.Background(), tok.IDToken, tok.Nonce, tok.AccessToken)
		if !isReason(err, oidc.ReasonGroupsOverage) {
			t.Fatalf("%s: err = %v, want groups_overage", source, err)
		}
		for _, want := range []string{"too many groups", "assigned to the application", "groups_claim: roles"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q lacks %q", source, err, want)
			}
		}
	}
	// Entra's implicit-flow marker is an overage too.
	v := profileVerifier(t, clock, oidc.IssuerConfig{Name: "entra", URL: p.URL(), ClientID: "pamctl"})
	raw, err := p.Mint(devissuer.Claims{Subject: "dave", Audience: "pamctl", Extra: map[string]any{"hasgroups": true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), raw, ""); !isReason(err, oidc.ReasonGroupsOverage) {
		t.Fatalf("hasgroups: %v", err)
	}
}

func TestDisplayClaims(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	mint := func(email string, verified bool, extra map[string]any) string {
		if email != "" {
			extra["email_verified"] = verified
		}
		return mustMint(t, iss, devissuer.Claims{Subject: "00u1abcd", Email: email, Audience: "pamctl", Extra: extra})
	}
	cases := []struct {
		name   string
		claims []string
		raw    string
		want   string
	}{
		{"preferred_username first", nil, mint("al@example.com", true, map[string]any{"preferred_username": "alice", "name": "Alice A"}), "alice"},
		{"then verified email", nil, mint("al@example.com", true, map[string]any{"name": "Alice A"}), "al@example.com"},
		{"unverified email skipped", nil, mint("ceo@example.com", false, map[string]any{"name": "Alice A"}), "Alice A"},
		{"subject last", nil, mint("", false, map[string]any{}), "00u1abcd"},
		{"configured order", []string{"name", "email"}, mint("al@example.com", true, map[string]any{"preferred_username": "alice", "name": "Alice A"}), "Alice A"},
		{"control characters dropped", []string{"name"}, mint("", false, map[string]any{"name": "Al\x1b[31mice"}), "Al [31mice"},
		// Kept, for every view to escape: a person sees they are there
		// (black-box red team: whoami showed "alice" for "ali\u200bce").
		{"bidi overrides kept", []string{"name"}, mint("", false, map[string]any{"name": "bob\u202egnp.exe\u200b"}), "bob\u202egnp.exe\u200b"},
		{"blank falls through", nil, mint("", false, map[string]any{"preferred_username": " \u200b ", "name": "Bob"}), "Bob"},
		// Names that render blank or wide cannot pad a name into another's.
		// (The escapes show them; they are not spaces to fold.)
		{"fillers kept", []string{"name"}, mint("", false, map[string]any{"name": "ali\u115fce\u3164\u1160\uffa0\u2800"}), "ali\u115fce\u3164\u1160\uffa0\u2800"},
		{"only invisible falls through", nil, mint("", false, map[string]any{"preferred_username": "\u200b\u3164\u202e \u2800", "name": "Bob"}), "Bob"},
		{"spaces made plain, runs one", []string{"name"}, mint("", false, map[string]any{"name": "alice\u00a0\u3000\u2028\u2029\u0085  (CISO)\u2003x"}), "alice (CISO) x"},
		{"only fillers falls through", nil, mint("", false, map[string]any{"preferred_username": "\u3164\u3000\u00a0", "name": "Bob"}), "Bob"},
	}
	for _, tc := range cases {
		v := newVerifier(t, clock, oidc.IssuerConfig{Name: "corp", URL: iss.URL(), ClientID: "pamctl", DisplayClaims: tc.claims})
		id, err := v.Verify(context.Background(), tc.raw, "")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if id.Display != tc.want || id.Subject != "00u1abcd" {
			t.Errorf("%s: display %q subject %q, want %q", tc.name, id.Display, id.Subject, tc.want)
		}
	}
}

func isReason(err error, r oidc.Reason) bool {
	var ve *oidc.VerifyError
	return errors.As(err, &ve) && ve.Reason == r
}

// The device flow hands over the access token too, so userinfo groups work
// for `pamctl login --device`.
func TestRecipeGroupsFromUserinfoDeviceFlow(t *testing.T) {
	clock := newClock()
	p := oidctest.Start(t, oidctest.Options{GroupsOnlyInUserinfo: true, Issuer: []devissuer.Option{sharedKey(), devissuer.WithClock(clock.Now), devissuer.WithPollInterval(0)}})
	v := profileVerifier(t, clock, oidc.IssuerConfig{Name: "okta", URL: p.URL(), ClientID: "pamctl", GroupsSource: oidc.GroupsFromUserinfo})
	approved := make(chan error, 1)
	tok, err := oidc.DeviceFlowTokens(loginCtx(t), oidc.ClientConfig{IssuerURL: p.URL(), ClientID: "pamctl"}, func(uri, code string) {
		go func() {
			approved <- oidc.FollowRedirects(nil)(uri + "?user_code=" + code + "&login_hint=frank&groups=security")
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-approved; err != nil {
		t.Fatal(err)
	}
	id, err := v.VerifyLogin(context.Background(), tok.IDToken, "", tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.Groups, []string{"security"}) {
		t.Fatalf("groups = %v", id.Groups)
	}
}

// An access token is never sent to a userinfo endpoint over plain http on
// the network.
func TestUserinfoEndpointMustBeHTTPS(t *testing.T) {
	clock := newClock()
	p := oidctest.Start(t, oidctest.Options{GroupsOnlyInUserinfo: true, UserinfoURL: "http://userinfo.example.com/userinfo", Issuer: []devissuer.Option{sharedKey(), devissuer.WithClock(clock.Now)}})
	v := profileVerifier(t, clock, oidc.IssuerConfig{Name: "okta", URL: p.URL(), ClientID: "pamctl", GroupsSource: oidc.GroupsFromUserinfo})
	tok, err := oidc.CodeFlowTokens(loginCtx(t), profileClient(p, "carol", "ml"), oidc.FollowRedirects(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyLogin(context.Background(), tok.IDToken, tok.Nonce, tok.AccessToken)
	var ve *oidc.VerifyError
	if !errors.As(err, &ve) || ve.Reason != oidc.ReasonUserinfo || !strings.Contains(ve.Detail.Error(), "https") {
		t.Fatalf("err = %v, want the http userinfo endpoint refused", err)
	}
}
