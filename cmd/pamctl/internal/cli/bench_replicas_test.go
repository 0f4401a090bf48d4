package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/store/etcdtest"
)

// BenchmarkEtcdReplicaProxyThroughput is proxy throughput with one and with
// two pamctl replicas on one 3-member etcd cluster (all in this process):
// 32 clients, each replica's proxy taking its share with a token its
// broker issued, audit durable (an etcd quorum commit per group). Report:
// calls/s. On a 2-core box both replicas share the same two cores, so this
// measures what replication costs, not what more machines would buy.
func BenchmarkEtcdReplicaProxyThroughput(b *testing.B) {
	cluster := etcdtest.Start(b, 3)
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			keyFile := filepath.Join(b.TempDir(), "master.key")
			type replica struct {
				s   *testServer
				tok string
			}
			var reps []replica
			// One shared state per run (the testing package calls this
			// function more than once, each time with a new master key).
			prefix := fmt.Sprintf("/bench-%d-%d/", n, time.Now().UnixNano())
			for range n {
				s := startServerOpts(b, func(c *Config) {
					onEtcd(cluster)(c)
					c.Store.Etcd.Prefix = prefix
					c.MasterKeyFile = keyFile
				}, AppOptions{Dev: true})
				reps = append(reps, replica{s: s})
			}
			// A grant per replica, asked, approved and issued through it.
			for i := range reps {
				s := reps[i].s
				b.Setenv("PAMCTL_SERVER", s.app.BrokerURL())
				s.as(b, "alice", "", "login", "--user", "alice", "--groups", "ml").must(b, "alice login")
				s.as(b, "bob", "", "login", "--user", "bob", "--groups", "security").must(b, "bob login")
				out := s.as(b, "alice", "", "request", "--scope", "model:gpt-4o", "--nowait", "-o", "json").must(b, "request").out
				var req struct{ ID string }
				if err := json.Unmarshal([]byte(out), &req); err != nil || req.ID == "" {
					b.Fatalf("request: %v %s", err, out)
				}
				s.as(b, "bob", "", "approve", req.ID).must(b, "approve")
				reps[i].tok = strings.TrimSpace(s.as(b, "alice", "", "token", req.ID).must(b, "token").out)
			}
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			call := func(r replica) error {
				req, _ := http.NewRequest(http.MethodPost, r.s.app.ProxyURL()+"/v1/chat/completions",
					strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`))
				req.Header.Set("Authorization", "Bearer "+r.tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}
			for _, r := range reps { // warm: connections, caches
				if err := call(r); err != nil {
					b.Fatalf("warm-up call: %v", err)
				}
			}
			const clients = 32
			var next atomic.Int64
			var failed atomic.Pointer[error]
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := reps[c%len(reps)]
					for next.Add(1) <= int64(b.N) {
						if err := call(r); err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if e := failed.Load(); e != nil {
				b.Fatalf("call failed: %v", *e)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
		})
	}
}
