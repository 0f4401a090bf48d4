package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// Three `pamctl serve` replicas as processes on a 3-member etcd cluster:
// alice logs in through one, requests through another, bob approves
// through a third, and the token works at every replica's proxy. A
// revocation made on one replica is refused by another's proxy within
// 1 s. Under load one replica is killed (SIGKILL), then one etcd member is
// stopped: every call a client saw answered is in the one trail, and
// `audit verify` passes.
func TestEtcdReplicaProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes and an etcd cluster")
	}
	cluster := etcdtest.Start(t, 3)
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	t.Setenv("PAMCTL_CA_FILE", "")
	// The workload identity provider: an OIDC issuer in this process.
	idpURL, mint := workloadIdP(t, dir)
	up := keyCheckingUpstream(t)

	// The load balancer in front of the brokers: the test picks the
	// replica each CLI command reaches; the replicas name it as `server`,
	// their tokens' issuer.
	var target atomic.Pointer[url.URL]
	lb := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target.Load())
		r.Out.Host = r.In.Host
	}})
	defer lb.Close()

	type replica struct {
		name, broker, proxy, data, cfg string
		cmd                            *exec.Cmd
		out                            *lockedBuffer
	}
	masterKey := filepath.Join(dir, "master.key")
	var reps []*replica
	for i := range 3 {
		r := &replica{name: fmt.Sprintf("r%d", i), broker: freePort(t), proxy: freePort(t), data: filepath.Join(dir, fmt.Sprintf("r%d", i))}
		r.cfg = filepath.Join(dir, r.name+".yaml")
		os.WriteFile(r.cfg, []byte(fmt.Sprintf(`server: %s
broker: { addr: %s }
proxy: { addr: %s }
data_dir: %s
master_key_file: %s
store:
  backend: etcd
  etcd: { endpoints: [%s], prefix: /replicas/ }
ui: { enabled: true, public_url: %s, insecure_plaintext: true }
issuers:
  - { name: ci, url: %s, client_id: pamctl }
policies:
  - name: ml
    subjects: { groups: [ml] }
    scopes: ["model:gpt-4o"]
    max_ttl: 1h
    approval: { required: true, approvers: { groups: [security] } }
  - { name: auditors, subjects: { groups: [security] }, scopes: ["audit:read"], max_ttl: 1h }
upstreams:
  - { name: openai, url: %s/v1, key: openai }
`, lb.URL, r.broker, r.proxy, r.data, masterKey, strings.Join(cluster.Endpoints(), ", "), lb.URL, idpURL, up.URL)), 0o600)
		reps = append(reps, r)
	}
	start := func(r *replica) {
		r.cmd, r.out = pamctlProcess(t, "serve", "--config", r.cfg)
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmd, out, name := r.cmd, r.out, r.name
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s output:\n%s", name, out.String())
			}
		})
	}
	httpc := &http.Client{Timeout: 20 * time.Second}
	healthy := func(url string) bool {
		resp, err := httpc.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	// The first replica creates the master key and the cluster's state;
	// the others join with the same key. /readyz is red until the vault
	// holds the provider key.
	start(reps[0])
	waitUntil(t, "replica r0", 60*time.Second, func() bool { return healthy("http://" + reps[0].proxy + "/healthz") })
	for _, r := range reps[1:] {
		start(r)
	}
	for _, r := range reps {
		waitUntil(t, "replica "+r.name, 60*time.Second, func() bool { return healthy("http://" + r.proxy + "/healthz") })
	}
	admin := api.NewSocketClient(SocketPath(reps[1].data))
	if _, err := admin.VaultSet(context.Background(), "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		waitUntil(t, "replica "+r.name+" ready", 60*time.Second, func() bool { return healthy("http://" + r.proxy + "/readyz") })
	}

	s := &testServer{dir: dir}
	t.Setenv("PAMCTL_SERVER", lb.URL)
	via := func(r *replica) { target.Store(&url.URL{Scheme: "http", Host: r.broker}) }
	via(reps[0])
	s.as(t, "alice", "", "login", "--id-token-file", mint("alice", "ml")).must(t, "alice login via r0")
	via(reps[2])
	s.as(t, "bob", "", "login", "--id-token-file", mint("bob", "security")).must(t, "bob login via r2")

	// A web login needs no sticky sessions: it starts at r0, the IdP sends
	// the browser back to r1, and the session it opens works at r2.
	web := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	web.Jar, _ = cookiejar.New(nil)
	webGet := func(u string) *http.Response {
		t.Helper()
		res, err := web.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	via(reps[0])
	authz := webGet(lb.URL + "/ui/login").Header.Get("Location")
	cb := webGet(authz + "&login_hint=carol&groups=security").Header.Get("Location")
	if !strings.HasPrefix(cb, lb.URL+"/ui/callback?") {
		t.Fatalf("the IdP's redirect: %q", cb)
	}
	via(reps[1])
	if res := webGet(cb); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/" {
		t.Fatalf("a web login started at r0 finished at r1: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	via(reps[2])
	if res := webGet(lb.URL + "/ui/"); res.StatusCode != http.StatusOK {
		t.Fatalf("the web session at r2: %d", res.StatusCode)
	}
	grant := func() (id, tok string) {
		t.Helper()
		via(reps[1])
		out := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--reason", "replicas", "--nowait", "-o", "json").must(t, "request via r1").out
		var req struct{ ID string }
		if err := json.Unmarshal([]byte(out), &req); err != nil || req.ID == "" {
			t.Fatalf("request: %v %s", err, out)
		}
		via(reps[2])
		s.as(t, "bob", "", "approve", req.ID).must(t, "approve via r2")
		via(reps[0])
		tok = strings.TrimSpace(s.as(t, "alice", "", "token", req.ID).must(t, "token via r0").out)
		return req.ID, tok
	}
	call := func(r *replica, tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+r.proxy+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpc.Do(req)
		if err != nil {
			return -1, ""
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Pamctl-Audit-Id")
	}

	id1, tok1 := grant()
	for _, r := range reps {
		if code, _ := call(r, tok1); code != http.StatusOK {
			t.Fatalf("the token at %s's proxy: %d", r.name, code)
		}
	}
	via(reps[1])
	s.as(t, "alice", "", "revoke", id1).must(t, "revoke via r1")
	revoked := time.Now()
	waitUntil(t, "r2's proxy refuses the revoked grant", 10*time.Second, func() bool {
		code, _ := call(reps[2], tok1)
		return code == http.StatusUnauthorized || code == http.StatusForbidden
	})
	if d := time.Since(revoked); d > time.Second {
		t.Errorf("the revocation reached r2's proxy after %v, want < 1s", d)
	}
	t.Logf("revocation on r1 refused at r2 after %v", time.Since(revoked))

	// Load on every proxy; a replica dies, then an etcd member.
	_, tok := grant()
	var mu sync.Mutex
	var acked []string
	var okCalls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, auditID := call(reps[(w+i)%3], tok)
				if code != http.StatusOK {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if auditID == "" {
					t.Error("an answered call carries no Pamctl-Audit-Id")
					continue
				}
				mu.Lock()
				acked = append(acked, auditID)
				mu.Unlock()
				okCalls.Add(1)
			}
		}()
	}
	awaitCalls := func(what string, n int64) {
		t.Helper()
		base := okCalls.Load()
		waitUntil(t, what, 90*time.Second, func() bool { return okCalls.Load() >= base+n })
	}
	awaitCalls("calls on three replicas", 60)
	reps[0].cmd.Process.Signal(syscall.SIGKILL)
	reps[0].cmd.Wait()
	awaitCalls("calls with r0 killed", 60)
	cluster.Stop(0)
	awaitCalls("calls with an etcd member down", 60)
	close(stop)
	wg.Wait()

	// Every acknowledged call is in the trail (read straight from etcd).
	db, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: cluster.Endpoints(), Prefix: "/replicas/"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lg, err := db.AuditLog(context.Background(), etcdstore.AuditOptions{Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	inTrail := map[string]int{}
	if err := lg.Range(context.Background(), 0, func(e audit.Event) bool {
		if e.Type == audit.TypeProxyCall {
			inTrail[e.Details["request_id"]]++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, id := range acked {
		if inTrail[id] != 1 {
			t.Fatalf("acknowledged call %s is in the trail %d times", id, inTrail[id])
		}
	}
	n := len(acked)
	mu.Unlock()
	vr, err := admin.AuditVerify(context.Background())
	if err != nil || !vr.OK {
		t.Fatalf("audit verify through r1: %+v %v", vr, err)
	}
	t.Logf("%d acknowledged calls, all in the trail; audit verify: %+v", n, vr)
}
