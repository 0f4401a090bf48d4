package store

import (
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store/storetest"
)

// The storetest suites against bbolt; store/etcdstore runs the same ones
// against etcd.

func TestSessionsConformance(t *testing.T) {
	storetest.Sessions(t, func(t *testing.T) broker.SessionStore { return openTest(t, t.TempDir()) })
}

func TestKeysConformance(t *testing.T) {
	storetest.Keys(t, func(t *testing.T) storetest.KeyData { return openTest(t, t.TempDir()) }, ErrKeysMissing)
}

func TestVaultConformance(t *testing.T) {
	storetest.Vault(t, func(t *testing.T) vault.Store { return openTest(t, t.TempDir()) })
}

func TestEnrollmentsConformance(t *testing.T) {
	storetest.Enrollments(t, func(t *testing.T) link.Store { return openTest(t, t.TempDir()) })
}

func TestSinkCursorsConformance(t *testing.T) {
	storetest.SinkCursors(t, func(t *testing.T) auditsink.CursorStore { return openTest(t, t.TempDir()) })
}
