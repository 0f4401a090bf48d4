package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// A held call whose grant the store does not know (pruned, forged, or on a
// grant of another deployment) cannot be approved: the review says so, as
// for an ended grant, rather than taking an approval that releases
// nothing. It can be denied.
func TestHeldCallOnAnUnknownGrantCannotBeApproved(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("alice", "ml")
	bob := e.login("bob", "security")
	held, done := holdInBackground(t, e.svc, bob, dropTableHold(alice, "req_00000000000000000000"), 30*time.Second)
	_, err := e.svc.Review(ctx, bob, held.ID, true, "", nil)
	if code(err) != broker.CodeConflict || !strings.Contains(err.Error(), "req_00000000000000000000") || !strings.Contains(err.Error(), "deny") {
		t.Fatalf("approving a held call on an unknown grant: %v; want a conflict naming the grant and saying to deny", err)
	}
	if got := e.eventsOf(audit.TypeRequestApproved); len(got) != 0 {
		t.Fatalf("an approval was recorded: %+v", got)
	}
	if _, err := e.svc.Review(ctx, bob, held.ID, false, "no such grant", nil); err != nil {
		t.Fatalf("denying it: %v", err)
	}
	if got := <-done; got.r == nil || got.r.State != broker.StateDenied {
		t.Fatalf("held call: %v %+v", got.err, got.r)
	}
}
