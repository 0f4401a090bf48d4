package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
)

// Stored says whether the store holds a request, for anyone (the web UI's
// event stream asks it about held calls it may not see); it reveals only
// existence.
func TestStored(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice", "ml")
	ctx := context.Background()
	r, err := e.svc.CreateRequest(ctx, alice, broker.Ask{Scopes: []string{"model:gpt-4o"}, TTL: 30 * time.Minute, Reason: "eval"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := e.svc.Stored(ctx, r.ID); !ok || err != nil {
		t.Fatalf("a stored request: %v %v", ok, err)
	}
	if ok, err := e.svc.Stored(ctx, "req_nothere"); ok || err != nil {
		t.Fatalf("a request never stored: %v %v", ok, err)
	}
}
