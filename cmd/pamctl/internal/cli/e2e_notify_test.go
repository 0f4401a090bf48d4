package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// chatSink is an in-process Slack and Teams: it records each POST by
// channel and answers with the status set for that channel.
type chatSink struct {
	mu     sync.Mutex
	posts  map[string][]string
	status map[string]int
}

func (c *chatSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ch := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.posts[ch] = append(c.posts[ch], string(b))
	code := c.status[ch]
	c.mu.Unlock()
	if code == 0 || code == 200 {
		io.WriteString(w, "ok")
		return
	}
	w.WriteHeader(code)
	io.WriteString(w, "no_service")
}

// wait returns the channel's posts once there are n of them.
func (c *chatSink) wait(t *testing.T, ch string, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c.mu.Lock()
		got := append([]string(nil), c.posts[ch]...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s posts, want %d: %v", len(got), ch, n, got)
		}
	}
}

func TestEndToEndChatNotifications(t *testing.T) {
	sink := &chatSink{posts: map[string][]string{}, status: map[string]int{}}
	hook := httptest.NewServer(sink)
	t.Cleanup(hook.Close)
	hookFile := filepath.Join(t.TempDir(), "slack-hook")
	if err := os.WriteFile(hookFile, []byte(hook.URL+"/slack/T000/B000/SLACKSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, func(c *Config) {
		c.UI.Enabled, c.UI.PublicURL = true, "https://pam.example.com"
		c.Notify.Slack.WebhookURLFile = hookFile
		c.Notify.Teams.WebhookURLVault = "teams-hook"
	})
	// The vault entry is read at delivery, so it may be set after start.
	s.as(t, "admin", hook.URL+"/teams/workflows/TEAMSSECRET", "vault", "set", "teams-hook").must(t, "vault set")
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	id := s.pendingRequest(t, "alice", "model:gpt-4o")
	page := "https://pam.example.com/ui/requests/" + id

	slack := sink.wait(t, "slack", 1)
	teams := sink.wait(t, "teams", 1)
	var sm struct {
		Blocks []struct {
			Type     string `json:"type"`
			Elements []struct {
				Type, URL string
			} `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal([]byte(slack[0]), &sm); err != nil {
		t.Fatal(err)
	}
	last := sm.Blocks[len(sm.Blocks)-1]
	if last.Type != "actions" || len(last.Elements) != 1 || last.Elements[0].URL != page || !strings.Contains(slack[0], "Access request waiting for approval") {
		t.Fatalf("slack message:\n%s", slack[0])
	}
	if !strings.Contains(teams[0], `"type":"Action.OpenUrl"`) || !strings.Contains(teams[0], `"url":"`+page+`"`) || !strings.Contains(teams[0], "AdaptiveCard") {
		t.Fatalf("teams message:\n%s", teams[0])
	}

	// The decision is a follow-up naming the original.
	s.as(t, "bob", "", "approve", id).must(t, "approve")
	slack = sink.wait(t, "slack", 2)
	teams = sink.wait(t, "teams", 2)
	for _, m := range []string{slack[1], teams[1]} {
		if !strings.Contains(m, "Access request approved") || !strings.Contains(m, "Follow-up to the message about access request "+id) || !strings.Contains(m, page) {
			t.Fatalf("follow-up:\n%s", m)
		}
	}

	// Slack refuses (a revoked webhook): the failure is audited with the
	// channel and Slack's code, never the URL or its secret.
	sink.mu.Lock()
	sink.status["slack"] = http.StatusNotFound
	sink.mu.Unlock()
	s.pendingRequest(t, "alice", "model:gpt-4o-mini")
	sink.wait(t, "teams", 3)
	waitForEvent(t, s, audit.TypeNotifyFailed, 1)
	var failed audit.Event
	s.app.audit.Range(t.Context(), 0, func(e audit.Event) bool {
		if e.Type == audit.TypeNotifyFailed {
			failed = e
		}
		return true
	})
	raw, _ := json.Marshal(failed)
	if failed.Details["channel"] != "slack" || !strings.Contains(failed.Error, "no_service") || strings.Contains(string(raw), "SECRET") || strings.Contains(string(raw), "/slack/") {
		t.Fatalf("notify.failed: %s", raw)
	}
}

// Inline webhook URLs work but config check warns, and never prints them.
func TestConfigCheckWarnsInlineWebhookURL(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pamctl.yaml")
	os.WriteFile(file, []byte("notify:\n  slack:\n    webhook_url: https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX\n  teams:\n    webhook_url_vault: teams-hook\n"), 0o600)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("PAMCTL_MASTER_KEY_FILE", filepath.Join(dir, "master.key"))
	r := runCLI(t, "config", "check", "--config", file)
	if r.code != 0 || !strings.Contains(r.err, "notify.slack.webhook_url is inline") || strings.Contains(r.err, "teams.webhook_url is inline") {
		t.Fatalf("config check: exit %d\n%s", r.code, r.err)
	}
	if strings.Contains(r.out+r.err, "XXXXSECRETXXXX") || !strings.Contains(r.out, "webhook_url: https://hooks.slack.com/") {
		t.Fatalf("config check printed the secret or not the redacted URL:\n%s", r.out)
	}
	for _, bad := range []string{
		"notify:\n  slack:\n    webhook_url: http://hooks.example.com/x\n",
		"notify:\n  slack:\n    webhook_url_vault: Slack Hook\n",
		"notify:\n  teams:\n    webhook_url_file: /x\n    webhook_url_vault: y\n",
	} {
		os.WriteFile(file, []byte(bad), 0o600)
		if r := runCLI(t, "config", "check", "--config", file); r.code != ExitUsage || strings.Contains(r.err, "hooks.example.com") {
			t.Fatalf("config check of %q: exit %d\n%s", bad, r.code, r.err)
		}
	}
}

// A channel whose URL cannot be had (a vault entry not set yet, a file
// holding a non-https URL) fails each event, audited with why, never the
// URL; the other channels are not held up.
func TestEndToEndChatHookUnavailable(t *testing.T) {
	hookFile := filepath.Join(t.TempDir(), "slack-hook")
	os.WriteFile(hookFile, []byte("http://hooks.example.com/services/PLAINSECRET\n"), 0o600)
	s := startServerWith(t, func(c *Config) {
		c.Notify.Slack.WebhookURLFile = hookFile
		c.Notify.Teams.WebhookURLVault = "missing-hook"
	})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.pendingRequest(t, "alice", "model:gpt-4o")
	waitForEvent(t, s, audit.TypeNotifyFailed, 2)
	got := map[string]string{}
	s.app.audit.Range(t.Context(), 0, func(e audit.Event) bool {
		if e.Type == audit.TypeNotifyFailed {
			got[e.Details["channel"]] = e.Error
		}
		return true
	})
	if !strings.Contains(got["teams"], `vault entry "missing-hook" could not be opened (set it with: pamctl vault set missing-hook)`) {
		t.Errorf("teams failure: %q", got["teams"])
	}
	if !strings.Contains(got["slack"], "uses http:// off loopback") || strings.Contains(got["slack"], "PLAINSECRET") || strings.Contains(got["slack"], "hooks.example.com") {
		t.Errorf("slack failure: %q", got["slack"])
	}
}
