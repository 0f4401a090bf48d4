package vault_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pamctl/pamctl/broker/vault"
)

// slowStore holds one GetEntry at the store read until released, so a Set
// or Remove can complete in between.
type slowStore struct {
	*memStore
	reading chan vault.Entry // the entry the held read saw
	release chan struct{}
}

func (s *slowStore) GetEntry(ctx context.Context, n string) (vault.Entry, error) {
	e, err := s.memStore.GetEntry(ctx, n)
	if s.reading != nil {
		s.reading <- e
		<-s.release
	}
	return e, err
}

// A Get that read the store before a Remove or Set finished must not put
// what it read back into the cache: the proxy would go on using a removed
// or replaced provider key until restart.
func TestConcurrentGetDoesNotResurrectOldKeys(t *testing.T) {
	ctx := context.Background()
	for _, change := range []string{"remove", "set"} {
		t.Run(change, func(t *testing.T) {
			st := &slowStore{memStore: newMem()}
			mk, _ := vault.GenerateMasterKey()
			v, err := vault.Open(ctx, st, mk, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Set(ctx, "openai", vault.NewSecret("sk-test-old-0123456789")); err != nil {
				t.Fatal(err)
			}
			// Empty the cache the way a restart does: a fresh vault.
			if v, err = vault.Open(ctx, st, mk, nil); err != nil {
				t.Fatal(err)
			}
			st.reading, st.release = make(chan vault.Entry), make(chan struct{})
			done := make(chan error, 1)
			go func() { _, err := v.Get(ctx, "openai"); done <- err }()
			<-st.reading // the Get has read the old entry from the store
			st.reading = nil
			switch change {
			case "remove":
				err = v.Remove(ctx, "openai")
			case "set":
				_, err = v.Set(ctx, "openai", vault.NewSecret("sk-test-new-0123456789"))
			}
			if err != nil {
				t.Fatal(err)
			}
			close(st.release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s, err := v.Get(ctx, "openai")
			switch change {
			case "remove":
				if !errors.Is(err, vault.ErrNotFound) {
					t.Fatalf("removed key still served: %v", err)
				}
			case "set":
				if err != nil || s.Reveal() != "sk-test-new-0123456789" {
					t.Fatalf("replaced key still served (err %v)", err)
				}
			}
		})
	}
}
