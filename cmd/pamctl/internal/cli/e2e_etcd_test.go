package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// onEtcd points a test server's store at cluster c.
func onEtcd(c *etcdtest.Cluster) func(*Config) {
	return func(cfg *Config) {
		cfg.Store.Backend = BackendEtcd
		cfg.Store.Etcd.Endpoints = c.Endpoints()
	}
}

// proxyCall makes one chat call with tok and returns the status and body.
func etcdProxyCall(t *testing.T, s *testServer, tok string) (int, string) {
	t.Helper()
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`
	req, _ := http.NewRequest("POST", s.app.ProxyURL()+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func etcdReadyz(t *testing.T, s *testServer) (int, string) {
	t.Helper()
	return getReadyz(t, s.app.ProxyURL())
}

// getReadyz is base's /readyz: its status and text.
func getReadyz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds, failing after a deadline generous
// enough for a loaded machine (etcd elections included).
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With the etcd quorum lost, proxied calls fail closed with 503
// store_unavailable in OpenAI's error shape and are not forwarded,
// /readyz turns red naming the store check, and when the quorum is back
// the replica serves again by itself.
func TestEtcdQuorumLossFailsClosedAndRecovers(t *testing.T) {
	c := etcdtest.Start(t, 3)
	s := startServerOpts(t, onEtcd(c), AppOptions{Dev: true, ProbeEvery: 200 * time.Millisecond})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--nowait", "-o", "json").must(t, "request")
	var req map[string]any
	json.Unmarshal([]byte(r.out), &req)
	id, _ := req["id"].(string)
	s.as(t, "bob", "", "approve", id).must(t, "approve")
	tok := strings.TrimSpace(s.as(t, "alice", "", "token", id).must(t, "token").out)
	if code, body := etcdProxyCall(t, s, tok); code != 200 || !strings.Contains(body, devMockPrefix) {
		t.Fatalf("call with quorum: %d %s", code, body)
	}

	c.Stop(1)
	c.Stop(2)
	var body string
	// Until the replica notices (an election timeout and a monitor read),
	// a call either went through (audited, as before) or failed closed on
	// the store read it needed; then every call gets store_unavailable.
	eventually(t, "calls refused after the quorum is lost", 30*time.Second, func() bool {
		var code int
		code, body = etcdProxyCall(t, s, tok)
		switch {
		case code == http.StatusServiceUnavailable && strings.Contains(body, CodeStoreUnavailable):
			return true
		case code == 200, code >= 500 && !strings.Contains(body, devMockPrefix):
			return false
		}
		t.Fatalf("without quorum: %d %s", code, body)
		return false
	})
	var e struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != CodeStoreUnavailable || e.Error.Type != "server_error" || e.Error.Message == "" {
		t.Fatalf("refusal is not OpenAI's error shape with code %s: %s", CodeStoreUnavailable, body)
	}
	if strings.Contains(body, devMockPrefix) {
		t.Fatal("the refused call reached the upstream")
	}
	eventually(t, "/readyz red naming the store", 30*time.Second, func() bool {
		code, text := etcdReadyz(t, s)
		return code == http.StatusServiceUnavailable && strings.Contains(text, checkStore)
	})
	// The broker's API fails closed the same way: 503 store_unavailable,
	// with a message that says to retry, not an internal error.
	if r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--nowait"); r.code == 0 ||
		!strings.Contains(r.err, "store is unavailable") || strings.Contains(r.err, "internal error") {
		t.Fatalf("request without quorum: exit %d\n%s", r.code, r.err)
	}

	c.Restart(1)
	c.Restart(2)
	eventually(t, "calls served again once the quorum is back", 60*time.Second, func() bool {
		code, body := etcdProxyCall(t, s, tok)
		return code == 200 && strings.Contains(body, devMockPrefix)
	})
	eventually(t, "/readyz green again", 60*time.Second, func() bool {
		code, _ := etcdReadyz(t, s)
		return code == 200
	})
}

// Replicas share one master key: a second replica with another key is
// refused at start with an error that says so; one with the same key
// starts and sees the same vault.
func TestEtcdReplicaWithAnotherMasterKeyRefusesToStart(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := startServerWith(t, onEtcd(c))
	const secret = "sk-test-0123456789abcdefghij"
	s.as(t, "admin", secret, "vault", "set", "openai").must(t, "vault set")

	start := func(masterKeyFile string) (*App, error) {
		cfg, err := LoadConfig("", nil)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.DataDir = filepath.Join(dir, "data")
		cfg.MasterKeyFile = masterKeyFile
		cfg.Policies = e2ePolicies
		onEtcd(c)(cfg)
		return NewApp(context.Background(), cfg, AppOptions{})
	}
	if _, err := start(filepath.Join(t.TempDir(), "other.key")); !errors.Is(err, vault.ErrWrongMasterKey) || !strings.Contains(err.Error(), "same master key") {
		t.Fatalf("a replica with another master key: %v", err)
	}
	b, err := start(s.app.cfg.MasterKeyFile)
	if err != nil {
		t.Fatalf("a replica with the same master key: %v", err)
	}
	defer b.Close()
	if _, err := b.vault.Get(context.Background(), "openai"); err != nil {
		t.Fatalf("the second replica cannot open the shared vault: %v", err)
	}
	if b.keys.ActiveKID() != s.app.keys.ActiveKID() {
		t.Fatalf("replicas sign with different keys: %s, %s", b.keys.ActiveKID(), s.app.keys.ActiveKID())
	}
}

// A replica whose cluster does not answer fails to start within its dial
// and operation bounds, saying what to check.
func TestEtcdUnreachableFailsStartClearly(t *testing.T) {
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	cfg.Store.Backend = BackendEtcd
	cfg.Store.Etcd.Endpoints = []string{"http://127.0.0.1:1"}
	cfg.Store.Etcd.DialTimeout = time.Second
	start := time.Now()
	app, err := NewApp(context.Background(), cfg, AppOptions{})
	if err == nil {
		app.Close()
		t.Fatal("started without a reachable cluster")
	}
	if !strings.Contains(err.Error(), "store.etcd") || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("error does not say what to check: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("took %s to give up", d)
	}
}
