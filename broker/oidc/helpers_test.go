package oidc_test

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// testKey is shared by most test issuers so each does not generate an RSA key.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testIssuer is a dev issuer on an httptest server that can be taken down,
// wholly or only its JWKS, and counts discovery requests.
type testIssuer struct {
	*devissuer.Issuer
	srv         *httptest.Server
	down        atomic.Bool
	keysDown    atomic.Bool
	discoveries atomic.Int32
}

func startIssuer(t *testing.T, path string, opts ...devissuer.Option) *testIssuer {
	t.Helper()
	ti := &testIssuer{srv: httptest.NewUnstartedServer(nil)}
	iss, err := devissuer.New("http://"+ti.srv.Listener.Addr().String()+path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ti.Issuer = iss
	ti.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, devissuer.PathDiscovery) {
			ti.discoveries.Add(1)
		}
		if ti.down.Load() || (ti.keysDown.Load() && strings.HasSuffix(r.URL.Path, devissuer.PathKeys)) {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		iss.ServeHTTP(w, r)
	})
	ti.srv.Start()
	t.Cleanup(ti.srv.Close)
	return ti
}

// sharedKey makes an issuer sign with testKey.
func sharedKey() devissuer.Option { return devissuer.WithSigningKey(testKey()) }

func mustMint(t *testing.T, iss *testIssuer, c devissuer.Claims) string {
	t.Helper()
	raw, err := iss.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
