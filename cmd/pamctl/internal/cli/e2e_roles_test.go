package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/store"
)

// testProviderKey is what the broker vaults; the upstream demands it.
const testProviderKey = "sk-proj-rolesTEST0123456789abcdefghijklmnopqrstuvwxyz"

// roleWorkloadIssuer names the workload issuer (workload: true) the role
// tests' proxies log in from: only a workload identity may run a proxy.
const roleWorkloadIssuer = "ci"

var rolePolicies = policy.Set{
	{Name: "proxies", Subjects: policy.Subjects{Users: []string{"proxy-a", "proxy-b"}, Issuers: []string{roleWorkloadIssuer}}, Scopes: []string{"proxy:serve"}, MaxTTL: time.Hour},
	{Name: "ml", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o"}, MaxTTL: time.Hour},
	{Name: "auditors", Subjects: policy.Subjects{Groups: []string{"security"}}, Scopes: []string{"audit:read"}},
}

// roleBroker runs `serve --role broker` in process on a fixed data dir
// and address, so the test can kill it and start it again.
type roleBroker struct {
	ts   *testServer
	addr string
}

func startRoleBroker(t *testing.T, dir, addr, upstream string, adjust ...func(*Config)) *roleBroker {
	t.Helper()
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Role = RoleBroker
	cfg.Broker.Addr, cfg.Proxy.Addr = addr, "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "broker")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	cfg.Policies = rolePolicies
	cfg.Issuers = append(cfg.Issuers, oidc.IssuerConfig{Name: roleWorkloadIssuer, URL: roleIdP(t, dir).url, ClientID: "pamctl", Workload: true})
	cfg.Upstreams = []UpstreamConfig{{Name: "openai", URL: upstream + "/v1", Key: "openai"}}
	for _, f := range adjust {
		f(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := NewApp(ctx, cfg, AppOptions{Dev: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &testServer{app: app, cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() {
		s.done <- app.Serve(ctx, func() (*Config, error) {
			if f := s.reload.Load(); f != nil {
				return (*f)()
			}
			return cfg, nil
		})
	}()
	t.Cleanup(s.stop)
	t.Setenv("PAMCTL_SERVER", app.BrokerURL())
	t.Setenv("PAMCTL_DATA_DIR", cfg.DataDir)
	t.Setenv("PAMCTL_MASTER_KEY_FILE", cfg.MasterKeyFile)
	return &roleBroker{ts: s, addr: app.brokerLn.Addr().String()}
}

type roleProxy struct {
	app  *App
	dir  string
	stop func()
}

func startRoleProxy(t *testing.T, brokerURL, dir, idTokenFile string, staleness time.Duration, adjust ...func(*Config)) *roleProxy {
	t.Helper()
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Role = RoleProxy
	cfg.Server = brokerURL
	cfg.Proxy.Addr = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.MasterKeyFile = filepath.Join(dir, "no-master.key") // must never be read or written
	cfg.Proxy.Identity.IDTokenFile = idTokenFile
	cfg.Proxy.RevocationStaleness = staleness
	for _, f := range adjust {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := NewApp(ctx, cfg, AppOptions{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	app.link.SetRetry(100 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, nil) }()
	var once sync.Once
	p := &roleProxy{app: app, dir: dir, stop: func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				panic("proxy did not stop")
			}
		})
	}}
	t.Cleanup(p.stop)
	return p
}

// call makes one chat call through the proxy.
func (p *roleProxy) call(t *testing.T, tok string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.app.ProxyURL()+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Pamctl-Audit-Id")
}

func waitUntil(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mintIDToken writes a workload ID token for sub (from the test's
// workload issuer, roleWorkloadIssuer) to dir/sub.jwt and returns the file.
func mintIDToken(t *testing.T, _ *roleBroker, dir, sub string) string {
	t.Helper()
	return roleIdP(t, dir).mint(sub)
}

// roleIdPs are the workload issuers of the running role tests, one per
// test dir, so a broker restarted on the same dir trusts the same one.
var roleIdPs sync.Map // dir → *workloadIssuer

type workloadIssuer struct {
	url  string
	mint func(sub string, groups ...string) string
}

func roleIdP(t *testing.T, dir string) *workloadIssuer {
	t.Helper()
	if v, ok := roleIdPs.Load(dir); ok {
		return v.(*workloadIssuer)
	}
	url, mint := workloadIdP(t, dir)
	w := &workloadIssuer{url: url, mint: mint}
	roleIdPs.Store(dir, w)
	t.Cleanup(func() { roleIdPs.Delete(dir) })
	return w
}

func TestEndToEndCentralBrokerLocalProxies(t *testing.T) {
	dir := t.TempDir()
	var upMu sync.Mutex
	upCalls := 0
	wantKey := testProviderKey
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upMu.Lock()
		want := wantKey
		upMu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+want {
			http.Error(w, `{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}`, http.StatusUnauthorized)
			return
		}
		upMu.Lock()
		upCalls++
		upMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	defer up.Close()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")

	b := startRoleBroker(t, dir, "127.0.0.1:0", up.URL)
	if b.ts.app.proxyLn != nil || b.ts.app.proxy != nil {
		t.Fatal("role broker must not run the proxy listener")
	}
	brokerURL := b.ts.app.BrokerURL()
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	ctx := context.Background()
	if _, err := admin.VaultSet(ctx, "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}

	pa := startRoleProxy(t, brokerURL, filepath.Join(dir, "proxy-a"), mintIDToken(t, b, dir, "proxy-a"), 0)
	pb := startRoleProxy(t, brokerURL, filepath.Join(dir, "proxy-b"), mintIDToken(t, b, dir, "proxy-b"), 2*time.Second)
	// An identity no policy grants proxy:serve is never admitted.
	pc := startRoleProxy(t, brokerURL, filepath.Join(dir, "proxy-c"), mintIDToken(t, b, dir, "intruder"), 0)

	for _, p := range []*roleProxy{pa, pb} {
		waitUntil(t, "enrollment", 10*time.Second, func() bool { code, _ := p.app.link.Refusal(); return code == "" })
	}
	time.Sleep(300 * time.Millisecond)
	if code, msg := pc.app.link.Refusal(); code != "proxy_not_enrolled" || pc.app.link.Enrollment() != nil {
		t.Fatalf("intruder proxy: %s %s", code, msg)
	}
	if code, body, _ := pc.call(t, "whatever"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"proxy_not_enrolled"`) {
		t.Fatalf("intruder proxy answered %d %s", code, body)
	}

	// pamctl proxies lists both, with identity, version, address, config.
	r := b.ts.as(t, "admin", "", "proxies", "-o", "json").must(t, "proxies")
	var es []map[string]any
	json.Unmarshal([]byte(r.out), &es)
	if len(es) != 2 || !strings.Contains(r.out, "proxy-a") || !strings.Contains(r.out, pb.app.ProxyURL()) ||
		!strings.Contains(r.out, `"config_version": "`+b.ts.app.proxyCfg.Load().Version) {
		t.Fatalf("proxies: %s", r.out)
	}
	// ... and the fingerprint the broker's /metrics names each by.
	for _, e := range es {
		if id, _ := e["id"].(string); e["fingerprint"] != link.Fingerprint(id) {
			t.Fatalf("proxies: %s has fingerprint %v, want %s", id, e["fingerprint"], link.Fingerprint(id))
		}
	}
	if tbl := b.ts.as(t, "admin", "", "proxies").must(t, "proxies").out; !strings.Contains(tbl, link.Fingerprint(pa.app.link.Enrollment().ID)) {
		t.Fatalf("proxies table lacks the fingerprint:\n%s", tbl)
	}

	// alice gets a grant and calls through both proxies.
	b.ts.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	grant := func() (string, string) {
		r := b.ts.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--reason", "roles", "-o", "json").must(t, "request")
		var req map[string]any
		json.Unmarshal([]byte(r.out), &req)
		id, _ := req["id"].(string)
		tok := strings.TrimSpace(b.ts.as(t, "alice", "", "token", id).must(t, "token").out)
		return id, tok
	}
	g1, tok1 := grant()
	// exec points agents at the local proxy (proxy.addr): the broker runs none.
	_, paPort, _ := strings.Cut(strings.TrimPrefix(pa.app.ProxyURL(), "http://"), ":")
	t.Setenv("PAMCTL_PROXY_ADDR", "127.0.0.1:"+paPort)
	if r := b.ts.as(t, "alice", "", "exec", "--request", g1, "--", "sh", "-c", "echo $OPENAI_BASE_URL"); r.code != 0 || strings.TrimSpace(r.out) != pa.app.ProxyURL()+"/v1" {
		t.Fatalf("exec against a central broker: %+v", r)
	}
	for _, p := range []*roleProxy{pa, pb} {
		if code, body, _ := p.call(t, tok1); code != http.StatusOK || !strings.Contains(body, "hi there") || strings.Contains(body, testProviderKey) {
			t.Fatalf("call through %s: %d %s", p.dir, code, body)
		}
	}

	// Revoke: both proxies refuse within a second.
	start := time.Now()
	b.ts.as(t, "alice", "", "revoke", g1).must(t, "revoke")
	var wg sync.WaitGroup
	for _, p := range []*roleProxy{pa, pb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 3*time.Second {
				if p.app.link.IsRevoked(g1) {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("revocation reached the proxies after %s", took)
	}
	for _, p := range []*roleProxy{pa, pb} {
		if code, body, _ := p.call(t, tok1); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Fatalf("revoked token through %s: %d %s", p.dir, code, body)
		}
	}

	// vault set on the broker: the proxies take the new key at once.
	const rotatedKey = "sk-proj-rolesROTATED9876543210zyxwvutsrqponmlkjihgfedcba"
	upMu.Lock()
	wantKey = rotatedKey
	upMu.Unlock()
	if _, err := admin.VaultSet(ctx, "openai", []byte(rotatedKey)); err != nil {
		t.Fatal(err)
	}
	_, tokK := grant()
	for _, p := range []*roleProxy{pa, pb} {
		waitUntil(t, "the rotated key", 2*time.Second, func() bool { code, _, _ := p.call(t, tokK); return code == http.StatusOK })
	}

	// The broker goes away: the tolerant proxy keeps serving and spooling;
	// the strict one refuses once its staleness passes.
	_, tok2 := grant()
	var acked []string
	code, _, id := pa.call(t, tok2)
	if code != http.StatusOK {
		t.Fatalf("call before the outage: %d", code)
	}
	acked = append(acked, id)
	b.ts.stop()
	for i := 0; i < 5; i++ {
		code, body, id := pa.call(t, tok2)
		if code != http.StatusOK {
			t.Fatalf("call %d during the outage: %d %s", i, code, body)
		}
		acked = append(acked, id)
	}
	if pa.app.spool.Size() == 0 {
		t.Fatal("nothing spooled while the broker was down")
	}
	waitUntil(t, "the strict proxy to go stale", 5*time.Second, func() bool {
		code, body, _ := pb.call(t, tok2)
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"code":"revocations_stale"`)
	})
	if code, body, _ := pa.call(t, tok1); code == http.StatusOK {
		t.Fatalf("a token revoked before the outage passed during it: %s", body)
	}

	// The broker comes back: spools drain into the trail, exactly once each.
	b = startRoleBroker(t, dir, b.addr, up.URL)
	admin = api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	waitUntil(t, "spools to drain", 10*time.Second, func() bool { return pa.app.spool.Size() == 0 && pb.app.spool.Size() == 0 })
	waitUntil(t, "the strict proxy to serve again", 5*time.Second, func() bool { code, _ := pb.app.link.Refusal(); return code == "" })
	if code, _, id := pb.call(t, tok2); code != http.StatusOK {
		t.Fatalf("strict proxy after reconnect: %d", code)
	} else {
		acked = append(acked, id)
	}
	waitUntil(t, "the last call to ship", 5*time.Second, func() bool { return pb.app.spool.Size() == 0 })
	vr, err := admin.AuditVerify(ctx)
	if err != nil || !vr.OK {
		t.Fatalf("audit verify: %+v %v", vr, err)
	}
	seen := map[string]int{}
	proxyOf := map[string]string{}
	evs, err := admin.AuditEvents(ctx, audit.Filter{Types: []audit.Type{audit.TypeProxyCall}}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		seen[e.Details["request_id"]]++
		proxyOf[e.Details["request_id"]] = e.Details["proxy"]
	}
	for _, id := range acked {
		if seen[id] != 1 || proxyOf[id] == "" {
			t.Fatalf("call %s is in the trail %d times (proxy %q)", id, seen[id], proxyOf[id])
		}
	}

	// pamctl proxies revoke cuts one off at once (audited).
	paID := pa.app.link.Enrollment().ID
	b.ts.as(t, "admin", "", "proxies", "revoke", paID).must(t, "proxies revoke")
	waitUntil(t, "the revoked proxy to refuse", time.Second, func() bool {
		code, body, _ := pa.call(t, tok2)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "revoked")
	})
	// Agents read that 503: it does not show the enrollment id.
	if _, body, _ := pa.call(t, tok2); strings.Contains(body, paID) {
		t.Fatalf("the revoked proxy's 503 names its enrollment: %s", body)
	}
	if code, _, _ := pb.call(t, tok2); code != http.StatusOK {
		t.Fatalf("the other proxy stopped serving: %d", code)
	}
	evs, _ = admin.AuditEvents(ctx, audit.Filter{Types: []audit.Type{audit.TypeProxyRevoked}}, 10)
	if len(evs) != 1 || evs[0].Target != paID {
		t.Fatalf("proxy.revoked events: %+v", evs)
	}

	// No provider key and no master key anywhere under the proxies' dirs.
	mk, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil || len(bytes.TrimSpace(mk)) == 0 {
		t.Fatalf("master key file: %v", err)
	}
	for _, p := range []*roleProxy{pa, pb, pc} {
		p.stop()
		filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			raw, _ := os.ReadFile(path)
			if bytes.Contains(raw, []byte(testProviderKey)) || bytes.Contains(raw, []byte(rotatedKey)) || bytes.Contains(raw, bytes.TrimSpace(mk)) {
				t.Errorf("%s holds a secret", path)
			}
			if filepath.Base(path) != "spool.db" {
				t.Errorf("unexpected file in the proxy's data dir: %s", path)
			}
			return nil
		})
	}
}

// What a holder of a proxy's identity (its session and enrollment id)
// ships is checked whole at the broker: broker-side events (approvals,
// vault changes, anchors), unknown types, malformed actors and sequence
// jumps are refused with nothing appended, the broker stays ready, and
// the real proxy's calls still go in after.
func TestRoleProxyForgedShipmentsAreRefused(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", "http://127.0.0.1:1")
	pa := startRoleProxy(t, b.ts.app.BrokerURL(), filepath.Join(dir, "proxy-a"), mintIDToken(t, b, dir, "proxy-a"), 0)
	waitUntil(t, "the proxy to enroll", 15*time.Second, func() bool { return pa.app.link.Enrollment() != nil })
	readyz := func() int {
		resp, err := http.Get(b.ts.app.BrokerURL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("readyz before: %d", code)
	}
	ctx := context.Background()
	one := func(seq uint64, ev audit.Event) link.AuditBatch {
		return link.AuditBatch{Events: []link.SpooledEvent{{Seq: seq, Event: ev}}}
	}
	robot := &audit.Actor{Subject: "x", Kind: "robot"}
	// In this order: on a broker that trusted shipments, the first takes
	// it out of readiness and the last makes it skip the proxy's events.
	for _, c := range []struct {
		name  string
		batch link.AuditBatch
	}{
		{"login, robot", one(1, audit.Event{Type: "login", Actor: robot})},
		{"call, robot", one(1, audit.Event{Type: audit.TypeProxyCall, Actor: robot})},
		{"approval", one(1, audit.Event{Type: audit.TypeRequestApproved, Request: "req_forged", Actor: &audit.Actor{Subject: "security-lead"}})},
		{"vault, 2020", one(1, audit.Event{Type: audit.TypeVaultSet, Target: "openai", Time: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})},
		{"anchor", one(1, audit.Event{Type: audit.TypeAuditAnchor, Details: map[string]string{"anchor": "{"}})},
		{"jump", one(1000000, audit.Event{Type: audit.TypeProxyCall})},
	} {
		if ack, err := pa.app.link.ShipBatch(ctx, c.batch); err == nil {
			t.Errorf("%s: accepted (%+v)", c.name, ack)
		}
		if code := readyz(); code != http.StatusOK {
			t.Errorf("readyz after %s: %d", c.name, code)
		}
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("readyz after refused shipments: %d", code)
	}
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	evs, err := admin.AuditEvents(ctx, audit.Filter{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Details["proxy"] != "" {
			t.Fatalf("a refused shipment is in the trail: %+v", e)
		}
	}
	// The proxy's own spool still ships from 1.
	if err := pa.app.link.Append(ctx, &audit.Event{Type: audit.TypeProxyRefused, Decision: "deny"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the proxy's own event", 15*time.Second, func() bool {
		evs, _ := admin.AuditEvents(ctx, audit.Filter{Types: []audit.Type{audit.TypeProxyRefused}}, 10)
		return len(evs) == 1 && evs[0].Details["proxy_seq"] == "1" && evs[0].Details["proxy"] == pa.app.link.Enrollment().ID
	})
}

// A proxy whose enrollment the broker no longer knows enrolls anew and
// ships from where its spool is (events before were acknowledged under
// the lost enrollment): the broker's strict order does not wedge it.
func TestRoleProxyNewEnrollmentShipsFromTheSpoolsPosition(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", "http://127.0.0.1:1")
	pdir := filepath.Join(dir, "proxy-a")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	sp, err := store.OpenSpool(pdir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"old1", "old2", "kept3", "kept4"} {
		if _, err := sp.Append(ctx, &audit.Event{Type: audit.TypeProxyRefused, Decision: "deny", Details: map[string]string{"request_id": id}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Ack(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := sp.SetEnrollment("lostenrollment00"); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	pa := startRoleProxy(t, b.ts.app.BrokerURL(), pdir, mintIDToken(t, b, dir, "proxy-a"), 0)
	admin := api.NewSocketClient(SocketPath(b.ts.app.cfg.DataDir))
	waitUntil(t, "the spooled events in the trail", 15*time.Second, func() bool {
		evs, _ := admin.AuditEvents(ctx, audit.Filter{Types: []audit.Type{audit.TypeProxyRefused}}, 10)
		var got []string
		for _, e := range evs {
			got = append(got, e.Details["request_id"]+"@"+e.Details["proxy_seq"])
		}
		return strings.Join(got, " ") == "kept3@3 kept4@4"
	})
	if e := pa.app.link.Enrollment(); e == nil || e.ID == "lostenrollment00" {
		t.Fatalf("enrollment: %+v", e)
	}
}
