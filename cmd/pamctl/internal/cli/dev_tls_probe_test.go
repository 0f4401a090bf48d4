package cli

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestDevTLSIssuerProbeTrustsCAFile: under serve --dev --tls the dev
// issuer is the broker itself, signed by the dev CA (the ca_file); the
// /readyz issuer probe must trust ca_file as logins do, or issuer/dev
// shows degraded forever.
func TestDevTLSIssuerProbeTrustsCAFile(t *testing.T) {
	s, files := startTLSServer(t)
	var ran bool
	for _, p := range s.app.probes() {
		if p.name != checkIssuer+DevIssuerName {
			continue
		}
		ran = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.run(ctx)
		cancel()
		if err != nil {
			t.Fatalf("issuer probe against the dev TLS broker: %v", err)
		}
	}
	if !ran {
		t.Fatal("no issuer/dev probe")
	}
	hc := trusting(t, files.CAFile)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Get(s.app.BrokerURL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "issuer/") {
			t.Fatalf("/readyz lists an issuer as degraded under dev TLS:\n%s", b)
		}
	}
}
