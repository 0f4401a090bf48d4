package proxy

import (
	"context"
	"testing"

	"github.com/pamctl/pamctl/broker/token"
)

// A verified token is cached, but not past the trust in its signing key:
// once the broker withdraws the key (keys rotate --retire-now) the next
// use of the token goes back to the verifier and is refused, and a token
// of the new key is taken.
func TestVerifyCacheDropsTokensOfAWithdrawnKey(t *testing.T) {
	h := newHarness(t)
	v := &token.Verifier{Keys: h.keyring, Audience: token.AudienceProxy, Use: token.UseAccess, Now: h.clock.Now}
	cache := newVerifyCache(v, h.clock.Now, 8)
	old := h.mint(grant{scope: "model:gpt-4o"})
	if _, _, err := cache.verify(old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.keyring.RetireNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cache.verify(old); err == nil {
		t.Fatal("a cached token of a withdrawn key was taken")
	}
	if _, _, err := cache.verify(h.mint(grant{scope: "model:gpt-4o"})); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
}
