// Package etcdtest starts real etcd members inside the test process
// (go.etcd.io/etcd/server/v3/embed), so the etcd store backend is tested
// against etcd itself with nothing to install. Only tests import it: the
// pamctl binary links the etcd client, never the server
// (cmd/pamctl/layout_test.go checks).
package etcdtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/crypto/bcrypt"
)

// Cluster is a set of embedded etcd members on loopback ports.
type Cluster struct {
	t       testing.TB
	dir     string
	names   []string
	clients []url.URL
	peers   []url.URL
	initial string

	mu      sync.Mutex
	members []*embed.Etcd // nil when stopped
}

// Start starts an n-member cluster and waits until it has a leader. The
// members stop when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, dir: t.TempDir(), members: make([]*embed.Etcd, n)}
	var initial []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("m%d", i)
		c.names = append(c.names, name)
		c.clients = append(c.clients, freeURL(t))
		c.peers = append(c.peers, freeURL(t))
		initial = append(initial, name+"="+c.peers[i].String())
	}
	c.initial = strings.Join(initial, ",")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = c.start(i, "new")
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	t.Cleanup(c.Close)
	return c
}

// freeURL is a loopback URL nothing listens on, for a member started
// next. The port is free when picked, not when etcd binds it; one from the
// kernel's ephemeral range (what port 0 gives) can be taken in between by
// any connection or port-0 listener of the tests running beside this one,
// so it is picked below that range when there is room.
func freeURL(t testing.TB) url.URL {
	t.Helper()
	if low := ephemeralLow(); low > 11000 {
		for range 100 {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(low-10000)))
			if err == nil {
				l.Close()
				return url.URL{Scheme: "http", Host: l.Addr().String()}
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// ephemeralLow is the first port of the kernel's ephemeral range (0 when
// it cannot be read).
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var low int
	if _, err := fmt.Sscan(string(raw), &low); err != nil {
		return 0
	}
	return low
}

func (c *Cluster) start(i int, state string) error {
	cfg := embed.NewConfig()
	cfg.Name = c.names[i]
	cfg.Dir = filepath.Join(c.dir, c.names[i])
	cfg.ListenClientUrls = []url.URL{c.clients[i]}
	cfg.AdvertiseClientUrls = []url.URL{c.clients[i]}
	cfg.ListenPeerUrls = []url.URL{c.peers[i]}
	cfg.AdvertisePeerUrls = []url.URL{c.peers[i]}
	cfg.InitialCluster = c.initial
	cfg.InitialClusterToken = "pamctl-test"
	cfg.ClusterState = state
	cfg.LogLevel = "error"
	cfg.Logger = "zap"
	cfg.LogOutputs = []string{filepath.Join(c.dir, c.names[i]+".log")}
	// etcd hashes passwords with bcrypt at cfg.BcryptCost (default 10) when
	// a user is added, and checks one at that cost on every Authenticate:
	// each client with credentials, and each new gRPC stream of such a
	// client (clientv3 authenticates again before every watch or lease
	// keep-alive stream). Under -race one hash at cost 10 takes about a
	// second on an idle core and several on a loaded 2-core CI machine,
	// which is what made the auth tests slow and flaky. The lowest cost is
	// what etcd's own tests use; tests check access, not hash strength.
	cfg.BcryptCost = uint(bcrypt.MinCost)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("member %s: %w", c.names[i], err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("member %s: %w", c.names[i], err)
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("member %s: not ready after 30s", c.names[i])
	}
	c.mu.Lock()
	c.members[i] = e
	c.mu.Unlock()
	return nil
}

// Endpoints are the members' client URLs, for clientv3.Config.Endpoints or
// pamctl's store.etcd.endpoints.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.clients))
	for i, u := range c.clients {
		out[i] = u.String()
	}
	return out
}

// Client returns a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		c.t.Fatalf("etcdtest: client: %v", err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// Stop stops member i, as a crash would (its data directory stays).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	e := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts a stopped member i again from its data directory.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.start(i, "existing"); err != nil {
		c.t.Fatalf("etcdtest: restart: %v", err)
	}
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
}
