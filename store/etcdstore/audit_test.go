package etcdstore

import (
	"context"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

func TestAuditSuite(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client()
	n := 0
	storetest.Audit(t, storetest.AuditBackend{Replicas: true, New: func(t *testing.T) func(storetest.AuditOptions) audit.Log {
		n++
		prefix := "/suite" + string(rune('a'+n%26)) + t.Name() + "/"
		return func(o storetest.AuditOptions) audit.Log {
			l, err := OpenAuditLog(context.Background(), cli, prefix, AuditOptions{Signer: o.Signer, Clock: o.Clock})
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}})
}
