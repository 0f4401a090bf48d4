package store

import (
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store/storetest"
)

func TestAuditSuite(t *testing.T) {
	storetest.Audit(t, storetest.AuditBackend{New: func(t *testing.T) func(storetest.AuditOptions) audit.Log {
		db, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return func(o storetest.AuditOptions) audit.Log {
			l, err := db.AuditLog(AuditOptions{Signer: o.Signer, Clock: o.Clock})
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}})
}
