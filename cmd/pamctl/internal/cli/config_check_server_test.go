package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `config check` judges server: as every CLI command does (api.CheckServer):
// plain http:// to a host that is not loopback is refused, whatever the
// role (the CLI refused it later, after "✓ valid").
func TestConfigCheckRefusesAPlaintextServer(t *testing.T) {
	dir := t.TempDir()
	for server, ok := range map[string]bool{
		"http://pam.example.com":  false,
		"http://10.0.0.5:8700":    false,
		"ftp://pam.example.com":   false,
		"https://pam.example.com": true,
		"http://127.0.0.1:8700":   true,
		"http://localhost:8700":   true,
		"http://[::1]:8700":       true,
	} {
		p := filepath.Join(dir, "config.yaml")
		body := "server: " + server + "\ndata_dir: " + filepath.Join(dir, "data") + "\nmaster_key_file: " + filepath.Join(dir, "master.key") + "\n"
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, "config", "check", "--config", p)
		switch {
		case ok && r.code != ExitOK:
			t.Errorf("server %s: %+v", server, r)
		case !ok && (r.code != ExitUsage || !strings.Contains(r.err, "server")):
			t.Errorf("server %s passed config check: %+v", server, r)
		}
	}
}
