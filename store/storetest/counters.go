package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/proxy"
)

// Counters is what the counters suite needs of a backend's limit
// counters: the proxy's CounterStore, written through by Flush and Close.
type Counters interface {
	proxy.CounterStore
	Flush() error
	Close() error
}

// CountersBackend describes a backend to the counters suite.
type CountersBackend struct {
	// New returns an opener of counters over one new, empty store; each
	// call opens another instance over the same store (a restart, or with
	// a shared backend another replica). The suite closes what it opens.
	New func(t *testing.T) func() Counters
	// Shared is true when instances open at once share counts
	// (proxy.SharedCounters).
	Shared bool
}

// CountersSuite runs the limit counters suite.
func CountersSuite(t *testing.T, b CountersBackend) {
	tests := []struct {
		name string
		fn   func(*testing.T, func() Counters)
	}{
		{"TokensSurviveARestart", countersRestart},
		{"GrantsAreSeparate", countersSeparate},
		{"ConcurrentAddsSum", countersConcurrent},
	}
	if b.Shared {
		tests = append(tests, struct {
			name string
			fn   func(*testing.T, func() Counters)
		}{"SharedMinuteNeverOvershoots", countersSharedMinute})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := b.New(t)
			tc.fn(t, func() Counters {
				c := open()
				t.Cleanup(func() { c.Close() })
				return c
			})
		})
	}
}

var cexp = time.Now().Add(time.Hour)

func load(t *testing.T, c Counters, grant string) proxy.GrantUsage {
	t.Helper()
	u, err := c.Load(context.Background(), grant)
	if err != nil {
		t.Fatalf("Load(%s): %v", grant, err)
	}
	return u
}

func countersRestart(t *testing.T, open func() Counters) {
	c := open()
	if u := load(t, c, "g1"); u.Tokens != 0 || u.Requests != 0 {
		t.Fatalf("a new grant: %+v, want nothing spent", u)
	}
	c.Add("g1", proxy.UsageDelta{Tokens: 10, At: time.Now(), Expires: cexp})
	c.Add("g1", proxy.UsageDelta{Tokens: 5, At: time.Now(), Expires: cexp})
	if u := load(t, c, "g1"); u.Tokens != 15 {
		t.Fatalf("before a flush: %d tokens, want 15 (buffered updates count)", u.Tokens)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := open()
	if u := load(t, c2, "g1"); u.Tokens != 15 {
		t.Fatalf("after a restart: %d tokens, want 15", u.Tokens)
	}
	c2.Add("g1", proxy.UsageDelta{Tokens: 1, At: time.Now(), Expires: cexp})
	if err := c2.Flush(); err != nil {
		t.Fatal(err)
	}
	if u := load(t, c2, "g1"); u.Tokens != 16 {
		t.Fatalf("after another add: %d tokens, want 16", u.Tokens)
	}
}

func countersSeparate(t *testing.T, open func() Counters) {
	c := open()
	c.Add("a", proxy.UsageDelta{Tokens: 3, At: time.Now(), Expires: cexp})
	c.Add("b", proxy.UsageDelta{Tokens: 4, At: time.Now(), Expires: cexp})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if a, b := load(t, c, "a"), load(t, c, "b"); a.Tokens != 3 || b.Tokens != 4 {
		t.Fatalf("a %d b %d, want 3 and 4", a.Tokens, b.Tokens)
	}
	if u := load(t, c, "a/b"); u.Tokens != 0 {
		t.Fatalf("grant a/b shares a's counters: %+v", u)
	}
}

func countersConcurrent(t *testing.T, open func() Counters) {
	c := open()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				c.Add("g", proxy.UsageDelta{Tokens: 2, At: time.Now(), Expires: cexp})
			}
		}()
	}
	wg.Add(1)
	go func() { // flushes race the adds
		defer wg.Done()
		for range 5 {
			c.Flush()
		}
	}()
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if u := load(t, open(), "g"); u.Tokens != 800 {
		t.Fatalf("%d tokens after 400 concurrent adds of 2, want 800", u.Tokens)
	}
}

func countersSharedMinute(t *testing.T, open func() Counters) {
	a, b := open().(proxy.SharedCounters), open().(proxy.SharedCounters)
	const rpm = 40
	at := time.Date(2026, 6, 1, 9, 30, 5, 0, time.UTC)
	var mu sync.Mutex
	taken := 0
	var wg sync.WaitGroup
	for w := range 8 {
		c := a
		if w%2 == 1 {
			c = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				ok, err := c.Take(context.Background(), "g", at, rpm)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					taken++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if taken > rpm {
		t.Fatalf("two instances took %d units of a %d-request minute", taken, rpm)
	}
	if ok, _ := a.Take(context.Background(), "g", at.Add(time.Minute), rpm); !ok {
		t.Fatal("the next minute is refused")
	}
}
