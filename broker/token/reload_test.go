package token_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// Two keyrings over one store (two replicas): a rotation on one reaches
// the other by Reload; an authentic but stale record (written by a
// replica that had not seen the retirement) does not make the retired key
// active again; a record edited without the master key fails the reload
// and leaves the ring as it was.
func TestReloadFollowsAnotherRing(t *testing.T) {
	ctx := context.Background()
	a, st, sealer, c := setup(t)
	b, err := token.LoadKeyring(ctx, st, sealer, 8*time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	old := a.ActiveKID()
	if b.ActiveKID() != old {
		t.Fatalf("replicas start on different keys: %s %s", old, b.ActiveKID())
	}
	before, _ := st.Keys(ctx) // the old key's record, not yet retired
	c.t = c.t.Add(time.Minute)
	next, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.PublicKey(next); ok {
		t.Fatal("b knows the new key before reloading")
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if b.ActiveKID() != next {
		t.Fatalf("b signs with %s after reload, want %s", b.ActiveKID(), next)
	}
	if _, ok := b.PublicKey(old); !ok {
		t.Fatal("b unpublished the retired key before its tokens expired")
	}

	if err := st.SaveKey(ctx, before[0]); err != nil { // a stale write
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if b.ActiveKID() != next {
		t.Fatalf("a stale record made %s active again", b.ActiveKID())
	}
	c.t = c.t.Add(9 * time.Hour) // past every token the old key signed
	if _, ok := b.PublicKey(old); ok {
		t.Fatal("a stale record undid the old key's retirement: it is still published")
	}

	edited := before[0]
	edited.Created = edited.Created.Add(time.Hour) // without the master key
	if err := st.SaveKey(ctx, edited); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); !errors.Is(err, token.ErrTampered) {
		t.Fatalf("reload over an edited record: %v", err)
	}
	if b.ActiveKID() != next {
		t.Fatalf("a refused reload changed the active key to %s", b.ActiveKID())
	}
	if _, ok := b.PublicKey(next); !ok {
		t.Fatal("a refused reload dropped the new key")
	}
}

// Two rings that each rotated at once agree on one active key after
// reloading: the newest.
func TestReloadConvergesOnTheNewestKey(t *testing.T) {
	ctx := context.Background()
	a, st, sealer, c := setup(t)
	b, err := token.LoadKeyring(ctx, st, sealer, 8*time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Minute)
	ka, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Second)
	kb, err := b.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if a.ActiveKID() != kb || b.ActiveKID() != kb {
		t.Fatalf("active keys %s and %s, want both on the newest %s (a rotated to %s)", a.ActiveKID(), b.ActiveKID(), kb, ka)
	}
	if _, ok := b.PublicKey(ka); !ok {
		t.Fatal("the other replica's key is not published")
	}
}
