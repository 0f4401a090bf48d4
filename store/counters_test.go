package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/proxy"
)

// TestCountersSurviveRestart: what a grant spent is still spent after the
// database is closed and opened again, buffered updates included.
func TestCountersSurviveRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	exp := at.Add(time.Hour)

	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.Counters(CounterOptions{FlushInterval: time.Hour}) // only Close flushes
	if err != nil {
		t.Fatal(err)
	}
	c.Add("req_a", proxy.UsageDelta{Requests: 1, At: at, Expires: exp})
	c.Add("req_a", proxy.UsageDelta{Requests: 1, At: at.Add(10 * time.Second), Expires: exp})
	c.Add("req_a", proxy.UsageDelta{Tokens: 120, At: at, Expires: exp})
	c.Add("req_b", proxy.UsageDelta{Tokens: 7, At: at, Expires: exp})
	// Buffered, not yet written, but Load sees it.
	if u, err := c.Load(ctx, "req_a"); err != nil || u.Tokens != 120 || u.Requests != 2 || !u.Minute.Equal(at.Truncate(time.Minute)) {
		t.Fatalf("before flush: %+v %v", u, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err = db.Counters(CounterOptions{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.Load(ctx, "req_a")
	if err != nil || u.Tokens != 120 || u.Requests != 2 || !u.Minute.Equal(at.Truncate(time.Minute)) {
		t.Fatalf("after restart: %+v %v", u, err)
	}
	if u, _ := c.Load(ctx, "req_b"); u.Tokens != 7 || u.Requests != 0 {
		t.Fatalf("req_b after restart: %+v", u)
	}
	if u, err := c.Load(ctx, "req_unknown"); err != nil || u != (proxy.GrantUsage{}) {
		t.Fatalf("unknown grant: %+v %v", u, err)
	}
	// Tokens add up across flushes; requests restart in a later minute.
	c.Add("req_a", proxy.UsageDelta{Tokens: 30, Requests: 1, At: at.Add(time.Minute), Expires: exp})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if u, _ := c.Load(ctx, "req_a"); u.Tokens != 150 || u.Requests != 1 || !u.Minute.Equal(at.Add(time.Minute).Truncate(time.Minute)) {
		t.Fatalf("next minute: %+v", u)
	}
}

// TestCountersFlushInBackground: the loop writes buffered updates without
// Close, so a crash loses at most one interval.
func TestCountersFlushInBackground(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "data"))
	c, err := db.Counters(CounterOptions{FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Add("req_a", proxy.UsageDelta{Tokens: 5, At: time.Now(), Expires: time.Now().Add(time.Hour)})
	deadline := time.Now().Add(5 * time.Second)
	for {
		var r counterRecord
		err := db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bucketCounters, []byte("req_a"), &r) })
		if err == nil && r.Tokens == 5 {
			break
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the buffered update was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCountersDropExpiredGrants: records of grants expired for over an hour
// go at the next sweep.
func TestCountersDropExpiredGrants(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	db := openTest(t, filepath.Join(t.TempDir(), "data"))
	c, err := db.Counters(CounterOptions{FlushInterval: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Add("old", proxy.UsageDelta{Tokens: 1, At: now, Expires: now.Add(-2 * time.Hour)})
	c.Add("live", proxy.UsageDelta{Tokens: 1, At: now, Expires: now.Add(time.Hour)})
	if err := c.Flush(); err != nil { // first flush also sweeps; "old" was just written
		t.Fatal(err)
	}
	now = now.Add(11 * time.Minute)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if u, _ := c.Load(ctx, "old"); u.Tokens != 0 {
		t.Fatalf("expired grant kept: %+v", u)
	}
	if u, _ := c.Load(ctx, "live"); u.Tokens != 1 {
		t.Fatalf("live grant dropped: %+v", u)
	}
}
