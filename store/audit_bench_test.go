package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
)

// BenchmarkAuditAppend measures appends per second with 1, 8 and 64
// concurrent writers. "batch" is the production durable path (the
// timer-less group commit), "update" the baseline of one fsynced
// Update per event, "async" the audit.sync=async mode (the time includes
// Close, which commits what is still queued). Events are ~900 bytes.
func BenchmarkAuditAppend(b *testing.B) {
	for _, mode := range []string{"batch", "update", "async"} {
		for _, writers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				benchAppend(b, mode, writers)
			})
		}
	}
}

func benchAppend(b *testing.B, mode string, writers int) {
	db, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var commits, committed atomic.Int64
	opts := AuditOptions{updatePerEvent: mode == "update", OnBatch: func(n int) {
		commits.Add(1)
		committed.Add(int64(n))
	}}
	if mode == "async" {
		opts.Sync = audit.SyncAsync
	}
	l, err := db.AuditLog(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	cpu := reportCPU(b) // the indexer's (or async writer's) commits included
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := l.Append(ctx, benchEvent(int(i))); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if mode == "async" {
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	cpu()
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if c := commits.Load(); c > 0 {
		b.ReportMetric(float64(committed.Load())/float64(c), "events/commit")
	}
}

// BenchmarkSyncFloor is the physical floor of a durable append on this
// disk: "fdatasync" rewrites 4 KiB in place and fdatasyncs (one device
// flush), "append" appends 1 KiB to a growing file and fdatasyncs (what an
// append-only segment pays: data and the new size), "bbolt" is a one-key
// bbolt Update (what a durable audit commit pays at least: two fdatasyncs,
// pages then meta). "write" is the in-place write alone. Each reports
// cpu-us/op, the process's CPU time (user and system) per operation: on a
// VM a flush costs CPU too, which a saturated box pays in throughput.
func BenchmarkSyncFloor(b *testing.B) {
	buf := make([]byte, 4096)
	for _, c := range []struct {
		name string
		op   func(f *os.File) error
	}{
		{"write", func(f *os.File) error { _, err := f.WriteAt(buf, 0); return err }},
		{"fdatasync", func(f *os.File) error {
			if _, err := f.WriteAt(buf, 0); err != nil {
				return err
			}
			return fdatasync(f)
		}},
		{"append", func(f *os.File) error {
			if _, err := f.Write(buf[:1024]); err != nil {
				return err
			}
			return fdatasync(f)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "f"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			defer reportCPU(b)()
			for b.Loop() {
				if err := c.op(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A durable call at concurrency 1 flushes about once every 0.6–0.9
	// ms, not back to back. Paced so, a flush costs more: the CPUs have
	// gone idle in between, and the file's mtime has moved on more often
	// (a file system without a journal writes the inode with the flush
	// then; docs/performance.md, fifteenth round). Only the write and
	// flush are timed.
	b.Run("fdatasync-paced", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "f"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for b.Loop() {
			b.StopTimer()
			time.Sleep(600 * time.Microsecond)
			b.StartTimer()
			if _, err := f.WriteAt(buf, 0); err != nil {
				b.Fatal(err)
			}
			if err := fdatasync(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bbolt", func(b *testing.B) {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		defer reportCPU(b)()
		i := uint64(0)
		for b.Loop() {
			i++
			if err := db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("b"))
				if err != nil {
					return err
				}
				return bk.Put(u64(i), buf[:1024])
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU reports the process's CPU time per operation of b from now
// until the returned func runs.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
		}
	}
}

// BenchmarkAuditVerify measures Verify over a stored chain of one million
// events, with each event's authenticator (what a deployment writes: the
// master key derives a record key) and without (events from before
// authenticators).
func BenchmarkAuditVerify(b *testing.B) {
	b.Run("authenticated", func(b *testing.B) { benchmarkAuditVerify(b, testRecordKey) })
	b.Run("plain", func(b *testing.B) { benchmarkAuditVerify(b, nil) })
}

func benchmarkAuditVerify(b *testing.B, recordKey []byte) {
	const n = 1_000_000
	db, err := Open(b.TempDir(), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	l, err := db.AuditLog(AuditOptions{Signer: testSigner, RecordKey: recordKey})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	fillAudit(b, l, n)
	if _, err := l.SignHead(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rep, err := l.Verify(context.Background(), testKeys)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Events != n || !rep.Signed {
			b.Fatalf("verified %d events, signed %v", rep.Events, rep.Signed)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// fillAudit appends n events quickly: large transactions through the same
// appendTx the log uses.
func fillAudit(tb testing.TB, l *AuditLog, n int) {
	tb.Helper()
	const perTx = 10_000
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for done := 0; done < n; {
		k := min(perTx, n-done)
		drafts := make([]*audit.Draft, k)
		for i := range drafts {
			e := benchEvent(done + i)
			d, err := audit.NewDraft(e, now.Add(time.Duration(done+i)*time.Millisecond))
			if err != nil {
				tb.Fatal(err)
			}
			drafts[i] = d
		}
		err := l.db.bolt.Update(func(tx *bolt.Tx) error {
			var at sealed
			for _, d := range drafts {
				if err := l.appendTx(tx, d, &at); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		done += k
	}
}

// benchEvent is a typical proxied call, about 900 bytes stored.
func benchEvent(i int) *audit.Event {
	return &audit.Event{
		Type:     audit.TypeProxyCall,
		Actor:    &audit.Actor{Subject: "00u1abcd2EFGH3ijk4x7", Email: "ada@example.com", Groups: []string{"ml", "eng"}, Issuer: "https://idp.example.com", Kind: audit.KindUser, TokenID: fmt.Sprintf("tok-%08d", i)},
		Grant:    "req_01HZX3K9V7Q2",
		Request:  "req_01HZX3K9V7Q2",
		Decision: "allow",
		Reasons:  []string{"ml-models"},
		Model:    "gpt-4o",
		Endpoint: "/v1/chat/completions",
		Prompt:   "Summarize the incident report for [EMAIL] and list the three root causes with the affected services, then propose follow-up actions ranked by risk. Keep it under 200 words and do not include customer identifiers.",
		Response: "Root causes: 1) expired TLS certificate on the payments gateway; 2) retry storm from the checkout service; 3) missing alert on queue depth. Follow-ups: ...",
		Usage:    &audit.Usage{InputTokens: 412, OutputTokens: 188, TotalTokens: 600},
		Masked:   map[string]int{"EMAIL": 1},
		Status:   200,

		LatencyMS: 842,
		Client:    &audit.Client{RemoteAddr: "127.0.0.1:53122", UserAgent: "OpenAI/Python 1.54.0"},
	}
}

func fdatasync(f *os.File) error { return blockingFlush(f.Fd()) }

// BenchmarkAuditAppendBusy is a durable append under a saturated
// scheduler, as at stream c=32: 32 goroutines (GOMAXPROCS as set by
// -cpu) each do about 150 µs of CPU work in pieces, yielding between
// them, then append. "raw" issues the segment's fdatasync as the flush
// policy does (a raw system call while safe), "usual" as the runtime
// issues blocking calls. It reports appends a second, the append's median
// latency and the process's CPU per append.
func BenchmarkAuditAppendBusy(b *testing.B) {
	for _, mode := range []string{"usual", "raw"} {
		b.Run(mode, func(b *testing.B) {
			db, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			l, err := db.AuditLog(AuditOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			if mode == "usual" {
				l.seg.flush.procs = func() int { return 1 }
			}
			ctx := context.Background()
			var next atomic.Int64
			var failed atomic.Pointer[error]
			lat := make([][]time.Duration, 32)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			cpu := reportCPU(b)
			for w := range lat {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var sink [32]byte
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						for range 8 {
							for range 60 {
								sink = sha256.Sum256(sink[:])
							}
							runtime.Gosched()
						}
						t0 := time.Now()
						if err := l.Append(ctx, benchEvent(int(i))); err != nil {
							failed.Store(&err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu()
			b.StopTimer()
			if p := failed.Load(); p != nil {
				b.Fatal(*p)
			}
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			slices.Sort(all)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-us")
				b.ReportMetric(float64(all[len(all)*9/10].Microseconds()), "p90-us")
			}
		})
	}
}
