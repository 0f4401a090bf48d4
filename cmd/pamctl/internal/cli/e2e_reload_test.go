package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/rules"
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
	case <-time.After(30 * time.Second): // a positive wait: generous for a loaded machine
		t.Fatal("no webhook for the new request")
	}

	// A broken file is refused (and the refusal audited); the old policy stays.
	rewrite(t, file, "policies:\n  - name: [broken\n")
	waitForReload(t, s, "refused", 1)
	waitForReload(t, s, "applied", 0)
	if r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--nowait", "-o", "json"); r.code != ExitOK || jsonState(r.out) != "pending" {
		t.Fatalf("policy lost after a rejected reload: %+v", r)
	}

	os.WriteFile(file, []byte(reloadConfigV2), 0o600)
	waitForReload(t, s, "applied", 1)
	s.as(t, "alice", "", "request", "--scope", "model:text-embedding-3-small", "--nowait").must(t, "after reload")

	// Taking the policy away ends the grant at once; its requester's list
	// says why (the proxy sends a refused agent there).
	rewrite(t, file, reloadConfigV1)
	waitForReload(t, s, "applied", 2)
	list := s.as(t, "alice", "", "requests").must(t, "requests")
	if !strings.Contains(list.out, "ended: scope model:text-embedding-3-small is no longer granted by policy embeddings (policy embeddings was removed)") {
		t.Fatalf("the list does not say why the grant ended:\n%s\n%s", list.out, list.err)
	}
}

// rewrite replaces file's content with body as editors and config tools
// do, through a temporary file renamed over it, so the reload reads it
// once. An in-place write truncates first: on a loaded machine the watch
// can settle between the truncation and the write, read an empty file and
// refuse it, one config.reloaded event more than the test counts. (The
// in-place write of V2 above is read whole either way: empty is refused,
// never applied.)
func rewrite(t *testing.T, file, body string) {
	t.Helper()
	if err := os.WriteFile(file+".tmp", []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
}

// reloadServer starts a server whose config comes from file and whose
// reloads re-read it.
func reloadServer(t *testing.T, file string) *testServer {
	t.Helper()
	s := startServerWith(t, func(c *Config) {
		loaded, err := LoadConfig(file, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Policies, c.Rules, c.Masking, c.File = loaded.Policies, loaded.Rules, loaded.Masking, file
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
	return s
}

// A reload that would drop every policy, rule or masking setting because
// the file is empty or cut short is refused and audited; the running
// config stays. Explicit empty values do remove them.
func TestEndToEndReloadRefusesEmptyOrTruncatedFile(t *testing.T) {
	const full = reloadConfigV1 + `rules:
  - { name: no-injection, pattern: "(?i)ignore previous instructions", action: deny }
masking:
  prompt: { default: off, EMAIL: redact }
`
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	s := reloadServer(t, file)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")

	refusals := 0
	for _, body := range []string{
		"",                                   // emptied
		"# pamctl\n",                         // only a comment left
		"policies:\n",                        // cut right after the key
		full[:strings.Index(full, "rules:")], // cut before rules and masking
		"policies: []\nrules: []\n",          // masking still missing
	} {
		rewrite(t, file, body)
		refusals++
		waitForReload(t, s, "refused", refusals)
		if r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--nowait", "-o", "json"); r.code != ExitOK || jsonState(r.out) != "pending" {
			t.Fatalf("after refusing %q the policy is gone: %+v", body, r)
		}
	}
	waitForReload(t, s, "applied", 0)
	last := lastReload(t, s)
	if !strings.Contains(last.Error, "masking: masking settings are in force") || strings.Contains(last.Error, "policies:") {
		t.Fatalf("refusal does not say what it keeps: %+v", last)
	}

	// Said on purpose, everything goes.
	os.WriteFile(file, []byte("policies: []\nrules: []\nmasking: {}\n"), 0o600)
	waitForReload(t, s, "applied", 1)
	if r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--nowait"); r.code != ExitForbidden {
		t.Fatalf("explicitly emptied policies still grant: %+v", r)
	}
}

func TestCheckReload(t *testing.T) {
	running := &Config{Policies: e2ePolicies, Rules: []rules.Rule{{Name: "r", Pattern: "x", Action: "deny"}}}
	running.Masking.Response.Default, running.Masking.Prompt.Default = "mask", "off"
	next := &Config{}
	next.Masking = running.Masking
	err := CheckReload(running, next)
	if err == nil || !strings.Contains(err.Error(), "policies: 2 policies are in force") || !strings.Contains(err.Error(), "rules: 1 rules are in force") || strings.Contains(err.Error(), "masking") {
		t.Fatalf("got %v", err)
	}
	next.present = map[string]bool{"policies": true, "rules": true}
	if err := CheckReload(running, next); err != nil {
		t.Fatal(err)
	}
	if err := CheckReload(&Config{}, &Config{}); err != nil {
		t.Fatalf("nothing in force, nothing to drop: %v", err)
	}
}

// waitForReload waits for exactly want config.reloaded events with the
// given decision: up to 15s for them to appear (a loaded machine), or the
// full 3s when want is 0.
func waitForReload(t *testing.T, s *testServer, decision string, want int) {
	t.Helper()
	deadline := time.Now().Add(reloadWait(want))
	for {
		n := 0
		s.app.audit.Range(t.Context(), 0, func(e audit.Event) bool {
			if e.Type == audit.TypeConfigReloaded && e.Decision == decision {
				n++
			}
			return true
		})
		if (want > 0 && n >= want) || time.Now().After(deadline) {
			if n != want {
				t.Fatalf("%d config.reloaded events decided %s, want %d", n, decision, want)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastReload is the trail's last config.reloaded event.
func lastReload(t *testing.T, s *testServer) audit.Event {
	t.Helper()
	var last audit.Event
	s.app.audit.Range(t.Context(), 0, func(e audit.Event) bool {
		if e.Type == audit.TypeConfigReloaded {
			last = e
		}
		return true
	})
	return last
}

// waitForEvent waits for exactly want events of type typ: up to 15s for
// them to appear, or the full 3s when want is 0 (none may appear).
func waitForEvent(t *testing.T, s *testServer, typ audit.Type, want int) {
	t.Helper()
	deadline := time.Now().Add(reloadWait(want))
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

// reloadWait is how long the waits above give a reload: a positive wait
// ends as soon as the events are there, so it can be generous; a negative
// one (want 0) always takes its whole time.
func reloadWait(want int) time.Duration {
	if want == 0 {
		return 3 * time.Second
	}
	return 15 * time.Second
}
