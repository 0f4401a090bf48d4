package oidc_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pamctl/pamctl/broker/oidc"
)

const (
	configDir = "../../testdata/config"
	docsFile  = "../../docs/identity.md"
)

// loadIssuers decodes the top-level issuers: list of a config file, refusing
// unknown keys so a typo in an example is caught.
func loadIssuers(t *testing.T, path string) []oidc.IssuerConfig {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Issuers []oidc.IssuerConfig `yaml:"issuers"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc.Issuers
}

func TestIdPExampleConfigsValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(configDir, "idp-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"okta", "entra", "google", "dex", "keycloak", "github-actions", "kubernetes", "dev"} {
		if !slices.Contains(files, filepath.Join(configDir, "idp-"+want+".yaml")) {
			t.Errorf("missing example %s/idp-%s.yaml", configDir, want)
		}
	}
	for _, f := range files {
		issuers := loadIssuers(t, f)
		if len(issuers) == 0 {
			t.Errorf("%s: no issuers", f)
		}
		for _, c := range issuers {
			if err := c.Validate(); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			workload := strings.Contains(f, "github-actions") || strings.Contains(f, "kubernetes")
			if c.Workload != workload {
				t.Errorf("%s: issuer %q workload = %v", f, c.Name, c.Workload)
			}
		}
		if _, err := oidc.NewVerifier(issuers, nil, nil); err != nil {
			t.Errorf("%s: NewVerifier: %v", f, err)
		}
	}
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestDocsExamplesAreTestdata keeps docs/identity.md and testdata/config in
// step: every issuers: example in the doc is one of the files, verbatim, and
// every file is shown in the doc.
func TestDocsExamplesAreTestdata(t *testing.T) {
	doc, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(configDir, "idp-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		contents[strings.TrimSpace(string(b))] = filepath.Base(f)
	}
	shown := map[string]bool{}
	for _, m := range yamlBlock.FindAllStringSubmatch(string(doc), -1) {
		block := strings.TrimSpace(m[1])
		if !regexp.MustCompile(`(?m)^issuers:`).MatchString(block) {
			continue
		}
		name, ok := contents[block]
		if !ok {
			t.Errorf("docs/identity.md has an issuers: example that is not a testdata/config/idp-*.yaml file:\n%s", block)
			continue
		}
		shown[name] = true
	}
	for _, name := range contents {
		if !shown[name] {
			t.Errorf("testdata/config/%s is not shown in docs/identity.md", name)
		}
	}
}

func TestIssuerConfigValidate(t *testing.T) {
	err := oidc.IssuerConfig{Scopes: []string{"email"}, AllowedDomains: []string{"@acme.com"}, RequiredClaims: map[string]string{"": "x"}}.Validate()
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, want := range []string{"name is required", "url is required", "client_id is required", "audience (or client_id) is required",
		"scopes must include openid", `allowed_domains: "@acme.com"`, "required_claims: empty claim name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}

	cases := map[string]struct {
		cfg oidc.IssuerConfig
		ok  bool
	}{
		"https":               {oidc.IssuerConfig{Name: "a", URL: "https://idp.example.com", ClientID: "c"}, true},
		"loopback http":       {oidc.IssuerConfig{Name: "a", URL: "http://127.0.0.1:8700/dev/oidc", ClientID: "c"}, true},
		"localhost http":      {oidc.IssuerConfig{Name: "a", URL: "http://localhost:8700", ClientID: "c"}, true},
		"remote http":         {oidc.IssuerConfig{Name: "a", URL: "http://idp.example.com", ClientID: "c"}, false},
		"query in URL":        {oidc.IssuerConfig{Name: "a", URL: "https://idp.example.com/?tenant=x", ClientID: "c"}, false},
		"relative URL":        {oidc.IssuerConfig{Name: "a", URL: "idp.example.com", ClientID: "c"}, false},
		"workload, audience":  {oidc.IssuerConfig{Name: "ci", URL: "https://token.actions.githubusercontent.com", Audience: "pamctl", Workload: true}, true},
		"workload, nothing":   {oidc.IssuerConfig{Name: "ci", URL: "https://token.actions.githubusercontent.com", Workload: true}, false},
		"user without client": {oidc.IssuerConfig{Name: "a", URL: "https://idp.example.com", Audience: "pamctl"}, false},
		"bad name":            {oidc.IssuerConfig{Name: "has space", URL: "https://idp.example.com", ClientID: "c"}, false},
		"admin socket's name": {oidc.IssuerConfig{Name: oidc.AdminIssuer, URL: "https://idp.example.com", ClientID: "c"}, false},
		"admin's, other case": {oidc.IssuerConfig{Name: "Unix-Socket", URL: "https://idp.example.com", ClientID: "c"}, false},
		"admin's, prefixed":   {oidc.IssuerConfig{Name: "unix-socket2", URL: "https://idp.example.com", ClientID: "c"}, true},
		"spaced groups claim": {oidc.IssuerConfig{Name: "a", URL: "https://idp.example.com", ClientID: "c", GroupsClaim: "my groups"}, false},
	}
	for name, tc := range cases {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", name, err, tc.ok)
		}
	}
}

func TestIssuerConfigDefaults(t *testing.T) {
	c := oidc.IssuerConfig{Name: "a", URL: "https://idp.example.com", ClientID: "pamctl"}.WithDefaults()
	if c.Audience != "pamctl" || c.GroupsClaim != "groups" || !slices.Equal(c.Scopes, []string{"openid", "email", "profile"}) {
		t.Errorf("defaults = %+v", c)
	}
	if c.GroupsSource != oidc.GroupsFromToken || !slices.Equal(c.DisplayClaims, []string{"preferred_username", "email", "name"}) {
		t.Errorf("login defaults = %q %q", c.GroupsSource, c.DisplayClaims)
	}
	c.DisplayClaims[0] = "changed"
	if oidc.DefaultDisplayClaims[0] != "preferred_username" {
		t.Error("WithDefaults shares DefaultDisplayClaims")
	}
	c.Scopes[0] = "changed"
	if oidc.DefaultScopes[0] != "openid" {
		t.Error("WithDefaults shares DefaultScopes")
	}
	c = oidc.IssuerConfig{ClientID: "pamctl", Audience: "api", GroupsClaim: "roles", Scopes: []string{"openid"}}.WithDefaults()
	if c.Audience != "api" || c.GroupsClaim != "roles" || !slices.Equal(c.Scopes, []string{"openid"}) {
		t.Errorf("explicit values replaced: %+v", c)
	}
}

func TestIssuerConfigLoginSettings(t *testing.T) {
	base := func(mod func(*oidc.IssuerConfig)) oidc.IssuerConfig {
		c := oidc.IssuerConfig{Name: "a", URL: "https://idp.example.com", ClientID: "c"}
		mod(&c)
		return c
	}
	workload := func(mod func(*oidc.IssuerConfig)) oidc.IssuerConfig {
		return base(func(c *oidc.IssuerConfig) { c.Workload = true; mod(c) })
	}
	cases := map[string]struct {
		cfg  oidc.IssuerConfig
		want string // "" = valid
	}{
		"secret file":             {base(func(c *oidc.IssuerConfig) { c.ClientSecretFile = "~/.config/pamctl/google" }), ""},
		"inline secret":           {base(func(c *oidc.IssuerConfig) { c.InlineClientSecret = "GOCSPX-abc" }), "client_secret_file"},
		"vault secret":            {base(func(c *oidc.IssuerConfig) { c.ClientSecretVault = "google" }), "client_secret_vault is not supported"},
		"fixed port":              {base(func(c *oidc.IssuerConfig) { c.RedirectPort = 8750 }), ""},
		"port too big":            {base(func(c *oidc.IssuerConfig) { c.RedirectPort = 70000 }), "redirect_port 70000"},
		"negative port":           {base(func(c *oidc.IssuerConfig) { c.RedirectPort = -1 }), "redirect_port -1"},
		"userinfo groups":         {base(func(c *oidc.IssuerConfig) { c.GroupsSource = "userinfo" }), ""},
		"unknown groups source":   {base(func(c *oidc.IssuerConfig) { c.GroupsSource = "graph" }), `groups_source "graph"`},
		"display claims":          {base(func(c *oidc.IssuerConfig) { c.DisplayClaims = []string{"name", "upn"} }), ""},
		"blank display claim":     {base(func(c *oidc.IssuerConfig) { c.DisplayClaims = []string{""} }), "display_claims"},
		"workload secret file":    {workload(func(c *oidc.IssuerConfig) { c.ClientSecretFile = "/x" }), "client_secret_file is for interactive logins"},
		"workload redirect port":  {workload(func(c *oidc.IssuerConfig) { c.RedirectPort = 8750 }), "redirect_port is for interactive logins"},
		"workload userinfo group": {workload(func(c *oidc.IssuerConfig) { c.GroupsSource = "userinfo" }), "groups_source: userinfo"},
	}
	for name, tc := range cases {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "GOCSPX-abc") {
			t.Errorf("%s: the error repeats the inline secret", name)
		}
	}
	if s := fmt.Sprintf("%v %+v %#v", oidc.RefusedSecret("GOCSPX-abc"), base(func(c *oidc.IssuerConfig) { c.InlineClientSecret = "GOCSPX-abc" }), oidc.RefusedSecret("GOCSPX-abc")); strings.Contains(s, "GOCSPX-abc") {
		t.Errorf("an inline secret prints: %s", s)
	}
}

// TestInlineSecretKeyDecodes: the client_secret key decodes (strict YAML
// knows it) so Validate can refuse it with advice instead of "unknown key".
func TestInlineSecretKeyDecodes(t *testing.T) {
	var doc struct {
		Issuers []oidc.IssuerConfig `yaml:"issuers"`
	}
	dec := yaml.NewDecoder(strings.NewReader("issuers:\n  - {name: g, url: https://accounts.google.com, client_id: c, client_secret: GOCSPX-abc}\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	err := doc.Issuers[0].Validate()
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("inline secret: %v", err)
	}
}

// allowed_domains are compared with the email's domain case-insensitively
// in ASCII only: a domain written with a capital outside ASCII never
// matches the lower-case domain an IdP sends, so config load refuses it.
func TestAllowedDomainWithNonASCIICapitalIsRefused(t *testing.T) {
	c := oidc.IssuerConfig{Name: "corp", URL: "https://idp.example.com", ClientID: "pamctl"}
	for _, d := range []string{"MÜNCHEN.example", "exampl\u212A.com"} {
		c.AllowedDomains = []string{"example.com", d}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "allowed_domains") || !strings.Contains(err.Error(), "lower case") {
			t.Errorf("allowed_domains %q: %v, want it refused, saying to write it in lower case", d, err)
		}
	}
	for _, d := range []string{"münchen.example", "Example.COM"} {
		c.AllowedDomains = []string{d}
		if err := c.Validate(); err != nil {
			t.Errorf("allowed_domains %q refused: %v", d, err)
		}
	}
}
