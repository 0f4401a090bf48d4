package store

import (
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
)

// BenchmarkRecordCodec is the cost of the authenticator on one record of
// typical size (a reviewed grant): encode and decode without it (as
// before) and with it.
//
// go test ./store/ -run '^$' -bench BenchmarkRecordCodec -count 5
func BenchmarkRecordCodec(b *testing.B) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	exp := t0.Add(time.Hour)
	who := broker.Identity{Subject: "agent", Issuer: "corp", Groups: []string{"ml"}}
	r := &broker.Request{ID: "req_0123456789abcdef", Kind: broker.KindAccess, Requester: who, Scopes: []string{"model:gpt-4o", "model:gpt-4o-mini"},
		TTL: time.Hour, State: broker.StateApproved, CreatedAt: t0, PendingUntil: t0, ApprovedAt: &t0, ExpiresAt: &exp, Reason: "nightly eval run",
		Reviews: []broker.Review{{Reviewer: broker.Identity{Subject: "bob", Issuer: "corp", Groups: []string{"security"}}, At: t0}}}
	name := RecordName(KindRequests, r.ID)
	plain, _ := encode(r)
	sealed, _ := testRecKey.Encode(name, r)
	b.Logf("record: %d bytes plain, %d sealed", len(plain), len(sealed))
	b.Run("encode/plain", func(b *testing.B) {
		for b.Loop() {
			if _, err := encode(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/sealed", func(b *testing.B) {
		for b.Loop() {
			if _, err := testRecKey.Encode(name, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/plain", func(b *testing.B) {
		for b.Loop() {
			var v broker.Request
			if err := decode(plain, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/sealed", func(b *testing.B) {
		for b.Loop() {
			var v broker.Request
			if err := testRecKey.Decode(name, sealed, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
