package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/proxy/rules"
)

// The in-process holder hands the broker everything an approver is shown
// of a held call: its method, and the excerpt's pieces with the places the
// rule matched in them and its count line.
func TestHolderCarriesWhatApproversSee(t *testing.T) {
	s := startServerWith(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d, err := holder{s.app.broker}.Hold(ctx, proxy.HoldRequest{
		GrantID: "req_g", Claims: &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ID: "jti"}, IdP: DevIssuerName, Groups: []string{"ml"}},
		Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}, Approvals: []rules.Approval{{Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}}},
		Model: "gpt-4o-mini", Method: "DELETE", Endpoint: "/v1/chat/completions/c1", PromptSHA256: strings.Repeat("ab", 32),
		Excerpt:      "[prompt of 5000 bytes; rule \"dsql\" matches 2 times]\n[found in messages[0] (system)]\n…drop table a…\n[found in messages[3] (tool)]\n…drop table b",
		MatchSummary: `prompt of 5000 bytes; rule "dsql" matches 2 times`,
		Matches:      []proxy.HeldMatch{{Where: []string{"messages[0] (system)"}, Text: "…drop table a…"}, {Where: []string{"messages[3] (tool)"}, Text: "…drop table b"}},
	})
	if err != nil || d.ID == "" {
		t.Fatalf("hold: %v %+v", err, d)
	}
	r, err := s.app.broker.Get(context.Background(), broker.Identity{Subject: "alice", Issuer: DevIssuerName}, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Prompt
	if p.Method != "DELETE" || p.Call() != "DELETE /v1/chat/completions/c1" || p.MatchSummary != `prompt of 5000 bytes; rule "dsql" matches 2 times` ||
		len(p.Matches) != 2 || p.Matches[1].Where[0] != "messages[3] (tool)" || p.Matches[1].Text != "…drop table b" {
		t.Fatalf("held as %+v", p)
	}
}

// Places name what the agent chose (a role): whatever reaches the broker,
// `pamctl requests` prints it escaped, on the held call's one row, and -o
// json exactly.
func TestEndToEndHeldPlacesPrintInert(t *testing.T) {
	s := startServerWith(t, nil)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	// The role as the proxy quotes it (audit.QuoteLine): raw but for its
	// line feed, which a place cannot hold (the broker refuses one).
	place := "messages[1] (role " + audit.QuoteLine("\x1b[2Kuser\n[ok]\u202e") + ")"
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := (holder{s.app.broker}).Hold(ctx, proxy.HoldRequest{
		GrantID: "req_g", Claims: &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ID: "jti"}, IdP: DevIssuerName, Groups: []string{"ml"}},
		Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}, Model: "gpt-4o-mini", Method: "POST", Endpoint: "/v1/chat/completions",
		PromptSHA256: strings.Repeat("ab", 32), Excerpt: "[found in " + place + "]\nDROP TABLE t",
		Matches: []proxy.HeldMatch{{Where: []string{place}, Text: "DROP TABLE t"}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tty := range []bool{true, false} {
		var r result
		if tty {
			r = s.asTTY(t, "alice", "requests")
		} else {
			r = s.as(t, "alice", "", "requests")
		}
		r.must(t, "requests")
		inert(t, "requests", r.out+r.err)
		// Cut at 40 once escaped, between escapes (safetext.Clip); a
		// line break shows as \n, not as a space.
		// The place holds quotes: shown quoted, its quotes doubled
		// (safetext.Join), so it cannot imitate the ": " after it.
		if !strings.Contains(r.out, `"messages[1] (role ""\x1b[2Kuser""⏎""[o…`) || strings.Count(strings.TrimRight(r.out, "\n"), "\n")+1 != 1+map[bool]int{true: 1}[tty] {
			t.Fatalf("requests (tty=%v):\n%s\n%s", tty, r.out, r.err)
		}
	}
	r := s.as(t, "alice", "", "requests", "-o", "json").must(t, "requests -o json")
	if !strings.Contains(r.out, `"where": [`) || !strings.Contains(r.out, `\u001b[2Kuser\"⏎\"[ok]\u202e`) {
		t.Fatalf("requests -o json:\n%s", r.out)
	}
}

// A held call whose grant ends while it waits is not released, and the
// agent is told why at once, not that no approver came in time.
func TestHolderSaysTheGrantEnded(t *testing.T) {
	s := startWithRulesV1(t)
	grant := liveGrantFor(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type outcome struct {
		d   proxy.HoldDecision
		err error
	}
	got := make(chan outcome, 1)
	go func() {
		d, err := holder{s.app.broker}.Hold(ctx, proxy.HoldRequest{
			GrantID: grant, Claims: &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ID: "jti"}, IdP: DevIssuerName, Groups: []string{"ml"}},
			Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}, Model: "gpt-4o-mini", Method: "POST", Endpoint: "/v1/chat/completions",
			PromptSHA256: strings.Repeat("ab", 32), Excerpt: "DROP TABLE t",
		})
		got <- outcome{d, err}
	}()
	bob := broker.Identity{Subject: "bob", Issuer: DevIssuerName, Groups: []string{"security"}, AuthTime: time.Now()}
	for held := false; !held; time.Sleep(10 * time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatal("the call was never held")
		}
		rs, err := s.app.broker.List(context.Background(), bob, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			held = held || r.Kind == broker.KindPrompt
		}
	}
	if _, err := s.app.broker.Revoke(context.Background(), broker.AdminIdentity, grant, true); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-got:
		if o.err != nil || o.d.Approved || !strings.Contains(o.d.Reason, grant) || !strings.Contains(o.d.Reason, "new grant") {
			t.Fatalf("decision %+v, %v: want refused, naming the grant and what to do", o.d, o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held call still waits after its grant was revoked")
	}
}

// A call on a grant that has already ended is refused at once, never
// held: the decision has no hold ID, and its reason says why and what to
// do without saying the call was "not released" (the proxy words it as
// refused without being held).
func TestHolderRefusesAtOnceOnAnEndedGrant(t *testing.T) {
	s := startWithRulesV1(t)
	grant := liveGrantFor(t, s, "alice")
	if _, err := s.app.broker.Revoke(context.Background(), broker.AdminIdentity, grant, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := holder{s.app.broker}.Hold(ctx, proxy.HoldRequest{
		GrantID: grant, Claims: &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ID: "jti"}, IdP: DevIssuerName, Groups: []string{"ml"}},
		Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}, Model: "gpt-4o-mini", Method: "POST", Endpoint: "/v1/chat/completions",
		PromptSHA256: strings.Repeat("ab", 32), Excerpt: "DROP TABLE t",
	})
	if err != nil || d.Approved || d.ID != "" || !strings.Contains(d.Reason, grant) || !strings.Contains(d.Reason, "new grant") {
		t.Fatalf("decision %+v, %v: want refused at once (no hold), naming the grant and what to do", d, err)
	}
	if strings.Contains(d.Reason, "not released") {
		t.Fatalf("a call never held reads %q", d.Reason)
	}
}

// startWithRulesV1 starts a server with rulesConfigV1's policies and rules.
func startWithRulesV1(t *testing.T) *testServer {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(rulesConfigV1), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, func(c *Config) {
		loaded, err := LoadConfig(file, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Policies, c.Rules = loaded.Policies, loaded.Rules
	})
}
