package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/broker/tlsconf/tlstest"
)

// TestBrokerMTLSClients: a broker that requires client certificates
// (broker.tls.client_ca_file) admits the CLI and a proxy-role process
// that present client_cert_file, and refuses the rest with a message
// naming the setting.
func TestBrokerMTLSClients(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PAMCTL_CA_FILE", "")
	t.Setenv("PAMCTL_CLIENT_CERT_FILE", "")
	t.Setenv("PAMCTL_CLIENT_KEY_FILE", "")
	files, err := tlsconf.GenerateDev(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	clients, rogue := tlstest.NewCA(t, "clients"), tlstest.NewCA(t, "rogue")
	goodCert, goodKey := clients.IssueFiles(t, dir, "laptop-1", time.Now().Add(time.Hour))
	rogueCert, rogueKey := rogue.IssueFiles(t, dir, "laptop-2", time.Now().Add(time.Hour))
	expiredCert, expiredKey := clients.IssueFiles(t, dir, "laptop-3", time.Now().Add(-time.Second))

	b := startRoleBroker(t, dir, "127.0.0.1:0", "http://127.0.0.1:1", func(c *Config) {
		if err := applyDevTLSFiles(c, files); err != nil {
			t.Fatal(err)
		}
		c.Broker.TLS.ClientCAFile = clients.WriteFile(t, dir, "clients")
		// The dev issuer is behind the same listener: the broker reaches
		// it with a client certificate too.
		c.ClientCertFile, c.ClientKeyFile = goodCert, goodKey
	})
	brokerURL := b.ts.app.BrokerURL()
	if !strings.HasPrefix(brokerURL, "https://") {
		t.Fatalf("broker at %s", brokerURL)
	}
	t.Setenv("PAMCTL_CA_FILE", files.CAFile)

	for name, args := range map[string][]string{
		"no certificate":      nil,
		"another CA's":        {"--client-cert-file", rogueCert, "--client-key-file", rogueKey},
		"expired certificate": {"--client-cert-file", expiredCert, "--client-key-file", expiredKey},
	} {
		r := b.ts.as(t, "alice", "", append([]string{"login", "--user", "alice", "--groups", "ml"}, args...)...)
		if r.code != ExitUnreachable || !strings.Contains(r.err, "requires a client certificate") || !strings.Contains(r.err, "--client-cert-file") {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if r := b.ts.as(t, "alice", "", "whoami", "--client-cert-file", goodCert); r.code != ExitUsage || !strings.Contains(r.err, "client_key_file") || !strings.Contains(r.err, "both") {
		t.Fatalf("a certificate without its key: %+v", r)
	}
	junk := filepath.Join(dir, "junk.crt")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if r := b.ts.as(t, "alice", "", "whoami", "--client-cert-file", junk, "--client-key-file", goodKey); r.code != ExitUsage || !strings.Contains(r.err, "client_cert_file") {
		t.Fatalf("a junk certificate: %+v", r)
	}

	// With the certificate (flags, then the environment) the CLI works:
	// the login through the dev issuer behind the same listener included.
	b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml", "--client-cert-file", goodCert, "--client-key-file", goodKey).must(t, "login with a client certificate")
	t.Setenv("PAMCTL_CLIENT_CERT_FILE", goodCert)
	t.Setenv("PAMCTL_CLIENT_KEY_FILE", goodKey)
	if r := b.ts.as(t, "alice", "", "whoami").must(t, "whoami with PAMCTL_CLIENT_CERT_FILE"); !strings.Contains(r.out, "alice") {
		t.Fatalf("whoami: %s", r.out)
	}

	// A proxy-role process enrolls with its certificate; without one the
	// broker's listener never lets it ask.
	idTok := mintIDToken(t, b, dir, "proxy-a")
	pa := startRoleProxy(t, brokerURL, filepath.Join(dir, "proxy-a"), idTok, 0, func(c *Config) {
		c.CAFile, c.ClientCertFile, c.ClientKeyFile = files.CAFile, goodCert, goodKey
	})
	waitUntil(t, "enrollment over mTLS", 15*time.Second, func() bool { code, _ := pa.app.link.Refusal(); return code == "" && pa.app.link.Enrollment() != nil })
	pb := startRoleProxy(t, brokerURL, filepath.Join(dir, "proxy-b"), mintIDToken(t, b, dir, "proxy-b"), 0, func(c *Config) {
		c.CAFile, c.ClientCertFile, c.ClientKeyFile = files.CAFile, "", ""
	})
	time.Sleep(500 * time.Millisecond)
	if pb.app.link.Enrollment() != nil {
		t.Fatal("a proxy without a client certificate enrolled")
	}
}
