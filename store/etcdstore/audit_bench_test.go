package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

// BenchmarkAuditAppend measures durable appends (committed by a quorum of a
// 3-member cluster) per second with 1, 8 and 64 concurrent writers on one
// replica, and 64 writers split over two replicas, each event carrying its
// authenticator and each head (every 1000 events) checking those past the
// last one, as a server's do.
//
//	go test ./store/etcdstore -run '^$' -bench AuditAppend -benchtime 20000x
func BenchmarkAuditAppend(b *testing.B) {
	cluster := etcdtest.Start(b, 3)
	cli := cluster.Client()
	for _, bc := range []struct{ writers, replicas int }{{1, 1}, {8, 1}, {64, 1}, {64, 2}} {
		b.Run(fmt.Sprintf("writers=%d/replicas=%d", bc.writers, bc.replicas), func(b *testing.B) {
			prefix := fmt.Sprintf("/bench-%s/", b.Name())
			logs := make([]*AuditLog, bc.replicas)
			for i := range logs {
				l, err := OpenAuditLog(context.Background(), cli, prefix, AuditOptions{Signer: storetest.SuiteSigner, RecordKey: testRecordKey})
				if err != nil {
					b.Fatal(err)
				}
				logs[i] = l
				defer l.Close()
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := 0; w < bc.writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := logs[w%len(logs)]
					for next.Add(1) <= int64(b.N) {
						e := &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "agent"}, Model: "gpt-4o", Status: 200,
							Usage: &audit.Usage{InputTokens: 12, OutputTokens: 40, TotalTokens: 52}}
						if err := l.Append(context.Background(), e); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
