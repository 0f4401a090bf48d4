package link

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// A key withdrawn at once (keys rotate --retire-now) leaves the broker's
// JWKS, but a proxy refetches its cached JWKS only for a kid it does not
// know: it would go on taking the withdrawn key's tokens. So every stream
// message carries the version of the broker's signing keys; a change is
// pushed at once (a full message, not at the next heartbeat), and the
// proxy refetches the JWKS, dropping the withdrawn key.
func TestStreamPushesSigningKeyChanges(t *testing.T) {
	var sig atomic.Value
	sig.Store("s1")
	r := newRegistry(&memStore{}, &memLog{}, &revSet{}, grants{})
	r.SigningKeys = func() string { return sig.Load().(string) }
	e := enroll(t, r)
	msgs := make(chan StreamState, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Stream(ctx, e, time.Hour, func(s StreamState) error { msgs <- s; return nil })
	if first := <-msgs; first.SigningKeys != "s1" {
		t.Fatalf("first message: %+v", first)
	}
	start := time.Now()
	sig.Store("s2")
	select {
	case m := <-msgs:
		if m.SigningKeys != "s2" || m.Delta {
			t.Fatalf("after the change: %+v, want a full message with s2", m)
		}
	case <-time.After(time.Second):
		t.Fatal("a signing-key change waited for the heartbeat")
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("signing-key change took %s", d)
	}
}

func TestClientRefetchesJWKSWhenSigningKeysChange(t *testing.T) {
	oldPub, _, _ := ed25519.GenerateKey(rand.Reader)
	newPub, _, _ := ed25519.GenerateKey(rand.Reader)
	oldKid, newKid := token.KeyID(oldPub), token.KeyID(newPub)
	var doc atomic.Value
	doc.Store(token.JWKS{Keys: []token.JWK{jwkOf(oldKid, oldPub)}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(doc.Load())
	}))
	defer srv.Close()
	c, _ := NewClient(ClientOptions{BrokerURL: srv.URL, IDTokenFile: "x", Spool: &memSpool{}})
	ctx := context.Background()
	if err := c.loadJWKS(ctx); err != nil {
		t.Fatal(err)
	}
	// Versions as the client already has them: nothing else is fetched.
	c.keysV, c.cfgV = "v", "c"
	if err := c.apply(ctx, StreamState{KeysVersion: "v", ConfigVersion: "c", SigningKeys: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.PublicKey(oldKid); !ok {
		t.Fatal("the current key is not trusted")
	}
	// retire-now: the broker publishes only the new key.
	doc.Store(token.JWKS{Keys: []token.JWK{jwkOf(newKid, newPub)}})
	if err := c.apply(ctx, StreamState{KeysVersion: "v", ConfigVersion: "c", SigningKeys: "s2"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.PublicKey(oldKid); ok {
		t.Fatal("the proxy still trusts a withdrawn key after the stream said the signing keys changed")
	}
	if _, ok := c.PublicKey(newKid); !ok {
		t.Fatal("the new key is not trusted")
	}
}
