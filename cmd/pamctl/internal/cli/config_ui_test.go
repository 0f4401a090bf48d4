package cli

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestUIConfig(t *testing.T) {
	for _, c := range []struct{ name, yaml, err string }{
		{"off by default", "", ""},
		{"on", "ui: { enabled: true, public_url: https://pam.example.com }\n", ""},
		{"loopback http", "ui: { enabled: true, public_url: 'http://127.0.0.1:8700' }\n", "ui.public_url: plain http: browsers send the session cookie to every port"},
		{"loopback http allowed", "ui: { enabled: true, public_url: 'http://127.0.0.1:8700', insecure_plaintext: true }\n", ""},
		{"proxy role links to loopback http", "role: proxy\nserver: http://127.0.0.1:8700\nproxy: { identity: { id_token_file: /dev/null } }\nui: { public_url: 'http://127.0.0.1:8700' }\n", ""},
		{"no url", "ui: { enabled: true }\n", "ui.public_url: is required"},
		{"plain http", "ui: { enabled: true, public_url: 'http://pam.example.com' }\n", "plain http off loopback"},
		{"a path", "ui: { enabled: true, public_url: 'https://pam.example.com/pam' }\n", "has a path"},
		{"a query", "ui: { enabled: true, public_url: 'https://pam.example.com/?next=x' }\n", "has a query"},
		{"proxy role", "role: proxy\nui: { enabled: true, public_url: 'https://pam.example.com' }\n", "not by a proxy-role process"},
		{"unknown key", "ui: { enabled: true, public_url: 'https://pam.example.com', title: x }\n", "title"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadYAML(t, c.yaml)
			if c.err == "" && err != nil {
				t.Fatal(err)
			}
			if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("got %v, want %q", err, c.err)
			}
		})
	}
}

// The page logs people in with an interactive issuer: without one the
// server refuses to start rather than serve a page nobody can log in to.
func TestUINeedsAnInteractiveIssuer(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir, cfg.MasterKeyFile = filepath.Join(dir, "data"), filepath.Join(dir, "master.key")
	cfg.UI.Enabled, cfg.UI.PublicURL = true, "https://pam.example.com"
	cfg.Role = RoleBroker
	app, err := NewApp(context.Background(), cfg, AppOptions{})
	if err == nil {
		app.Close()
		t.Fatal("the web UI started with no issuer to log in with")
	}
	if !strings.Contains(err.Error(), "interactive issuer") {
		t.Fatalf("error: %v", err)
	}
}

// The page sits behind the broker's Host check like the API: a rebinding
// page's name gets 421.
func TestWebUIBehindHostCheck(t *testing.T) {
	s := startServer(t)
	for host, want := range map[string]int{"attacker.example": http.StatusMisdirectedRequest, "localhost": http.StatusSeeOther} {
		req, _ := http.NewRequest("GET", s.app.BrokerURL()+"/ui/", nil)
		req.Host = host
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, res.StatusCode, want)
		}
	}
}
