package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// Replicas with different master keys racing to open an empty prefix:
// exactly one wins, every other fails with ErrWrongMasterKey, however the
// race goes.
func TestMasterKeyRaceHasOneWinner(t *testing.T) {
	c := etcdtest.Start(t, 1)
	for round := range 5 {
		first := openOn(t, c)
		dbs := []vault.Store{first}
		for range 3 { // the other replicas share the first one's prefix
			dbs = append(dbs, openAt(t, c, first.Prefix()))
		}
		var wg sync.WaitGroup
		errs := make([]error, len(dbs))
		for i, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mk, _ := vault.GenerateMasterKey()
				_, errs[i] = vault.Open(context.Background(), db, mk, nil)
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, vault.ErrWrongMasterKey):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d replicas with different master keys opened the same prefix (%v)", round, won, fmt.Sprint(errs))
		}
	}
}
