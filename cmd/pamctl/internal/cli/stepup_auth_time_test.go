package cli

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// issuers[].step_up_without_auth_time is accepted, shown by config check,
// and warned about while it is set (serve logs the same warning).
func TestConfigCheckWarnsStepUpWithoutAuthTime(t *testing.T) {
	const base = "issuers:\n  - { name: corp, url: https://idp.example.com, client_id: pamctl"
	r := runCLI(t, "config", "check", "--config", writeConfig(t, base+", step_up_without_auth_time: true }\n"))
	if r.code != ExitOK || !strings.Contains(r.err, `issuer "corp": step_up_without_auth_time is set`) || !strings.Contains(r.out, "step_up_without_auth_time: true") {
		t.Fatalf("with the opt-out: %+v", r)
	}
	r = runCLI(t, "config", "check", "--config", writeConfig(t, base+" }\n"))
	if r.code != ExitOK || strings.Contains(r.err, "step_up_without_auth_time") {
		t.Fatalf("without the opt-out: %+v", r)
	}
}

// serve's issuer probe reads the discovery document; when its
// claims_supported leaves auth_time out, serve logs a warning, once.
func TestIssuerProbeWarnsWithoutAuthTime(t *testing.T) {
	for _, c := range []struct {
		name     string
		opts     []devissuer.Option
		optOut   bool
		warnings int
	}{
		{"sends auth_time", nil, false, 0},
		{"no auth_time", []devissuer.Option{devissuer.WithoutAuthTime()}, false, 1},
		{"no auth_time, opted out", []devissuer.Option{devissuer.WithoutAuthTime()}, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(nil)
			defer srv.Close()
			iss, err := devissuer.New(srv.URL, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			srv.Config.Handler = iss
			var logs bytes.Buffer
			a := &App{cfg: &Config{Issuers: []oidc.IssuerConfig{{Name: "corp", URL: srv.URL, ClientID: "pamctl", StepUpWithoutAuthTime: c.optOut}}},
				log: slog.New(slog.NewTextHandler(&logs, nil))}
			for _, p := range a.probes() {
				if p.name != checkIssuer+"corp" {
					continue
				}
				for range 2 {
					if err := p.run(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := strings.Count(logs.String(), "claims_supported does not list auth_time"); n != c.warnings {
				t.Fatalf("%d warnings, want %d:\n%s", n, c.warnings, logs.String())
			}
		})
	}
}
