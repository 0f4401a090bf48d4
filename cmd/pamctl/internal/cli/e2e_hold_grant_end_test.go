package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/rules"
)

// liveGrantFor logs user in (group ml) and makes them a live grant of
// model:gpt-4o-mini, approved by a security approver when policy asks, and
// returns its id (a held call is released only on a grant the broker has
// and that stands).
func liveGrantFor(t *testing.T, s *testServer, user string) string {
	t.Helper()
	s.as(t, user, "", "login", "--user", user, "--groups", "ml").must(t, "login")
	var r broker.Request
	json.Unmarshal([]byte(s.as(t, user, "", "request", "--scope", "model:gpt-4o-mini", "--nowait", "-o", "json").must(t, "request").out), &r)
	if r.State == broker.StatePending {
		s.as(t, "grant-approver", "", "login", "--user", "grant-approver", "--groups", "security").must(t, "approver login")
		s.as(t, "grant-approver", "", "approve", r.ID).must(t, "approve the grant")
	}
	if r.ID == "" {
		t.Fatalf("no grant for %s", user)
	}
	return r.ID
}

// heldOnGrant counts the trail's events of typ about calls held on grant,
// with decision (any when "").
func heldOnGrant(t *testing.T, s *testServer, typ audit.Type, grant, decision string) int {
	t.Helper()
	n := 0
	s.app.audit.Range(t.Context(), 0, func(e audit.Event) bool {
		if e.Type == typ && e.Grant == grant && (decision == "" || e.Decision == decision) {
			n++
		}
		return true
	})
	return n
}

// pendingFor lists the requests waiting for user's decision, as `pamctl
// requests --pending -o json` shows them.
func pendingFor(t *testing.T, s *testServer, user string) []broker.Request {
	t.Helper()
	var rs []broker.Request
	out := s.as(t, user, "", "requests", "--pending", "-o", "json").must(t, "requests --pending").out
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("requests -o json: %v\n%s", err, out)
	}
	return rs
}

// Red team (black box), one process (role all): `pamctl revoke` of a grant
// whose calls wait for an approver left them waiting until
// proxy.hold_timeout (here a minute), then told the agent nobody released
// them in time. They now end at once: the agent is told its grant ended
// and to ask for a new one, the approvers' queue no longer lists them,
// the trail says grant_ended once for each; a call held on another grant
// keeps waiting and is still released; the same call sent again is
// refused for its revoked token, not held again.
func TestEndToEndRevokeEndsHeldCalls(t *testing.T) {
	const holdTimeout = time.Minute
	s := startServerWith(t, func(c *Config) {
		c.Rules = []rules.Rule{{Name: "destructive-sql", Pattern: `(?i)drop\s+table`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}}
		c.Proxy.HoldTimeout = holdTimeout
	})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "carol", "", "login", "--user", "carol", "--groups", "ml").must(t, "carol login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	for _, who := range []string{"alice", "carol"} {
		r := s.as(t, who, "", "request", "--scope", "model:gpt-4o-mini", "--nowait", "-o", "json").must(t, "request")
		var req broker.Request
		json.Unmarshal([]byte(r.out), &req)
		s.as(t, "bob", "", "approve", req.ID).must(t, "approve the grant")
	}
	grantOf := func(who string) (string, string) {
		tok := strings.TrimSpace(s.as(t, who, "", "token").must(t, "token").out)
		var g []broker.Request
		json.Unmarshal([]byte(s.as(t, who, "", "requests", "-o", "json").must(t, "requests").out), &g)
		for _, r := range g {
			if r.Kind == broker.KindAccess && r.State == broker.StateApproved {
				return tok, r.ID
			}
		}
		t.Fatalf("%s has no grant", who)
		return "", ""
	}
	aliceTok, aliceGrant := grantOf("alice")
	carolTok, carolGrant := grantOf("carol")
	proxyURL := s.app.ProxyURL()

	type answer struct {
		callResult
		after time.Duration
	}
	send := func(tok, prompt string) chan answer {
		c := make(chan answer, 1)
		go func() {
			start := time.Now()
			res := chat(t, proxyURL, tok, prompt)
			c <- answer{res, time.Since(start)}
		}()
		return c
	}
	alice1, alice2 := send(aliceTok, "please DROP TABLE users"), send(aliceTok, "please DROP TABLE orders")
	carol := send(carolTok, "please DROP TABLE carts")
	waitUntil(t, "three held calls in bob's queue", 30*time.Second, func() bool { return len(pendingFor(t, s, "bob")) == 3 })

	revoked := time.Now()
	s.as(t, "alice", "", "revoke", aliceGrant).must(t, "revoke")
	for i, c := range []chan answer{alice1, alice2} {
		select {
		case a := <-c:
			if a.status != http.StatusForbidden || !strings.Contains(a.body, `"code":"approval_required"`) || !strings.Contains(a.body, aliceGrant) ||
				!strings.Contains(a.body, "new grant") || strings.Contains(a.body, "in time") {
				t.Fatalf("held call %d after its grant was revoked: %+v; want 403 saying the grant ended and to ask for a new one", i, a)
			}
		case <-time.After(holdTimeout / 2):
			t.Fatalf("held call %d still waits %s after its grant was revoked (the hold timeout is %s)", i, holdTimeout/2, holdTimeout)
		}
	}
	t.Logf("held calls ended %s after the revoke", time.Since(revoked).Round(time.Millisecond))
	if q := pendingFor(t, s, "bob"); len(q) != 1 || q[0].Prompt == nil || q[0].Prompt.GrantID != carolGrant {
		t.Fatalf("bob's queue after the revoke: %+v; want only carol's call", q)
	}
	if n := heldOnGrant(t, s, audit.TypePromptRefused, aliceGrant, "grant_ended"); n != 2 {
		t.Fatalf("%d prompt.refused grant_ended events for alice's grant, want 2", n)
	}
	if n := heldOnGrant(t, s, audit.TypePromptRefused, aliceGrant, ""); n != 2 {
		t.Fatalf("%d prompt.refused events for alice's grant, want 2 (no timeout besides)", n)
	}

	// The agent sends the same call again: its token is refused, nothing is held.
	if res := chat(t, proxyURL, aliceTok, "please DROP TABLE users"); res.status != http.StatusUnauthorized {
		t.Fatalf("the same call on the revoked grant: %+v; want 401", res)
	}
	if n := heldOnGrant(t, s, audit.TypePromptHeld, aliceGrant, ""); n != 2 {
		t.Fatalf("%d calls held on the revoked grant, want the 2 before the revoke", n)
	}

	// carol's call on her own grant still waits, and is released.
	select {
	case a := <-carol:
		t.Fatalf("the call held on another grant ended: %+v", a)
	default:
	}
	q := pendingFor(t, s, "bob")
	s.as(t, "bob", "", "approve", q[0].ID).must(t, "release carol's call")
	if a := <-carol; a.status != http.StatusOK || !strings.Contains(a.body, devMockPrefix) {
		t.Fatalf("carol's released call: %+v", a)
	}
}

