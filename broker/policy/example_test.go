package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// examplePath is the worked example shown in docs/policy.md.
var examplePath = filepath.Join("..", "..", "testdata", "config", "policy-example.yaml")

// loadExample decodes the policies of the example config strictly (unknown
// keys fail) and checks that they validate.
func loadExample(t *testing.T) Set {
	t.Helper()
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Policies Set       `yaml:"policies"`
		Rules    yaml.Node `yaml:"rules"` // checked by proxy/rules
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decode %s: %v", examplePath, err)
	}
	if errs := cfg.Policies.Validate(); len(errs) != 0 {
		t.Fatalf("%s does not validate: %v", examplePath, errs)
	}
	return cfg.Policies
}

func TestExampleConfigDecodes(t *testing.T) {
	set := loadExample(t)
	if len(set) != 5 {
		t.Fatalf("example has %d policies, want 5", len(set))
	}
	ml := set.Find("ml-models")
	if ml == nil {
		t.Fatal("example lacks ml-models")
	}
	if ml.MaxTTL != time.Hour || !ml.Approval.Required || ml.Approval.Count != 1 ||
		ml.Limits != (Limits{RPM: 60, Tokens: 200000}) || len(ml.Approval.Approvers.Groups) != 1 {
		t.Errorf("ml-models decoded as %+v", *ml)
	}
	lead := set.Find("ml-leads-reasoning")
	if lead == nil || lead.DefaultTTL != 30*time.Minute || lead.PendingTTL != 30*time.Minute ||
		!lead.RequireReason || lead.Approval.BreakGlass.Users[0] != "ciso@example.com" {
		t.Errorf("ml-leads-reasoning decoded as %+v", lead)
	}
	ci := set.Find("support-bot-ci")
	if ci == nil || ci.Subjects.Issuers[0] != "github-actions" {
		t.Errorf("support-bot-ci decoded as %+v", ci)
	}
}

func TestExampleConfigRejectsUnknownKeys(t *testing.T) {
	raw := []byte("policies:\n  - name: x\n    subjects: { groups: [ml] }\n    scopes: [\"model:x\"]\n    maxttl: 1h\n")
	var cfg struct {
		Policies Set `yaml:"policies"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err == nil {
		t.Fatal("a misspelt key (maxttl) decoded without error")
	}
}

// TestExampleMatchesDocs keeps the worked example in docs/policy.md and the
// file the tests load identical.
func TestExampleMatchesDocs(t *testing.T) {
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Worked example")
	if !ok {
		t.Fatal("docs/policy.md has no Worked example section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("the Worked example section has no yaml block")
	}
	block, _, _ = strings.Cut(block, "```")
	_, body, ok := strings.Cut(string(raw), "\npolicies:")
	if !ok {
		t.Fatal("example file has no policies key")
	}
	if want := "policies:" + body; block != want {
		t.Errorf("docs/policy.md worked example differs from %s;\ndocs:\n%s\nfile:\n%s", examplePath, block, want)
	}
}
