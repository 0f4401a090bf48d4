package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The metrics listener follows the other listeners' rule: off loopback,
// plaintext needs metrics.insecure_plaintext (or metrics.tls).
func TestMetricsListenerRefusesPlaintextOffLoopback(t *testing.T) {
	cfg := &Config{}
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	if err := cfg.CheckTLS(); err != nil {
		t.Fatalf("metrics off: %v", err)
	}
	cfg.Metrics.Addr = "127.0.0.1:9700"
	if err := cfg.CheckTLS(); err != nil {
		t.Fatalf("loopback metrics: %v", err)
	}
	cfg.Metrics.Addr = "0.0.0.0:9700"
	err := cfg.CheckTLS()
	if err == nil || !strings.Contains(err.Error(), "metrics") || !strings.Contains(err.Error(), "insecure_plaintext") {
		t.Fatalf("plaintext metrics off loopback: %v", err)
	}
	cfg.Metrics.InsecurePlaintext = true
	if err := cfg.CheckTLS(); err != nil {
		t.Fatalf("with insecure_plaintext: %v", err)
	}
	cfg.Metrics.InsecurePlaintext = false
	cfg.Metrics.TLS.CertFile = "/nonexistent/cert.pem"
	cfg.Metrics.TLS.KeyFile = "/nonexistent/key.pem"
	if err := cfg.CheckTLS(); err == nil || !strings.Contains(err.Error(), "metrics.tls") {
		t.Fatalf("unreadable metrics.tls: %v", err)
	}
}

// serve refuses to start on such a config.
func TestServeRefusesPlaintextMetricsOffLoopback(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker.Addr, cfg.Proxy.Addr, cfg.Metrics.Addr = "127.0.0.1:0", "127.0.0.1:0", "0.0.0.0:0"
	cfg.DataDir, cfg.MasterKeyFile = filepath.Join(dir, "data"), filepath.Join(dir, "master.key")
	app, err := NewApp(context.Background(), cfg, AppOptions{Dev: true})
	if err == nil {
		app.Close()
		t.Fatal("serve started with plaintext metrics on 0.0.0.0")
	}
	if !strings.Contains(err.Error(), "metrics") || exitCodeOf(err) != ExitUsage {
		t.Fatalf("error %v (exit %d)", err, exitCodeOf(err))
	}
}
