package store

import (
	"testing"

	"github.com/pamctl/pamctl/store/storetest"
)

func TestCountersSuite(t *testing.T) {
	storetest.CountersSuite(t, storetest.CountersBackend{New: func(t *testing.T) func() storetest.Counters {
		db, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return func() storetest.Counters {
			c, err := db.Counters(CounterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}})
}
