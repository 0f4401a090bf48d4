package cli

import (
	"context"
	"slices"
	"testing"

	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
)

// TestVaultListsKeysToProxy: the proxy learns every vaulted key's value,
// so it scrubs all of them from what it relays.
func TestVaultListsKeysToProxy(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	mk, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]string{"openai": "sk-test-listed-one-0123456789", "azure": "3f9c2b7e1d4a4c8e9b0f6a5d2e7c1b94"} {
		if _, err := v.Set(ctx, name, vault.NewSecret(key)); err != nil {
			t.Fatal(err)
		}
	}
	for _, ks := range []interface {
		ProviderKeyValues(context.Context) ([]string, error)
	}{vaultKeys{v}, devKeys{vaultKeys{v}}} {
		got, err := ks.ProviderKeyValues(ctx)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []string{"3f9c2b7e1d4a4c8e9b0f6a5d2e7c1b94", "sk-test-listed-one-0123456789"}) {
			t.Errorf("%T: %v %v", ks, got, err)
		}
	}
}