// The same in a split deployment: the proxy (role proxy) holds the call
// through the broker (role broker), which ends it when the grant is
// revoked there; the agent is told at once, and once the revocation
// stream has reached the proxy the same call is refused for its token.
func TestEndToEndProxyRoleRevokeEndsHeldCalls(t *testing.T) {
	const holdTimeout = time.Minute
	dir := t.TempDir()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"done"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer up.Close()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", up.URL, func(c *Config) {
		c.Rules = []rules.Rule{{Name: "destructive-sql", Pattern: `(?i)drop\s+table`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}}
		c.Proxy.HoldTimeout = holdTimeout
	})
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	if _, err := admin.VaultSet(t.Context(), "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}
	p := startRoleProxy(t, b.ts.app.BrokerURL(), filepath.Join(dir, "proxy-a"), mintIDToken(t, b, dir, "proxy-a"), 0)
	waitUntil(t, "enrollment", 10*time.Second, func() bool { code, _ := p.app.link.Refusal(); return code == "" })

	b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	b.ts.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	var g broker.Request
	json.Unmarshal([]byte(b.ts.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "-o", "json").must(t, "request").out), &g)
	tok := strings.TrimSpace(b.ts.as(t, "alice", "", "token", g.ID).must(t, "token").out)

	res := make(chan callResult, 1)
	go func() { res <- chatModel(t, p.app.ProxyURL(), tok, "gpt-4o", "please drop table users") }()
	waitUntil(t, "the held call in bob's queue", 30*time.Second, func() bool { return len(pendingFor(t, b.ts, "bob")) == 1 })
	b.ts.as(t, "alice", "", "revoke", g.ID).must(t, "revoke")
	select {
	case got := <-res:
		if got.status != http.StatusForbidden || !strings.Contains(got.body, g.ID) || !strings.Contains(got.body, "new grant") {
			t.Fatalf("the held call after its grant was revoked: %+v; want 403 saying the grant ended and to ask for a new one", got)
		}
	case <-time.After(holdTimeout / 2):
		t.Fatalf("the held call still waits %s after its grant was revoked", holdTimeout/2)
	}
	if q := pendingFor(t, b.ts, "bob"); len(q) != 0 {
		t.Fatalf("bob's queue after the revoke: %+v", q)
	}
	if n := heldOnGrant(t, b.ts, audit.TypePromptRefused, g.ID, "grant_ended"); n != 1 {
		t.Fatalf("%d prompt.refused grant_ended events, want 1", n)
	}
	// Sent again before the revocation stream reaches the proxy (here:
	// the hold the proxy then sends): refused at once, saying the grant
	// ended and what to do, not "the approval channel failed; retry".
	var claims token.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
		t.Fatal(err)
	}
	d, err := p.app.link.Hold(t.Context(), link.HoldRequest{Grant: g.ID, Claims: claims, Rule: "destructive-sql",
		Approvers: link.Subjects{Groups: []string{"security"}}, Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions",
		Excerpt: "please drop table users", PromptSHA256: strings.Repeat("ab", 32)})
	if err != nil || d.Approved || !strings.Contains(d.Reason, g.ID) || !strings.Contains(d.Reason, "new grant") {
		t.Fatalf("a hold on the revoked grant from a proxy that does not know yet: %+v, %v; want refused, saying the grant ended", d, err)
	}
	if n := heldOnGrant(t, b.ts, audit.TypePromptRefused, g.ID, "grant_ended"); n != 2 {
		t.Fatalf("%d prompt.refused grant_ended events, want 2", n)
	}
	// Sent again: refused (at once), never held again nor let through;
	// for its token once the revocation stream has reached the proxy.
	waitUntil(t, "the proxy to refuse the revoked token", 5*time.Second, func() bool {
		got := chatModel(t, p.app.ProxyURL(), tok, "gpt-4o", "please drop table users")
		if got.status == http.StatusOK {
			t.Fatalf("the same call on the revoked grant went through: %+v", got)
		}
		return got.status == http.StatusUnauthorized
	})
	if n := heldOnGrant(t, b.ts, audit.TypePromptHeld, g.ID, ""); n != 1 {
		t.Fatalf("%d calls held on the revoked grant, want the 1 before the revoke", n)
	}
}
