package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestConfigIssuerLoginSettings: the issuer login settings decode from the
// config file through viper, and an inline client_secret is refused with
// advice and without being repeated.
func TestConfigIssuerLoginSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := LoadConfig(write(`
issuers:
  - name: okta
    url: https://acme.okta.com/oauth2/default
    client_id: pamctl
    client_secret_file: ~/.config/pamctl/okta-secret
    redirect_port: 8750
    groups_source: userinfo
    display_claims: [name, email]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	is := cfg.Issuers[0]
	if is.ClientSecretFile != "~/.config/pamctl/okta-secret" || is.RedirectPort != 8750 || is.GroupsSource != "userinfo" || !slices.Equal(is.DisplayClaims, []string{"name", "email"}) {
		t.Fatalf("decoded issuer = %+v", is)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	cfg, err = LoadConfig(write(`
issuers:
  - name: google
    url: https://accounts.google.com
    client_id: pamctl
    client_secret: GOCSPX-not-a-real-secret
  - name: entra
    url: https://login.microsoftonline.com/t/v2.0
    client_id: pamctl
    client_secret_vault: entra
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("inline and vaulted client secrets accepted")
	}
	for _, want := range []string{"client_secret must not be written in the config file", "client_secret_file", "client_secret_vault is not supported"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "GOCSPX-not-a-real-secret") {
		t.Error("the error repeats the inline secret")
	}
}
