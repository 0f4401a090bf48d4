package cli

import (
	"net/http"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/tlsconf/tlstest"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// TestFactoryTransportFollowsFlags: a Factory that ran a command with a
// client certificate and then runs one without any must not keep
// presenting the first one's certificate (nor trusting its CA).
func TestFactoryTransportFollowsFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("PAMCTL_CONFIG", "")
	t.Setenv("PAMCTL_CA_FILE", "")
	t.Setenv("PAMCTL_CLIENT_CERT_FILE", "")
	t.Setenv("PAMCTL_CLIENT_KEY_FILE", "")
	ca := tlstest.NewCA(t, "clients")
	cert, key := ca.IssueFiles(t, dir, "laptop", time.Now().Add(time.Hour))
	ios, _, _, _ := iostreams.Test()
	f := NewFactory(ios)

	first := NewCmdRoot(f)
	if err := first.ParseFlags([]string{"--client-cert-file", cert, "--client-key-file", key}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Config(first); err != nil {
		t.Fatal(err)
	}
	tr, ok := f.HTTP.Transport.(*http.Transport)
	if !ok || tr.TLSClientConfig == nil || tr.TLSClientConfig.GetClientCertificate == nil {
		t.Fatalf("with a client certificate: %#v", f.HTTP.Transport)
	}

	second := NewCmdRoot(f)
	if _, err := f.Config(second); err != nil {
		t.Fatal(err)
	}
	if tr, ok := f.HTTP.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil && tr.TLSClientConfig.GetClientCertificate != nil {
		t.Fatal("a command without a client certificate still presents the previous command's")
	}
}
