package etcdstore

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
)

// etcd's tamper errors are store.ErrTampered too (a server keeps the
// trail unready on them, whichever backend reported it).
func TestTamperErrorsAreErrTampered(t *testing.T) {
	be := &audit.BreakError{Seq: 7, Expected: "a", Found: "b"}
	l := &AuditLog{prefix: "/pamctl/"}
	for _, err := range []error{
		ErrHeadMissing, ErrBelowHighWater,
		l.headMissing(audit.Link{Seq: 3}),
		fmt.Errorf("signing: %w", &highWaterError{be: be}),
		fmt.Errorf("etcdstore: audit: refusing to sign a new head: %w (%w)", be, ErrBelowHighWater),
	} {
		if !errors.Is(err, store.ErrTampered) {
			t.Errorf("%v: not store.ErrTampered", err)
		}
	}
	if errors.Is(errors.New("etcdserver: request timed out"), store.ErrTampered) || errors.Is(be, store.ErrTampered) {
		t.Error("an etcd timeout or a bare break is not tampering")
	}
}
