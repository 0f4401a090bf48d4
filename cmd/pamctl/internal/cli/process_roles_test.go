package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/tlsconf"
)

// A broker and two proxies as real processes: the broker is killed
// (SIGKILL) and comes back, a proxy is killed and comes back, and every
// call a client saw answered is in the trail exactly once.
func TestProxyRoleProcessesSurviveKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	// The workload identity provider: an OIDC issuer in this process.
	idpURL, mint := workloadIdP(t, dir)
	up := keyCheckingUpstream(t)

	// Everything between pamctl processes is TLS, under a test CA the
	// proxies and the CLI are given as ca_file.
	certs, err := tlsconf.GenerateDev(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PAMCTL_CA_FILE", certs.CAFile)
	tlsClient, err := tlsconf.HTTPClient(certs.CAFile, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	healthy := func(url string) bool {
		resp, err := tlsClient.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	baddr := freePort(t)
	brokerURL := "https://" + baddr
	waitBroker := func() {
		t.Helper()
		waitUntil(t, "the broker", 10*time.Second, func() bool { return healthy(brokerURL + "/healthz") })
	}
	brokerData := filepath.Join(dir, "broker")
	brokerCfg := filepath.Join(dir, "broker.yaml")
	os.WriteFile(brokerCfg, []byte(fmt.Sprintf(`role: broker
server: %s
broker: { addr: %s, tls: { cert_file: %s, key_file: %s } }
data_dir: %s
master_key_file: %s
issuers:
  - { name: ci, url: %s, client_id: pamctl, workload: true }
policies:
  - { name: proxies, subjects: { users: [proxy-a, proxy-b] }, scopes: ["proxy:serve"], max_ttl: 1h }
  - { name: ml, subjects: { groups: [ml] }, scopes: ["model:gpt-4o"], max_ttl: 1h }
upstreams:
  - { name: openai, url: %s/v1, key: openai }
`, brokerURL, baddr, certs.CertFile, certs.KeyFile, brokerData, filepath.Join(dir, "master.key"), idpURL, up.URL)), 0o600)
	var procs sync.Map
	start := func(name string, args ...string) *exec.Cmd {
		cmd, out := pamctlProcess(t, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs.Store(name, cmd)
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s output:\n%s", name, out.String())
			}
		})
		return cmd
	}
	broker := start("broker", "serve", "--config", brokerCfg)
	waitBroker()
	admin := api.NewSocketClient(SocketPath(brokerData))
	if _, err := admin.VaultSet(context.Background(), "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}
	proxyCfg := func(name, server, addr, staleness string) string {
		f := filepath.Join(dir, name+".yaml")
		os.WriteFile(f, []byte(fmt.Sprintf(`role: proxy
server: %s
ca_file: %s
data_dir: %s
proxy:
  addr: %s
  tls: { cert_file: %s, key_file: %s }
  identity: { id_token_file: %s }
  revocation_staleness: %s
`, server, certs.CAFile, filepath.Join(dir, name), addr, certs.CertFile, certs.KeyFile, mint(name), staleness)), 0o600)
		return f
	}
	aaddr, baddrP := freePort(t), freePort(t)
	aCfg := proxyCfg("proxy-a", brokerURL, aaddr, "30s")
	start("proxy-a", "serve", "--config", aCfg)
	// proxy-b reaches the broker by another name than the broker's own
	// URL (the tokens' issuer): it checks the issuer the broker names.
	_, port, _ := strings.Cut(baddr, ":")
	start("proxy-b", "serve", "--config", proxyCfg("proxy-b", "https://localhost:"+port, baddrP, "2s"))
	ready := func(addr string) bool { return healthy("https://" + addr + "/readyz") }
	waitUntil(t, "both proxies ready", 15*time.Second, func() bool { return ready(aaddr) && ready(baddrP) })

	s := &testServer{dir: dir}
	t.Setenv("PAMCTL_SERVER", brokerURL)
	s.as(t, "alice", "", "login", "--id-token-file", mint("alice", "ml")).must(t, "alice login")
	s.as(t, "alice", "", "request", "--scope", "model:gpt-4o").must(t, "request")
	tok := strings.TrimSpace(s.as(t, "alice", "", "token").must(t, "token").out)
	call := func(addr string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := tlsClient.Do(req)
		if err != nil {
			return -1, ""
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Pamctl-Audit-Id")
	}
	var acked []string
	mustCall := func(addr, what string) {
		t.Helper()
		code, id := call(addr)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", what, code)
		}
		acked = append(acked, id)
	}
	mustCall(aaddr, "proxy-a")
	mustCall(baddrP, "proxy-b")

	// The broker is killed: proxy-a serves on and spools; proxy-b (2s) refuses.
	broker.Process.Signal(syscall.SIGKILL)
	broker.Wait()
	for i := range 4 {
		mustCall(aaddr, fmt.Sprintf("proxy-a during the outage (%d)", i))
	}
	waitUntil(t, "proxy-b to refuse", 5*time.Second, func() bool { code, _ := call(baddrP); return code == http.StatusServiceUnavailable })

	// proxy-a is killed too, with events still in its spool, and restarts.
	pa, _ := procs.Load("proxy-a")
	pa.(*exec.Cmd).Process.Signal(syscall.SIGKILL)
	pa.(*exec.Cmd).Wait()
	start("broker", "serve", "--config", brokerCfg)
	waitBroker()
	start("proxy-a", "serve", "--config", aCfg)
	waitUntil(t, "both proxies ready again", 15*time.Second, func() bool { return ready(aaddr) && ready(baddrP) })
	mustCall(aaddr, "proxy-a after its restart")
	mustCall(baddrP, "proxy-b after the broker's return")

	count := func() map[string]int {
		evs, err := admin.AuditEvents(context.Background(), audit.Filter{Types: []audit.Type{audit.TypeProxyCall}}, 1000)
		if err != nil {
			return nil
		}
		n := map[string]int{}
		for _, e := range evs {
			if e.Details["proxy"] != "" {
				n[e.Details["request_id"]]++
			}
		}
		return n
	}
	waitUntil(t, "every acknowledged call in the trail", 10*time.Second, func() bool {
		n := count()
		for _, id := range acked {
			if n[id] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(1500 * time.Millisecond) // a duplicate, if any, would arrive now
	n := count()
	for _, id := range acked {
		if n[id] != 1 {
			t.Fatalf("call %s is in the trail %d times", id, n[id])
		}
	}
	es, err := admin.Proxies(context.Background())
	if err != nil || len(es) != 2 {
		t.Fatalf("enrollments after the restarts: %d %v (a restarted proxy must renew its enrollment)", len(es), err)
	}
	if vr, err := admin.AuditVerify(context.Background()); err != nil || !vr.OK {
		t.Fatalf("audit verify: %+v %v", vr, err)
	}
}
