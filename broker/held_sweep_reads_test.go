package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
)

// countingStore counts what the sweep asks the store.
type countingStore struct {
	broker.Store
	gets atomic.Int64
}

func (c *countingStore) GetRequest(ctx context.Context, id string) (*broker.Request, error) {
	c.gets.Add(1)
	return c.Store.GetRequest(ctx, id)
}

// The sweep's look for calls held on ended grants (review A): it read the
// grant of every pending held call on every tick, 2 s apart, though
// nothing had ended or failed; an agent whose calls a rule holds (each
// stays pending up to its retry window) cost the leader one read per call
// per tick. It now looks at each grant once per look, looks every 30 s
// when nothing failed, and still ends the calls of a grant that ended.
func TestSweepLooksAtEachHeldGrantOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cs := &countingStore{Store: e.db}
	svc, err := broker.New(ctx, broker.Config{Store: cs, IDTokens: e.idv, Keys: e.keys, Issuer: "http://broker.test", Audit: e.log,
		Policies: testPolicies, Rules: testRules, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	alice := e.login("alice", "ml")
	g := liveGrant(t, e, alice, time.Hour)
	const n = 50
	for i := 0; i < n; i++ {
		h := dropTableHold(alice, g.ID)
		h.SHA256 = fmt.Sprintf("%064x", i)
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		if _, err := svc.HoldPrompt(short, h); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	cs.gets.Store(0)
	if err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cs.gets.Load(); got > 1 {
		t.Fatalf("the first look read the store %d times for %d calls held on one live grant", got, n)
	}
	// The next ticks, within 30 s, do not look again.
	cs.gets.Store(0)
	e.clock.Add(2 * time.Second)
	if err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if g := cs.gets.Load(); g != 0 {
		t.Fatalf("an idle tick 2 s later read %d requests", g)
	}
	// 30 s on it looks again, once.
	e.clock.Add(30 * time.Second)
	if err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cs.gets.Load(); got != 1 {
		t.Fatalf("the look 30 s on read the grant %d times, want 1", got)
	}
}

// A hold's grant and token ids are bounded as its names are (review A:
// the token id, which the proxy vouches for over the link, is stored in
// the hold and repeated on every prompt.* event of the call).
func TestHoldIDsAreBounded(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice", "ml")
	g := liveGrant(t, e, alice, time.Hour)
	for _, f := range []struct {
		what string
		set  func(*broker.Hold)
	}{
		{"token id", func(h *broker.Hold) { h.TokenID = strings.Repeat("t", 257) }},
		{"grant id", func(h *broker.Hold) { h.GrantID = strings.Repeat("g", 257) }},
	} {
		h := dropTableHold(alice, g.ID)
		f.set(&h)
		short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := e.svc.HoldPrompt(short, h)
		cancel()
		var be *broker.Error
		if !errors.As(err, &be) || be.Code != broker.CodeInvalid || !strings.Contains(be.Message, f.what) {
			t.Errorf("a hold with a 257-byte %s: %v", f.what, err)
		}
	}
}
