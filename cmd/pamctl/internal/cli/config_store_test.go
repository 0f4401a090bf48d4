package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadStoreConfig(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(file, nil)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func TestStoreConfigDefaultsToBbolt(t *testing.T) {
	cfg, err := loadStoreConfig(t, "{}\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Backend != BackendBbolt || cfg.Store.Etcd.Prefix != "/pamctl/" || cfg.Store.Etcd.DialTimeout != 5*time.Second {
		t.Fatalf("defaults: %+v", cfg.Store)
	}
}

func TestStoreConfigAcceptsEtcd(t *testing.T) {
	for _, yaml := range []string{
		"store: { backend: etcd, etcd: { endpoints: [http://127.0.0.1:2379] } }\n",
		"store: { backend: etcd, etcd: { endpoints: ['http://localhost:2379', 'http://[::1]:2379'], prefix: /team-a/pamctl/ } }\n",
		"store: { backend: etcd, etcd: { endpoints: [https://etcd-0.example.com:2379, https://etcd-1.example.com:2379], dial_timeout: 10s,\n  tls: { ca_file: /etc/pamctl/etcd-ca.pem, cert_file: /etc/pamctl/etcd.crt, key_file: /etc/pamctl/etcd.key },\n  username: pamctl, password_file: /etc/pamctl/etcd-password } }\n",
		"store: { backend: etcd, etcd: { endpoints: [https://etcd.example.com:2379] } }\n", // system roots
	} {
		if _, err := loadStoreConfig(t, yaml); err != nil {
			t.Errorf("%s: %v", yaml, err)
		}
	}
}

func TestStoreConfigRefusals(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"store: { backend: postgres }\n", `store.backend: "postgres" must be bbolt`},
		{"store: { backend: etcd }\n", "store.etcd.endpoints: list the etcd members"},
		{"store: { backend: etcd, etcd: { endpoints: [] } }\n", "store.etcd.endpoints: list"},
		// Plaintext off loopback is refused, saying to configure TLS.
		{"store: { backend: etcd, etcd: { endpoints: [http://10.0.0.5:2379] } }\n", "configure store.etcd.tls"},
		{"store: { backend: etcd, etcd: { endpoints: [http://etcd.example.com:2379] } }\n", "in clear off this host"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd-0:2379, http://etcd-1:2379] } }\n", "http://etcd-1:2379"},
		{"store: { backend: etcd, etcd: { endpoints: [http://127.0.0.1:2379], tls: { ca_file: /ca.pem } } }\n", "write https://127.0.0.1:2379"},
		{"store: { backend: etcd, etcd: { endpoints: [etcd-0:2379] } }\n", "not an etcd client URL"},
		{"store: { backend: etcd, etcd: { endpoints: ['https://root:hunter2@etcd:2379'] } }\n", "not an etcd client URL"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379/v3] } }\n", "not an etcd client URL"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], prefix: pamctl } }\n", "store.etcd.prefix"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], prefix: /pamctl } }\n", "store.etcd.prefix"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], prefix: /a//b/ } }\n", "store.etcd.prefix"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], tls: { cert_file: /c.pem } } }\n", "cert_file and key_file go together"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], username: pamctl } }\n", "username and password_file go together"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], password_file: /p } }\n", "username and password_file go together"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], dial_timeout: 10ms } }\n", "store.etcd.dial_timeout"},
		{"store: { backend: etcd, etcd: { endpoints: [https://etcd:2379], password: hunter2 } }\n", "password"},
	} {
		_, err := loadStoreConfig(t, tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.yaml, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", tc.yaml, err)
		}
	}
}

// The password is read from password_file through safefile (a regular,
// small file; no FIFO or device), without its trailing newline, and an
// empty file is refused.
func TestEtcdStoreConfigReadsFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	cfg := &Config{Store: StoreConfig{Backend: BackendEtcd, Etcd: EtcdConfig{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/pamctl/", Username: "pamctl", PasswordFile: pw}}}
	ec, err := cfg.EtcdStoreConfig()
	if err != nil || ec.Password != "s3cret" || ec.Username != "pamctl" || ec.TLS != nil {
		t.Fatalf("%+v %v", ec, err)
	}
	os.WriteFile(pw, nil, 0o600)
	if _, err := cfg.EtcdStoreConfig(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty password file: %v", err)
	}
	cfg.Store.Etcd.PasswordFile = dir // a directory
	if _, err := cfg.EtcdStoreConfig(); err == nil || !strings.Contains(err.Error(), "store.etcd.password_file") {
		t.Fatalf("a directory as password file: %v", err)
	}
	cfg.Store.Etcd.PasswordFile = ""
	cfg.Store.Etcd.Endpoints = []string{"https://etcd:2379"}
	cfg.Store.Etcd.TLS.CAFile = pw // no PEM in it
	os.WriteFile(pw, []byte("not a certificate"), 0o600)
	if _, err := cfg.EtcdStoreConfig(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA file without certificates: %v", err)
	}
	cfg.Store.Etcd.TLS.CAFile = ""
	ec, err = cfg.EtcdStoreConfig()
	if err != nil || ec.TLS == nil || ec.TLS.RootCAs != nil {
		t.Fatalf("https without ca_file uses the system roots: %+v %v", ec.TLS, err)
	}
}

// Admin commands with no server running would open pamctl.db, which does
// not hold the state with etcd: they are refused, saying what to do.
func TestEtcdBackendRefusesOfflineAdmin(t *testing.T) {
	cfg := &Config{Store: StoreConfig{Backend: BackendEtcd}}
	if _, err := openLocal(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "while a replica is serving") {
		t.Fatalf("offline admin with etcd: %v", err)
	}
}

// pamctl store backup copies a bbolt data dir; with etcd it refuses before
// asking any server, and says how to back up the cluster.
func TestStoreBackupRefusesWithEtcd(t *testing.T) {
	writeConfig(t, "")
	t.Setenv("PAMCTL_DATA_DIR", t.TempDir())
	t.Setenv("PAMCTL_STORE_BACKEND", "etcd")
	t.Setenv("PAMCTL_STORE_ETCD_ENDPOINTS", "http://127.0.0.1:1")
	r := runCLI(t, "store", "backup", "--to", filepath.Join(t.TempDir(), "copy.db"))
	if r.code != ExitUsage || !strings.Contains(r.err, "etcdctl snapshot save") {
		t.Fatalf("store backup with etcd: %+v", r)
	}
}

// pamctl config check reads the etcd files serve would read.
func TestConfigCheckReadsEtcdFiles(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, "store: { backend: etcd, etcd: { endpoints: [http://127.0.0.1:2379], username: pamctl, password_file: "+filepath.Join(dir, "missing")+" } }\n")
	t.Setenv("PAMCTL_DATA_DIR", filepath.Join(dir, "data"))
	r := runCLI(t, "config", "check", "--config", file)
	if r.code != ExitUsage || !strings.Contains(r.err, "store.etcd.password_file") {
		t.Fatalf("config check with a missing password file: %+v", r)
	}
	os.WriteFile(filepath.Join(dir, "missing"), []byte("pw\n"), 0o600)
	if r := runCLI(t, "config", "check", "--config", file); r.code != ExitOK || strings.Contains(r.out+r.err, "pw\n") {
		t.Fatalf("config check with the file: %+v", r)
	}
}
