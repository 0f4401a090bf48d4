package link

import (
	"context"
	"testing"
	"time"
)

// The broker drops a revocation from its set once the grant's tokens have
// expired by its clock, and sends the whole set again. A proxy whose clock
// runs behind still takes those tokens (it checks exp by its own clock), so
// it keeps the revocation until its own clock passes the tokens' expiry,
// and forgets it then.
func TestRevocationOutlivesTheBrokersClock(t *testing.T) {
	local := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	now := local
	c, err := NewClient(ClientOptions{BrokerURL: "http://b", IDTokenFile: "x", Spool: &memSpool{}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	until := local.Add(2 * time.Minute) // the grant's tokens expire then
	if err := c.apply(ctx, StreamState{Revoked: map[string]time.Time{"g1": until, "g2": until.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	// The broker, five minutes ahead, has dropped g1 and sends a full set.
	if err := c.apply(ctx, StreamState{Revoked: map[string]time.Time{"g2": until.Add(time.Hour)}, Time: local.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if !c.IsRevoked("g1") {
		t.Fatal("a revoked grant whose tokens this proxy's clock still takes was forgotten")
	}
	now = until.Add(time.Second)
	if err := c.apply(ctx, StreamState{Revoked: map[string]time.Time{"g2": until.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if c.IsRevoked("g1") {
		t.Fatal("a revocation was kept after its tokens expired by this proxy's clock")
	}
	if !c.IsRevoked("g2") {
		t.Fatal("a listed revocation was dropped")
	}
}
