package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// Critical probes have run once when runProbes returns (a server is never
// ready before its checks ran); a probe's failure and recovery show in
// /readyz without its raw error; non-critical probes only degrade.
func TestProbesReportFailureAndRecovery(t *testing.T) {
	h, _, _ := testHealth()
	var storeErr, issuerErr atomic.Pointer[error]
	fail := errors.New("store: write probe: /secret/data/pamctl.db: no space left on device")
	storeErr.Store(&fail)
	ctx, cancel := context.WithCancel(context.Background())
	done := h.runProbes(ctx, []probe{
		{name: checkStore, critical: true, every: 5 * time.Millisecond, hint: "free space",
			run: func(context.Context) error {
				time.Sleep(20 * time.Millisecond) // slower than the caller: runProbes must wait for it
				if e := storeErr.Load(); e != nil {
					return *e
				}
				return nil
			}},
		{name: checkIssuer + "corp", every: 5 * time.Millisecond, hint: "check the IdP",
			run: func(context.Context) error {
				if e := issuerErr.Load(); e != nil {
					return *e
				}
				return nil
			}},
	})
	ready, lines := h.Report()
	if ready || len(lines) != 1 || !strings.HasPrefix(lines[0], "store_writable: failing") || strings.Contains(lines[0], "/secret") {
		t.Fatalf("after the first round: ready=%v %q", ready, lines)
	}
	storeErr.Store(nil)
	idpDown := errors.New("connection refused")
	issuerErr.Store(&idpDown)
	waitFor(t, func() bool {
		ready, lines := h.Report()
		return ready && len(lines) == 1 && strings.HasPrefix(lines[0], "issuer/corp: degraded")
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("probes did not stop")
	}
}

// The store probe fails on a store that cannot take writes.
func TestStoreProbeFailsWhenNotWritable(t *testing.T) {
	s := startServer(t)
	if err := s.app.db.Probe(t.Context(), time.Now()); err != nil {
		t.Fatalf("probe of a healthy store: %v", err)
	}
	s.stop()
	if err := s.app.db.Probe(t.Context(), time.Now()); err == nil {
		t.Fatal("probe of a closed store passed")
	}
}

func waitFor(t *testing.T, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, s := range state {
				t.Log(s())
			}
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// End to end, not in dev mode: a missing provider key keeps the server
// unready (with the command that fixes it) until it is vaulted; a stopped
// issuer shows as degraded and clears when it is back.
func TestEndToEndReadyzIssuerAndProviderKey(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issAddr := ln.Addr().String()
	issURL := "http://" + issAddr
	iss, err := devissuer.New(issURL)
	if err != nil {
		t.Fatal(err)
	}
	idp := &httptest.Server{Listener: ln, Config: &http.Server{Handler: iss}}
	idp.Start()

	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir, cfg.MasterKeyFile = filepath.Join(dir, "data"), filepath.Join(dir, "master.key")
	cfg.Issuers = []oidc.IssuerConfig{{Name: "corp", URL: issURL, ClientID: "pamctl"}}
	cfg.Upstreams[0].ExtraKey = ExtraKeyConfig{Header: "X-Gateway-Key", Key: "gateway"}
	cfg.Metrics.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	app, err := NewApp(ctx, cfg, AppOptions{ProbeEvery: 20 * time.Millisecond})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Serve(ctx, func() (*Config, error) { return cfg, nil }) }()
	defer func() { cancel(); <-served }()

	readyz := func() (int, string) { return getReadyz(t, app.ProxyURL()) }
	// The metrics listener answers /readyz with the same checks, for
	// probes that cannot present a client certificate to the others.
	// (Compared where the state holds still: a failing check's error
	// count moves with every probe.)
	metricsReadyz := func(wantCode int, has string) {
		t.Helper()
		if code, body := getReadyz(t, app.MetricsURL()); code != wantCode || !strings.Contains(body, has) {
			t.Fatalf("/readyz on the metrics port: %d %q, want %d with %q", code, body, wantCode, has)
		}
	}
	code, body := readyz()
	if code != 503 || !strings.Contains(body, "provider_key/openai: failing") || !strings.Contains(body, "pamctl vault set openai") {
		t.Fatalf("no provider key: %d %q", code, body)
	}
	metricsReadyz(503, "provider_key/openai: failing")
	c := api.NewSocketClient(SocketPath(cfg.DataDir))
	if _, err := c.VaultSet(ctx, "openai", []byte("sk-test-readyz-0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	// The upstream's extra_key is a vault entry of its own, checked too.
	waitFor(t, func() bool {
		code, body := readyz()
		return code == 503 && !strings.Contains(body, "provider_key/openai: failing") &&
			strings.Contains(body, "provider_key/openai/extra_key: failing") && strings.Contains(body, "pamctl vault set gateway")
	})
	if _, err := c.VaultSet(ctx, "gateway", []byte("gw-test-readyz-0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { code, body := readyz(); return code == 200 && body == "ok\n" })
	metricsReadyz(200, "ok\n")
	// A key too short to keep out of answers is not sent: not ready.
	if _, err := c.VaultSet(ctx, "gateway", []byte("gw-1234")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		code, body := readyz()
		return code == 503 && strings.Contains(body, "provider_key/openai/extra_key: failing") && !strings.Contains(body, "gw-1234")
	})
	if _, err := c.VaultSet(ctx, "gateway", []byte("gw-test-readyz-0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { code, body := readyz(); return code == 200 && body == "ok\n" })

	idp.Close()
	waitFor(t, func() bool {
		code, body := readyz()
		return code == 200 && strings.Contains(body, "issuer/corp: degraded") && strings.Contains(body, issURL+"/.well-known/openid-configuration")
	})
	if _, body := readyz(); strings.Contains(body, "refused") {
		t.Fatalf("readyz shows the raw error: %q", body)
	}
	ln2, err := net.Listen("tcp", issAddr)
	if err != nil {
		t.Skipf("cannot rebind the issuer's address to bring it back: %v", err)
	}
	back := &httptest.Server{Listener: ln2, Config: &http.Server{Handler: iss}}
	back.Start()
	defer back.Close()
	var last string
	waitFor(t, func() bool {
		code, body := readyz()
		last = fmt.Sprintf("%d %q", code, body)
		return code == 200 && body == "ok\n"
	}, func() string { return last })

	// Removing the key makes the server unready again.
	if err := c.VaultRemove(ctx, "openai"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { code, _ := readyz(); return code == 503 })
}

// Under serve --dev /readyz judges the vaulted keys as without --dev
// (review: dev skipped the check): a key too short to send fails, and so
// does a missing extra key while the provider key is vaulted (the call
// goes to the real upstream without it). No key at all is dev's own
// built-in mock upstream answering: ready.
func TestDevReadyzJudgesProviderKeys(t *testing.T) {
	s := startServerOpts(t, func(c *Config) {
		c.Upstreams[0].ExtraKey = ExtraKeyConfig{Header: "X-Gateway-Key", Key: "gateway"}
	}, AppOptions{Dev: true, ProbeEvery: 20 * time.Millisecond})
	readyz := func() (int, string) { return getReadyz(t, s.app.ProxyURL()) }
	var last string
	state := func() string { return last }
	want := func(code int, has, hasNot string) {
		t.Helper()
		waitFor(t, func() bool {
			c, body := readyz()
			last = fmt.Sprintf("%d %q", c, body)
			return c == code && (has == "" || strings.Contains(body, has)) && (hasNot == "" || !strings.Contains(body, hasNot))
		}, state)
	}
	want(200, "", "provider_key") // the built-in mock's key
	ctx := t.Context()
	c := api.NewSocketClient(SocketPath(s.app.cfg.DataDir))
	set := func(name, value string) {
		t.Helper()
		if _, err := c.VaultSet(ctx, name, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	set("openai", "sk-1234")
	want(503, "provider_key/openai: failing", "sk-1234")
	set("openai", "sk-test-readyz-0123456789abcdef")
	want(503, "provider_key/openai/extra_key: failing", "provider_key/openai: failing")
	set("gateway", "gw-test-readyz-0123456789abcdef")
	want(200, "", "provider_key")
	set("gateway", "gw-1234")
	want(503, "provider_key/openai/extra_key: failing", "gw-1234")
	// Back to the mock: no provider key. A short extra key is still
	// refused by the proxy (it is vaulted, so it is sent), a missing one
	// is not.
	if err := c.VaultRemove(ctx, "openai"); err != nil {
		t.Fatal(err)
	}
	want(503, "provider_key/openai/extra_key: failing", "provider_key/openai: failing")
	if err := c.VaultRemove(ctx, "gateway"); err != nil {
		t.Fatal(err)
	}
	want(200, "", "provider_key")
}
