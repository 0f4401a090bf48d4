package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
)

// BenchmarkRequestLookups measures what the broker's hot paths read, with
// 100 and 100,000 past (denied) requests of the same agent in the store
// beside a fixed live set (10 pending requests, 10 grants, 5 approved held
// calls):
//
//	sweep        DueRequests(now) + RequestsInState(approved): Service.Sweep's reads
//	held-lookup  RequestsInState(approved, agent): the held-call retry lookup,
//	             CanReadAudit and `pamctl token` without an id
//	full-scan    decoding the whole bucket, what every one of them did before
//	             the indexes (ListRequests)
//
// go test ./store/ -run '^$' -bench BenchmarkRequestLookups -count 5
func BenchmarkRequestLookups(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	agent := broker.Identity{Subject: "agent", Issuer: "corp"}
	for _, past := range []int{100, 100_000} {
		db, err := Open(b.TempDir(), Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		db.SetRecordKey(testRecKey)
		seedEnded(b, db, past, now.Add(-24*time.Hour))
		for i := range 25 {
			r := &broker.Request{ID: fmt.Sprintf("req_live_%02d", i), Kind: broker.KindAccess, Requester: agent, Scopes: []string{"model:gpt-4o"},
				State: broker.StatePending, CreatedAt: now, PendingUntil: now.Add(time.Hour)}
			if i >= 10 {
				exp := now.Add(time.Duration(i) * time.Minute)
				r.State, r.ApprovedAt, r.ExpiresAt = broker.StateApproved, &now, &exp
			}
			if i >= 20 {
				r.Kind, r.Prompt = broker.KindPrompt, &broker.PromptHold{Rule: "destructive-sql", SHA256: fmt.Sprint(i)}
			}
			if err := db.CreateRequest(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("sweep/past=%d", past), func(b *testing.B) {
			for b.Loop() {
				due, err := db.DueRequests(ctx, now)
				if err != nil || len(due) != 0 {
					b.Fatal(len(due), err)
				}
				live, err := db.RequestsInState(ctx, broker.StateApproved, nil)
				if err != nil || len(live) != 15 {
					b.Fatal(len(live), err)
				}
			}
		})
		b.Run(fmt.Sprintf("held-lookup/past=%d", past), func(b *testing.B) {
			for b.Loop() {
				rs, err := db.RequestsInState(ctx, broker.StateApproved, &agent)
				if err != nil || len(rs) != 15 {
					b.Fatal(len(rs), err)
				}
			}
		})
		b.Run(fmt.Sprintf("full-scan/past=%d", past), func(b *testing.B) {
			for b.Loop() {
				n := 0
				err := db.bolt.View(func(tx *bolt.Tx) error {
					return each(tx, bucketRequests, func(r *broker.Request) bool {
						if r.State == broker.StateApproved && r.Requester.Same(agent) {
							n++
						}
						return true
					})
				})
				if err != nil || n != 15 {
					b.Fatal(n, err)
				}
			}
		})
		db.Close()
	}
}
