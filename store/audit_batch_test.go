package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// OnBatch is told of every event exactly once, in durable mode (sequential
// and concurrent appends sharing commits) and in async mode, and the async
// queue is empty once Close has committed it.
func TestAuditOnBatchCountsEveryEvent(t *testing.T) {
	for _, mode := range []audit.SyncMode{audit.SyncDurable, audit.SyncAsync} {
		var events, batches atomic.Int64
		var maxBatch atomic.Int64
		opts := AuditOptions{Signer: testSigner, Sync: mode, OnBatch: func(n int) {
			events.Add(int64(n))
			batches.Add(1)
			if int64(n) > maxBatch.Load() {
				maxBatch.Store(int64(n))
			}
		}}
		db, l := openAudit(t, t.TempDir(), true, opts)
		appendN(t, l, 5)
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					if err := l.Append(context.Background(), benchEvent(i)); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		closeAudit(t, db, l)
		if got := events.Load(); got != 165 {
			t.Errorf("%v: OnBatch counted %d events, want 165", mode, got)
		}
		if batches.Load() < 1 || batches.Load() > 165 {
			t.Errorf("%v: %d batches", mode, batches.Load())
		}
		if l.QueueDepth() != 0 {
			t.Errorf("%v: queue depth %d after close", mode, l.QueueDepth())
		}
	}
}
