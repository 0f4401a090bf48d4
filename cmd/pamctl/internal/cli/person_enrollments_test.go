package cli

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit/logtest"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/oidc"
)

// A live enrollment a person made before only workloads could enroll
// (refused at every route now) is named at start, by its fingerprint, so
// an admin revokes it and replaces the provider keys; a workload's is not.
func TestServeWarnsOfEnrollmentsByPersons(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	open := func(log *slog.Logger) *App {
		t.Helper()
		cfg, err := LoadConfig("", nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Role = RoleBroker
		cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.DataDir, cfg.MasterKeyFile = filepath.Join(dir, "data"), filepath.Join(dir, "master.key")
		cfg.Issuers = []oidc.IssuerConfig{{Name: "corp", URL: "https://idp.example.com", ClientID: "pamctl"},
			{Name: "k8s", URL: "https://k8s.example.com", ClientID: "pamctl", Workload: true}}
		app, err := NewApp(context.Background(), cfg, AppOptions{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return app
	}
	app := open(slog.New(slog.DiscardHandler))
	for _, e := range []*link.Enrollment{
		{ID: "alicesproxy00001", Subject: "alice", Issuer: "corp", Enrolled: time.Now(), ExpiresAt: time.Now().Add(time.Hour)},
		{ID: "workloadproxy001", Subject: "system:serviceaccount:pam:pamctl-proxy", Issuer: "k8s", Enrolled: time.Now(), ExpiresAt: time.Now().Add(time.Hour)},
	} {
		if err := app.state.PutEnrollment(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	app.Close()
	buf := &logtest.Buffer{}
	app = open(slog.New(slog.NewTextHandler(buf, nil)))
	defer app.Close()
	out := buf.String()
	if !strings.Contains(out, "a person enrolled a local proxy") || !strings.Contains(out, link.Fingerprint("alicesproxy00001")) || !strings.Contains(out, "subject=alice") {
		t.Fatalf("no warning naming alice's enrollment:\n%s", out)
	}
	if strings.Contains(out, link.Fingerprint("workloadproxy001")) || strings.Contains(out, "alicesproxy00001") {
		t.Fatalf("the warning names a workload's enrollment, or an enrollment id:\n%s", out)
	}
}
