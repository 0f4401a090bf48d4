package etcdstore

import (
	"bytes"

	"github.com/pamctl/pamctl/store"
)

// testRecKey is the record key of the tests' stores (a server derives it
// from the master key).
var testRecKey = func() *store.RecordKey {
	rk, err := store.NewRecordKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return rk
}()

// TestRecKey is testRecKey for the external tests.
var TestRecKey = testRecKey
