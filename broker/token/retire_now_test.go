package token_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// RetireNow is the emergency rotation: a new active key, and every other
// key withdrawn at once (not published until its tokens expire, as
// Rotate leaves it): tokens it signed are refused at once, here, on a
// replica sharing the store after its Reload, and after a restart. The
// withdrawal is authenticated like the rest of the record (a data-file
// writer cannot undo it), never undone by a merge, and old signatures of
// audit heads still verify (AnyPublicKey).
func TestRetireNowRefusesOldTokensAtOnce(t *testing.T) {
	ctx := context.Background()
	kr, st, sealer, c := setup(t)
	replica, err := token.LoadKeyring(ctx, st, sealer, 8*time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	m := &token.Minter{Keys: kr, Issuer: "http://broker", Now: c.Now}
	verify := func(ks token.KeySet, raw string) error {
		v := &token.Verifier{Keys: ks, Issuer: "http://broker", Audience: token.AudienceProxy, Use: token.UseAccess, Now: c.Now}
		_, err := v.Verify(raw)
		return err
	}
	first := kr.ActiveKID()
	tok1, _ := m.Mint(access(c, time.Hour))
	// An ordinary rotation before: that key is retired and still published.
	if _, err := kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	second := kr.ActiveKID()
	tok2, _ := m.Mint(access(c, time.Hour))
	if err := replica.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := verify(kr, tok1); err != nil {
		t.Fatalf("a rotated key's token refused before its time: %v", err)
	}

	kid, withdrawn, err := kr.RetireNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kid == first || kid == second || kr.ActiveKID() != kid {
		t.Fatalf("new kid %s, active %s", kid, kr.ActiveKID())
	}
	if strings.Join(withdrawn, " ") != strings.Join(sortedPair(first, second), " ") {
		t.Fatalf("withdrawn %v, want %s and %s", withdrawn, first, second)
	}
	fresh, _ := m.Mint(access(c, time.Hour))
	if err := verify(kr, fresh); err != nil {
		t.Fatalf("a fresh token refused: %v", err)
	}
	for name, raw := range map[string]string{"before the earlier rotation": tok1, "before retire-now": tok2} {
		if err := verify(kr, raw); err == nil {
			t.Errorf("a token minted %s still verifies", name)
		}
	}
	if j := kr.JWKS(); len(j.Keys) != 1 || j.Keys[0].Kid != kid {
		t.Fatalf("jwks after retire-now: %+v", j)
	}
	if _, ok := kr.AnyPublicKey(second); !ok {
		t.Fatal("a withdrawn key no longer verifies old audit heads")
	}

	// The replica learns it on Reload (the store's change feed calls it).
	if err := verify(replica, tok2); err != nil {
		t.Fatalf("replica before reload: %v", err)
	}
	if err := replica.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := verify(replica, tok2); err == nil {
		t.Fatal("the replica still takes a withdrawn key's token after reload")
	}
	if err := verify(replica, fresh); err != nil {
		t.Fatalf("replica refuses the new key: %v", err)
	}
	// An ordinary write on the replica (a mark) does not undo it.
	if err := replica.RaiseHighWater(ctx, second, 10, strings.Repeat("a", 64)); err != nil {
		t.Fatal(err)
	}
	if err := kr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := verify(kr, tok2); err == nil {
		t.Fatal("a withdrawal was undone by a merge")
	}

	// A restart keeps it.
	again, err := token.LoadKeyring(ctx, st, sealer, 8*time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(again, tok2); err == nil {
		t.Fatal("a withdrawn key is trusted again after a restart")
	}

	// A data-file writer without the master key cannot undo it.
	rec := st.m[second]
	if rec.WithdrawnAt == nil {
		t.Fatalf("stored record of %s has no withdrawal", second)
	}
	rec.WithdrawnAt = nil
	rec.Auth = bytes.Clone(rec.Auth)
	st.m[second] = rec
	if _, err := token.LoadKeyring(ctx, st, sealer, 8*time.Hour, c.Now); err == nil || !strings.Contains(err.Error(), "authentication tag") {
		t.Fatalf("a stripped withdrawal loaded: %v", err)
	}
}

func sortedPair(a, b string) []string {
	if a > b {
		return []string{b, a}
	}
	return []string{a, b}
}
