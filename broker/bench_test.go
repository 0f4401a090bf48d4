package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store"
)

// BenchmarkHotPaths runs the expiry sweep and the audit-read check (the
// same indexed lookup as the held-call retry and `pamctl token` without an
// id: the caller's approved requests) with 100 and 100,000 past requests
// of the caller in the store, beside a few live ones.
//
// go test ./broker/ -run '^$' -bench BenchmarkHotPaths -benchmem
func BenchmarkHotPaths(b *testing.B) {
	ctx := context.Background()
	for _, past := range []int{100, 100_000} {
		e := newEnv(b)
		e.storeOpts = store.Options{NoSync: true}
		e.restart()
		alice := e.login("alice", "ml")
		now := e.clock.Now().UTC()
		ended := now.Add(-time.Hour)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range 64 { // concurrent creates share Batch commits
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < past; i += 64 {
					r := &broker.Request{ID: fmt.Sprintf("req_past_%07d", i), Kind: broker.KindAccess, Requester: alice, Scopes: []string{"model:gpt-4o"},
						State: broker.StateDenied, CreatedAt: ended, PendingUntil: ended, EndedAt: &ended}
					if err := e.db.CreateRequest(ctx, r); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		for range 5 {
			if _, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}}); err != nil {
				b.Fatal(err)
			}
			if _, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("sweep/past=%d", past), func(b *testing.B) {
			for b.Loop() {
				if err := e.svc.Sweep(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("grant-lookup/past=%d", past), func(b *testing.B) {
			for b.Loop() {
				if err := e.svc.CanReadAudit(ctx, alice); broker.ErrorCode(err) != broker.CodeForbidden {
					b.Fatal(err)
				}
			}
		})
		e.close()
	}
}
