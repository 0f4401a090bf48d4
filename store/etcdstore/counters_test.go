package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/proxy/devupstream"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

// fixedClaims verifies every token as one grant with the given limits.
type fixedClaims struct{ lim *token.Limits }

func (f fixedClaims) Verify(raw string) (*token.Claims, error) {
	return &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "agent", ID: "jti-" + raw,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Use: token.UseAccess, Scope: "model:gpt-4o", Req: "req_shared", Limits: f.lim}, nil
}

type devKey struct{}

func (devKey) ProviderKey(context.Context, string) (string, error) { return "sk-dev-test", nil }

type countSink struct{ n atomic.Int64 }

func (s *countSink) Append(context.Context, *audit.Event) error { s.n.Add(1); return nil }

// newSharedProxy is one replica's proxy over counters shared through cli.
func newSharedProxy(t *testing.T, c *Counters, lim *token.Limits, now func() time.Time) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(devupstream.New(devupstream.Options{RequireKey: "sk-dev-test"}))
	t.Cleanup(up.Close)
	p, err := proxy.New(proxy.Options{Verifier: fixedClaims{lim}, Keys: devKey{}, Audit: &countSink{},
		Upstreams: []proxy.Upstream{{Name: "openai", URL: up.URL + "/v1", KeyName: "openai"}},
		Counters:  c, Now: now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv
}

// TestSharedRPMTwoProxies measures the overshoot of a shared rpm limit:
// two proxies (two Counters, as two replicas have) hammer one grant limited
// to 60 requests a minute with 8 clients each, all within one minute of
// their clock. Together they admit at most the limit (documented overshoot
// 0), and at least the limit minus what each replica may strand in an
// unused allotment (Allotment(60)-1 each).
func TestSharedRPMTwoProxies(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	const rpm = 60
	lim := &token.Limits{RPM: rpm}
	at := time.Date(2026, 5, 1, 12, 0, 10, 0, time.UTC)
	now := func() time.Time { return at } // no refill: one minute, however slow the machine
	var srvs []*httptest.Server
	for i := 0; i < 2; i++ {
		c, err := OpenCounters(cluster.Client(), "/limits/", 5*time.Second, nil, CounterOptions{Replica: fmt.Sprintf("r%d", i), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		srvs = append(srvs, newSharedProxy(t, c, lim, now))
	}
	var admitted, limited atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		srv := srvs[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions",
					strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("Authorization", fmt.Sprintf("Bearer tok-%d", w))
				req.Header.Set("Content-Type", "application/json")
				res, err := srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case 200:
					admitted.Add(1)
				case 429:
					limited.Add(1)
				default:
					t.Errorf("status %d: %s", res.StatusCode, b)
				}
			}
		}()
	}
	wg.Wait()
	a := admitted.Load()
	overshoot := a - rpm
	t.Logf("2 proxies, rpm %d, 160 calls: admitted %d, refused %d (overshoot %d, allotment %d)", rpm, a, limited.Load(), overshoot, Allotment(rpm))
	if a > rpm {
		t.Fatalf("admitted %d calls in one minute with a shared limit of %d: overshoot %d, documented 0", a, rpm, overshoot)
	}
	if floor := rpm - 2*(Allotment(rpm)-1); a < floor {
		t.Fatalf("admitted %d, want at least %d (limit minus stranded allotments)", a, floor)
	}
}

// TestSharedBudget: token usage one replica reports reaches the other
// within the flush interval, and Load sums every replica's records.
func TestSharedBudget(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client()
	open := func(name string) *Counters {
		c, err := OpenCounters(cli, "/budget/", 5*time.Second, nil, CounterOptions{Replica: name, FlushInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := open("a"), open("b")
	ctx := context.Background()
	if _, err := b.Load(ctx, "g"); err != nil { // b knows the grant
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	a.Add("g", proxy.UsageDelta{Tokens: 40, At: time.Now(), Expires: exp})
	waitUntil(t, 20*time.Second, "b sees a's 40 tokens", func() bool { return b.Spent("g") == 40 })
	b.Add("g", proxy.UsageDelta{Tokens: 2, At: time.Now(), Expires: exp})
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	c := open("c") // a replica that starts later
	u, err := c.Load(ctx, "g")
	if err != nil || u.Tokens != 42 {
		t.Fatalf("Load on a new replica = %+v, %v; want 42 tokens", u, err)
	}
	// Requests: Load reports the minute's claims of every replica.
	now := time.Now()
	if ok, err := a.Take(ctx, "g", now, 100); !ok || err != nil {
		t.Fatalf("Take = %v, %v", ok, err)
	}
	if u, err := c.Load(ctx, "g"); err != nil || u.Requests != Allotment(100) || !u.Minute.Equal(now.UTC().Truncate(time.Minute)) {
		t.Fatalf("Load requests = %+v, %v; want the %d claimed this minute", u, err, Allotment(100))
	}
}

// Token records of grants expired for over an hour go, also those of a
// replica that is gone; live ones stay.
func TestCountersSweepOrphans(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client()
	now := time.Now()
	// Records a replica wrote before it died: nobody alive knows "old".
	put := func(grant string, r tokensRecord) {
		b, _ := json.Marshal(r)
		if _, err := cli.Put(context.Background(), "/sweep/counters/"+grant+"/tokens/gone", string(b)); err != nil {
			t.Fatal(err)
		}
	}
	put("old", tokensRecord{Tokens: 5, Expires: now.Add(-2 * time.Hour)})
	put("live", tokensRecord{Tokens: 7, Expires: now.Add(time.Hour)})
	sweeper, err := OpenCounters(cli, "/sweep/", 5*time.Second, nil, CounterOptions{Replica: "sweeper", FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sweeper.Close()
	if err := sweeper.Flush(); err != nil { // the first flush sweeps
		t.Fatal(err)
	}
	u, err := sweeper.Load(context.Background(), "old")
	if err != nil || u.Tokens != 0 {
		t.Fatalf("expired grant's records: %+v, %v; want swept", u, err)
	}
	if u, err := sweeper.Load(context.Background(), "live"); err != nil || u.Tokens != 7 {
		t.Fatalf("live grant's records: %+v, %v; want kept", u, err)
	}
}

func TestCountersSuite(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client()
	n := 0
	storetest.CountersSuite(t, storetest.CountersBackend{Shared: true, New: func(t *testing.T) func() storetest.Counters {
		n++
		prefix := fmt.Sprintf("/counters-suite-%d/", n)
		return func() storetest.Counters {
			c, err := OpenCounters(cli, prefix, 5*time.Second, nil, CounterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}})
}
