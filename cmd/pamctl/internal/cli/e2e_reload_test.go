package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

const reloadConfigV1 = `
policies:
  - name: ml-models
    subjects: { groups: [ml] }
    scopes: ["model:gpt-4o-mini"]
    max_ttl: 1h
    approval: { required: true, approvers: { groups: [security] }, count: 1 }
`

const reloadConfigV2 = reloadConfigV1 + `
  - name: embeddings
    subjects: { groups: [ml] }
    scopes: ["model:text-embedding-3-small"]
`

// Policies reload when the file changes; an invalid file is rejected and
// the old policies stay. Webhooks hear about new requests and decisions.
func TestEndToEndConfigReloadAndWebhook(t *testing.T) {
	hooks := make(chan map[string]any, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e map[string]any
		raw, _ := io.ReadAll(r.Body)
		json.Unmarshal(raw, &e)
		hooks <- e
	}))
	defer hook.Close()

	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(reloadConfigV1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, func(c *Config) {
		loaded, err := LoadConfig(file, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Policies, c.File = loaded.Policies, file
		c.Notify.Webhook = hook.URL
	})
	reload := func() (*Config, error) {
		cfg, err := LoadConfig(file, nil)
		if err != nil {
			return nil, err
		}
		cfg.Issuers, cfg.Broker, cfg.Proxy, cfg.DataDir = s.app.cfg.Issuers, s.app.cfg.Broker, s.app.cfg.Proxy, s.app.cfg.DataDir
		return cfg, cfg.Validate()
	}
	s.reload.Store(&reload)

	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	if r := s.as(t, "alice", "", "request", "--scope", "model:text-embedding-3-small", "--nowait"); r.code != ExitForbidden {
		t.Fatalf("before reload: %+v", r)
	}
	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--nowait", "-o", "json")
	if r.code != ExitOK || jsonState(r.out) != "pending" {
		t.Fatalf("pending request: %+v", r)
	}
	select {
	case e := <-hooks:
		if e["type"] != "request.pending" || e["subject"] != "alice" {
			t.Fatalf("webhook event: %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook for the new request")
	}

	// A broken file is rejected; the old policy stays.
	os.WriteFile(file, []byte("policies:\n  - name: [broken\n"), 0o600)
	waitForEvent(t, s, audit.TypeConfigReloaded, 0) // no reload event may appear
	if r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--nowait", "-o", "json"); r.code != ExitOK || jsonState(r.out) != "pending" {
		t.Fatalf("policy lost after a rejected reload: %+v", r)
	}

	os.WriteFile(file, []byte(reloadConfigV2), 0o600)
	waitForEvent(t, s, audit.TypeConfigReloaded, 1)
	s.as(t, "alice", "", "request", "--scope", "model:text-embedding-3-small", "--nowait").must(t, "after reload")
}

// waitForEvent waits up to 3s for exactly want events of type typ (want 0:
// waits the full time and checks none appeared).
func waitForEvent(t *testing.T, s *testServer, typ audit.Type, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := 0
		s.app.audit.Range(t.Context(), 0, func(e audit.Event) bool {
			if e.Type == typ {
				n++
			}
			return true
		})
		if (want > 0 && n >= want) || time.Now().After(deadline) {
			if n != want {
				t.Fatalf("%d %s events, want %d", n, typ, want)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
