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

const rulesConfigV1 = reloadConfigV1 + `
rules:
  - { name: dsql, pattern: "(?i)drop\\s+table", action: require_approval, approvers: { groups: [security] } }
`

const rulesConfigV2 = reloadConfigV1 + `
rules:
  - { name: dsql, pattern: "(?i)drop\\s+table", action: require_approval, approvers: { groups: [dba] } }
`

// A reload that changes a rule's approvers takes effect on calls already
// held: serve wires the rules in force into the broker on every reload.
func TestEndToEndReloadChangesWhoReleasesHeldCalls(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(rulesConfigV1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, func(c *Config) {
		loaded, err := LoadConfig(file, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Policies, c.Rules, c.File = loaded.Policies, loaded.Rules, file
	})
	reload := func() (*Config, error) {
		cfg, err := LoadConfig(file, nil)
		if err != nil {
			return nil, err
		}
		cfg.Issuers, cfg.Broker, cfg.Proxy, cfg.DataDir = s.app.cfg.Issuers, s.app.cfg.Broker, s.app.cfg.Proxy, s.app.cfg.DataDir
		return cfg, cfg.Validate()
	}
	s.reload.Store(&reload)

	grant := liveGrantFor(t, s, "alice")
	hold := func(sha string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		d, err := holder{s.app.broker}.Hold(ctx, proxy.HoldRequest{
			GrantID: grant, Claims: &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ID: "jti"}, IdP: DevIssuerName, Groups: []string{"ml"}},
			Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}, Approvals: []rules.Approval{{Rule: "dsql", Approvers: rules.Approvers{Groups: []string{"security"}}}},
			Model: "gpt-4o-mini", Excerpt: "drop table x", PromptSHA256: strings.Repeat(sha, 32),
		})
		if err != nil || d.Approved {
			t.Fatalf("hold: %v %+v", err, d)
		}
		return d.ID
	}
	bob := broker.Identity{Subject: "bob", Issuer: DevIssuerName, Groups: []string{"security"}, AuthTime: time.Now()}
	first := hold("ab")
	if _, err := s.app.broker.Review(context.Background(), bob, first, true, "", nil); err != nil {
		t.Fatalf("approver under the rules in force: %v", err)
	}
	second := hold("cd")
	os.WriteFile(file, []byte(rulesConfigV2), 0o600)
	waitForEvent(t, s, audit.TypeConfigReloaded, 1)
	if _, err := s.app.broker.Review(context.Background(), bob, second, true, "", nil); err == nil {
		t.Fatal("an approver the reload removed released a held call")
	}
}
