package oidc_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// An issuer whose discovery document's claims_supported leaves auth_time
// out gets a warning (serve logs it when its probe reads the document),
// unless the issuer opted out of auth_time or is a workload issuer; the
// opt-out itself is warned about.
func TestDiscoveryWarnsWithoutAuthTime(t *testing.T) {
	for _, c := range []struct {
		name    string
		without bool
		cfg     oidc.IssuerConfig
		want    string
	}{
		{"sends auth_time", false, oidc.IssuerConfig{Name: "corp"}, ""},
		{"no auth_time", true, oidc.IssuerConfig{Name: "corp"}, `issuer "corp": its discovery document's claims_supported does not list auth_time`},
		{"opted out", true, oidc.IssuerConfig{Name: "corp", StepUpWithoutAuthTime: true}, ""},
		{"workload", true, oidc.IssuerConfig{Name: "ci", Workload: true}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(nil)
			defer srv.Close()
			var opts []devissuer.Option
			if c.without {
				opts = append(opts, devissuer.WithoutAuthTime())
			}
			iss, err := devissuer.New(srv.URL, opts...)
			if err != nil {
				t.Fatal(err)
			}
			srv.Config.Handler = iss
			d, err := oidc.CheckDiscovery(context.Background(), srv.Client(), srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(c.cfg.DiscoveryWarnings(d), "\n")
			if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
				t.Fatalf("warnings %q, want %q", got, c.want)
			}
		})
	}
	if ws := (oidc.IssuerConfig{Name: "corp", StepUpWithoutAuthTime: true}).StepUpWarnings(); len(ws) != 1 || !strings.Contains(ws[0], "step_up_without_auth_time is set") {
		t.Fatalf("opt-out warnings: %q", ws)
	}
	if ws := (oidc.IssuerConfig{Name: "corp"}).StepUpWarnings(); len(ws) != 0 {
		t.Fatalf("warnings without the opt-out: %q", ws)
	}
}

// A token without auth_time verifies with no auth time (it cannot step
// up), unless the issuer opted out (step_up_without_auth_time) or is a
// workload issuer: then the verification's time stands in.
func TestVerifyWithoutAuthTime(t *testing.T) {
	srv := httptest.NewServer(nil)
	defer srv.Close()
	iss, err := devissuer.New(srv.URL, devissuer.WithoutAuthTime())
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss
	now := time.Now().UTC().Truncate(time.Second)
	for _, c := range []struct {
		cfg  oidc.IssuerConfig
		want time.Time
	}{
		{oidc.IssuerConfig{Name: "corp", URL: srv.URL, ClientID: devissuer.DefaultClientID}, time.Time{}},
		{oidc.IssuerConfig{Name: "corp", URL: srv.URL, ClientID: devissuer.DefaultClientID, StepUpWithoutAuthTime: true}, now},
		{oidc.IssuerConfig{Name: "ci", URL: srv.URL, Audience: devissuer.DefaultClientID, Workload: true}, now},
	} {
		v, err := oidc.NewVerifier([]oidc.IssuerConfig{c.cfg}, srv.Client(), func() time.Time { return now })
		if err != nil {
			t.Fatal(err)
		}
		raw, err := iss.Mint(devissuer.Claims{Subject: "bob", IssuedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		id, err := v.Verify(context.Background(), raw, "")
		if err != nil || !id.AuthTime.Equal(c.want) {
			t.Errorf("%+v: %v, auth time %v, want %v", c.cfg, err, id.AuthTime, c.want)
		}
	}
}
