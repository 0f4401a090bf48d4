package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/oidctest"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// loginAs runs `pamctl login ARGS` as user with an opener that plays the
// browser: it adds login_hint/groups (the test IdP's auto-consent) and
// follows the redirects to the CLI's loopback listener.
func (s *testServer) loginAs(t *testing.T, user, groups string, args ...string) result {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(s.dir, "config-"+user))
	ios, _, out, errOut := iostreams.Test()
	follow := oidc.FollowRedirects(nil)
	cmd := NewCmdLogin(NewFactory(ios), func(cmd *cobra.Command, o *LoginOptions) error {
		o.Open = func(raw string) error {
			u, err := url.Parse(raw)
			if err != nil {
				return err
			}
			q := u.Query()
			q.Set("login_hint", user)
			q.Set("groups", groups)
			u.RawQuery = q.Encode()
			return follow(u.String())
		}
		return loginRun(cmd, o)
	})
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	r := result{out: out.String(), err: errOut.String()}
	if err != nil {
		r.code = exitCodeOf(err)
		r.err += "error: " + err.Error() + "\n"
	}
	return r
}

// TestLoginEnterpriseIdP logs in through the CLI against an IdP that needs
// all three enterprise settings at once: a client secret (Google), one fixed
// redirect port (Okta) and groups only at userinfo. The broker config names
// them; the CLI reads the secret file on the user's machine and hands the
// access token to the broker, which reads the groups from userinfo.
func TestLoginEnterpriseIdP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	idp := oidctest.Start(t, oidctest.Options{
		ClientSecret:         "s3cret-value",
		RedirectURI:          fmt.Sprintf("http://127.0.0.1:%d/callback", port),
		GroupsOnlyInUserinfo: true,
	})
	secretFile := filepath.Join(t.TempDir(), "okta-client-secret")
	if err := os.WriteFile(secretFile, []byte("s3cret-value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, func(c *Config) {
		c.Issuers = append(c.Issuers, oidc.IssuerConfig{
			Name: "okta", URL: idp.URL(), ClientID: "pamctl",
			ClientSecretFile: secretFile, RedirectPort: port, GroupsSource: oidc.GroupsFromUserinfo,
		})
	})

	// A secret file others can read is refused before any network traffic.
	r := s.loginAs(t, "carol", "ml", "--issuer", "okta")
	if r.code != ExitUsage || !strings.Contains(r.err, "chmod 600 "+secretFile) {
		t.Fatalf("world-readable secret: %+v", r)
	}
	if err := os.Chmod(secretFile, 0o600); err != nil {
		t.Fatal(err)
	}

	s.loginAs(t, "carol", "ml", "--issuer", "okta").must(t, "login")
	if idp.UserinfoCalls() != 1 {
		t.Fatalf("userinfo calls = %d, want 1 (the broker reads the groups there)", idp.UserinfoCalls())
	}
	who := s.as(t, "carol", "", "whoami", "-o", "json").must(t, "whoami")
	var me struct {
		Subject string   `json:"subject"`
		Display string   `json:"display"`
		Groups  []string `json:"groups"`
		Issuer  string   `json:"issuer"`
	}
	if err := json.Unmarshal([]byte(who.out), &me); err != nil {
		t.Fatal(err)
	}
	if me.Subject != "carol" || me.Display != "carol" || !slices.Equal(me.Groups, []string{"ml"}) || me.Issuer != "okta" {
		t.Fatalf("whoami = %+v", me)
	}
	// The groups from userinfo count for policy: carol (ml) may ask.
	if r := s.as(t, "carol", "", "request", "--wait=false", "--scope", "model:gpt-4o", "--reason", "eval", "-o", "json"); r.code != ExitOK || jsonState(r.out) != "pending" {
		t.Fatalf("request (pending approval expected): %+v", r)
	}
	if out := s.as(t, "carol", "", "whoami").must(t, "whoami table").out; !strings.Contains(out, "name") {
		t.Fatalf("whoami table has no name row:\n%s", out)
	}

	// The fixed port is taken: the error names it and what to do.
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	r = s.loginAs(t, "carol", "ml", "--issuer", "okta")
	if r.code != ExitUnauthenticated || !strings.Contains(r.err, fmt.Sprintf("port %d", port)) || !strings.Contains(r.err, "redirect_port") {
		t.Fatalf("port taken: %+v", r)
	}
}

func TestDisplayNameInRequestsTable(t *testing.T) {
	s := startServer(t)
	// The dev issuer's preferred_username is the login name; an email login
	// shows the name part the IdP gave, not an opaque id.
	s.as(t, "alice", "", "login", "--user", "alice@acme.com", "--groups", "ml").must(t, "login")
	if r := s.as(t, "alice", "", "request", "--wait=false", "--scope", "model:gpt-4o", "--reason", "eval", "-o", "json"); r.code != ExitOK || jsonState(r.out) != "pending" {
		t.Fatalf("request: %+v", r)
	}
	out := s.as(t, "alice", "", "requests", "-o", "json").must(t, "requests").out
	if !strings.Contains(out, `"display": "alice@acme.com"`) && !strings.Contains(out, `"display":"alice@acme.com"`) {
		t.Fatalf("requests JSON lacks the requester's display name:\n%s", out)
	}
}
