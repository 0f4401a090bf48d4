package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/proxy"
)

// Counter schema (one more bucket beside those in store.go):
//
//	counters     grant id             -> counterRecord (the grant's spent limits)
var bucketCounters = []byte("counters")

var _ proxy.CounterStore = (*Counters)(nil)

// DefaultCounterFlush is how often buffered counter updates are written.
const DefaultCounterFlush = time.Second

// CounterOptions tunes DB.Counters. The zero value is right for production.
type CounterOptions struct {
	// FlushInterval is how often buffered updates are written (default
	// DefaultCounterFlush). A crash loses at most the updates of the last
	// interval: the limits a grant used in its last second.
	FlushInterval time.Duration
	// OnError is told about failed flushes (the updates are kept and
	// retried on the next one). Default: ignored.
	OnError func(error)
	// Now is the clock for dropping expired records (default time.Now).
	Now func() time.Time
}

// Counters keeps the proxy's per-grant limit counters in the bbolt file.
// Add only merges into an in-memory buffer; a background loop writes the
// buffer in one transaction (one fsync) per FlushInterval, and Close writes
// what is left.
type Counters struct {
	db       *DB
	interval time.Duration
	onError  func(error)
	now      func() time.Time

	mu      sync.Mutex
	pending map[string]counterRecord
	swept   time.Time

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// counterRecord is a grant's stored counters, and also a buffered delta.
type counterRecord struct {
	Tokens   int64     `json:"tokens"`
	Requests int64     `json:"requests"`
	Minute   time.Time `json:"minute"`
	Expires  time.Time `json:"expires"`
}

// merge adds d to r: tokens add up; requests add up within the same minute
// and restart in a later one (only the latest minute matters to a bucket
// refilled per minute).
func (r *counterRecord) merge(d counterRecord) {
	r.Tokens += d.Tokens
	if d.Requests > 0 {
		switch {
		case d.Minute.Equal(r.Minute):
			r.Requests += d.Requests
		case d.Minute.After(r.Minute):
			r.Minute, r.Requests = d.Minute, d.Requests
		}
	}
	if d.Expires.After(r.Expires) {
		r.Expires = d.Expires
	}
}

// Counters opens the counter store and starts its flush loop; Close it
// before closing the DB.
func (db *DB) Counters(opt CounterOptions) (*Counters, error) {
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketCounters)
		return err
	}); err != nil {
		return nil, fmt.Errorf("store: create bucket %s: %w", bucketCounters, err)
	}
	c := &Counters{
		db: db, interval: opt.FlushInterval, onError: opt.OnError, now: opt.Now,
		pending: map[string]counterRecord{}, stop: make(chan struct{}), done: make(chan struct{}),
	}
	if c.interval <= 0 {
		c.interval = DefaultCounterFlush
	}
	if c.onError == nil {
		c.onError = func(error) {}
	}
	if c.now == nil {
		c.now = time.Now
	}
	go c.loop()
	return c, nil
}

func (c *Counters) loop() {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.Flush(); err != nil {
				c.onError(err)
			}
		}
	}
}

// Load returns what the grant has spent: the stored record with the
// buffered updates on top.
func (c *Counters) Load(_ context.Context, grant string) (proxy.GrantUsage, error) {
	var r counterRecord
	err := c.db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bucketCounters, []byte(grant), &r) })
	if err != nil && err != ErrNotFound {
		return proxy.GrantUsage{}, err
	}
	c.mu.Lock()
	if d, ok := c.pending[grant]; ok {
		r.merge(d)
	}
	c.mu.Unlock()
	return proxy.GrantUsage{Tokens: r.Tokens, Requests: r.Requests, Minute: r.Minute}, nil
}

// Add buffers d; it never touches the disk.
func (c *Counters) Add(grant string, d proxy.UsageDelta) {
	rec := counterRecord{Tokens: d.Tokens, Requests: d.Requests, Expires: d.Expires}
	if d.Requests > 0 {
		rec.Minute = d.At.UTC().Truncate(time.Minute)
	}
	c.mu.Lock()
	p := c.pending[grant]
	p.merge(rec)
	c.pending[grant] = p
	c.mu.Unlock()
}

// Flush writes the buffered updates in one transaction and, at most every
// ten minutes, drops the records of grants expired for over an hour.
func (c *Counters) Flush() error {
	c.mu.Lock()
	batch := c.pending
	c.pending = map[string]counterRecord{}
	sweep := c.now().Sub(c.swept) >= 10*time.Minute
	c.mu.Unlock()
	if len(batch) == 0 && !sweep {
		return nil
	}
	now := c.now()
	err := c.db.bolt.Update(func(tx *bolt.Tx) error {
		for grant, d := range batch {
			var r counterRecord
			if err := get(tx, bucketCounters, []byte(grant), &r); err != nil && err != ErrNotFound {
				return err
			}
			r.merge(d)
			if err := put(tx, bucketCounters, []byte(grant), r); err != nil {
				return err
			}
		}
		if !sweep {
			return nil
		}
		var expired [][]byte
		cur := tx.Bucket(bucketCounters).Cursor()
		for k, raw := cur.First(); k != nil; k, raw = cur.Next() {
			var r counterRecord
			if decode(raw, &r) == nil && !r.Expires.IsZero() && now.After(r.Expires.Add(time.Hour)) {
				expired = append(expired, append([]byte(nil), k...))
			}
		}
		for _, k := range expired {
			if err := tx.Bucket(bucketCounters).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		for grant, d := range batch { // keep them for the next flush
			p := d
			p.merge(c.pending[grant])
			c.pending[grant] = p
		}
		return fmt.Errorf("store: flush counters: %w", err)
	}
	if sweep {
		c.swept = now
	}
	return nil
}

// Close stops the flush loop and writes what is buffered.
func (c *Counters) Close() error {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	return c.Flush()
}
