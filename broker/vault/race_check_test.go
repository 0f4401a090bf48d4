package vault_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pamctl/pamctl/broker/vault"
)

// lateCheck is a shared store where another replica stored its master
// check between this replica's read (which saw none) and its write.
type lateCheck struct {
	*memStore
	reads int
}

func (s *lateCheck) MasterCheck(ctx context.Context) ([]byte, error) {
	s.reads++
	if s.reads == 1 {
		return nil, nil
	}
	return s.memStore.MasterCheck(ctx)
}

func TestOpenLosingTheMasterCheckRaceChecksTheWinner(t *testing.T) {
	ctx := context.Background()
	mem := newMem()
	first, _ := vault.GenerateMasterKey()
	if _, err := vault.Open(ctx, mem, first, nil); err != nil {
		t.Fatal(err)
	}
	other, _ := vault.GenerateMasterKey()
	if _, err := vault.Open(ctx, &lateCheck{memStore: mem}, other, nil); !errors.Is(err, vault.ErrWrongMasterKey) {
		t.Fatalf("a replica with another master key that lost the race opened: %v", err)
	}
	if _, err := vault.Open(ctx, &lateCheck{memStore: mem}, first, nil); err != nil {
		t.Fatalf("the same key after a lost race: %v", err)
	}
}
