package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/proxy/rules"
)

// A held call's REASON in `pamctl requests` is "where: text": a place
// that holds the punctuation of that view (an agent's role name "x):
// DROP", a place with "; ") is shown quoted, so it cannot pass for the
// boundary between the places and the text, or for two places; -o json
// has the place exactly.
func TestEndToEndRequestsReasonPlacesQuoted(t *testing.T) {
	for _, tc := range []struct{ where, shown string }{
		{`messages[0] (role "x): DROP")`, `"messages[0] (role ""x): DROP"")": hi`},
		// "; " only inside a name's quotes: a proxy writes nothing else,
		// and the broker refuses a place with one outside (audit.OnePlace).
		{`messages[0] (role "a; m[9]")`, `"messages[0] (role ""a; m[9]"")": hi`},
		{"messages[1] (user)", "messages[1] (user): hi"},
	} {
		s := startServerWith(t, nil)
		s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
		holdAliceText(t, s, tc.where, "hi")
		r := s.as(t, "alice", "", "requests").must(t, "requests")
		if !strings.Contains(r.out, tc.shown) {
			t.Errorf("place %q: requests does not show %q:\n%s", tc.where, tc.shown, r.out)
		}
		j := s.as(t, "alice", "", "requests", "-o", "json").must(t, "requests json")
		var rs []struct {
			Prompt struct {
				Matches []struct {
					Where []string `json:"where"`
				} `json:"matches"`
			} `json:"prompt"`
		}
		if err := json.Unmarshal([]byte(j.out), &rs); err != nil || len(rs) != 1 || len(rs[0].Prompt.Matches) != 1 || !slices.Equal(rs[0].Prompt.Matches[0].Where, []string{tc.where}) {
			t.Errorf("place %q: -o json is not exact (%v):\n%s", tc.where, err, j.out)
		}
	}
}

// Groups from the IdP are whatever its administrators named them: one
// holding ", " (or the parentheses around the list) is shown quoted by
// `pamctl login` and `pamctl whoami` (a parenthesis only where the list
// is in parentheses: login's line), so "a, b" reads as one group, not
// two; -o json has the groups exactly.
func TestEndToEndGroupsWithSeparatorsQuoted(t *testing.T) {
	s := startServer(t)
	groups := []string{"ml, security", "x) via evil (", "ops"}
	raw, err := s.app.devIss.Mint(devissuer.Claims{Subject: "carol", Groups: groups})
	if err != nil {
		t.Fatal(err)
	}
	login := s.as(t, "carol", raw, "login", "--id-token-file", "-").must(t, "login")
	const want = `("ml, security", "x) via evil (", ops)`
	if !strings.Contains(login.err, want) {
		t.Errorf("login does not show the groups quoted as %s:\n%s", want, login.err)
	}
	who := s.as(t, "carol", "", "whoami").must(t, "whoami")
	if !regexp.MustCompile(`(?m)^groups\s+"ml, security", x\) via evil \(, ops\s*$`).MatchString(who.out) {
		t.Errorf("whoami does not show the groups quoted:\n%s", who.out)
	}
	j := s.as(t, "carol", "", "whoami", "-o", "json").must(t, "whoami json")
	var me struct {
		Groups []string `json:"groups"`
	}
	if err := json.Unmarshal([]byte(j.out), &me); err != nil || !slices.Equal(me.Groups, groups) {
		t.Errorf("whoami -o json groups = %q (%v), want %q", me.Groups, err, groups)
	}
	// A lone group named "-" reads apart from no groups ("-").
	raw, err = s.app.devIss.Mint(devissuer.Claims{Subject: "dave", Groups: []string{"-"}})
	if err != nil {
		t.Fatal(err)
	}
	s.as(t, "dave", raw, "login", "--id-token-file", "-").must(t, "login")
	if who := s.as(t, "dave", "", "whoami").must(t, "whoami"); !regexp.MustCompile(`(?m)^groups\s+"-"\s*$`).MatchString(who.out) {
		t.Errorf("whoami shows a group named - as no groups:\n%s", who.out)
	}
}

// A held call's SCOPES in `pamctl requests` is "MODEL METHOD PATH
// [tool:TOOL] rule:RULE", and `pamctl approve` says "METHOD PATH to MODEL
// (rule RULE)": the model, the path and the tool are the agent's words,
// so one holding a space (or a quote) is shown quoted, and cannot pass
// for the fields after it (a model "gpt-4o rule:harmless").
//
// A Unicode space or a look-alike of the punctuation (a no-break space,
// U+037E for ';', a fullwidth parenthesis) is shown as it is by the
// escape, so a model holding one is quoted too.
func TestEndToEndHeldCallFieldsQuoted(t *testing.T) {
	for _, model := range []string{"gpt-4o rule:harmless", "gpt-4o\u00a0rule:harmless", "gpt-4o\u2003rule:harmless", "gpt-4o\uff08rule harmless\uff09"} {
		t.Run(model, func(t *testing.T) { heldCallFieldsQuoted(t, model) })
	}
}

func heldCallFieldsQuoted(t *testing.T, model string) {
	s := startServerWith(t, func(c *Config) {
		c.Rules = []rules.Rule{{Name: "dsql", Pattern: `(?i)drop\s+table`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}}
	})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "login")
	var grant struct{ ID string }
	json.Unmarshal([]byte(s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--nowait", "-o", "json").must(t, "request").out), &grant)
	s.as(t, "bob", "", "approve", grant.ID).must(t, "approve grant")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := (holder{s.app.broker}).Hold(ctx, proxy.HoldRequest{
		GrantID: grant.ID, Claims: &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ID: "jti"}, IdP: DevIssuerName, Groups: []string{"ml"}},
		Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}, Approvals: []rules.Approval{{Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}}},
		Model: model, Method: "POST", Endpoint: "/v1/chat/completions",
		PromptSHA256: strings.Repeat("ab", 32), Excerpt: "[found in messages[0] (user)]\nhi",
		Matches: []proxy.HeldMatch{{Where: []string{"messages[0] (user)"}, Text: "hi"}},
	}); err != nil {
		t.Fatal(err)
	}
	r := s.as(t, "alice", "", "requests").must(t, "requests")
	if !strings.Contains(r.out, `"`+model+`" POST /v1/chat/completions rule:dsql`) {
		t.Errorf("requests does not quote the model:\n%s", r.out)
	}
	j := s.as(t, "bob", "", "requests", "--pending", "-o", "json").must(t, "requests json")
	var rs []struct {
		ID     string
		Prompt struct{ Model string }
	}
	if err := json.Unmarshal([]byte(j.out), &rs); err != nil || len(rs) != 1 || rs[0].Prompt.Model != model {
		t.Fatalf("-o json: %v %s", err, j.out)
	}
	ok := s.as(t, "bob", "", "approve", rs[0].ID).must(t, "approve")
	if !strings.Contains(ok.out+ok.err, `POST /v1/chat/completions to "`+model+`" (rule dsql)`) {
		t.Errorf("approve does not quote the model: %+v", ok)
	}
}
