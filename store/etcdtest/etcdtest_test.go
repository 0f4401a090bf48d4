package etcdtest

import (
	"context"
	"testing"
	"time"
)

func TestThreeMembersAgreeAndSurviveOneStop(t *testing.T) {
	c := Start(t, 3)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/k", "v1"); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	if _, err := cli.Put(ctx, "/k", "v2"); err != nil {
		t.Fatalf("a 3-member cluster must keep quorum with one member down: %v", err)
	}
	c.Restart(0)
	r, err := cli.Get(ctx, "/k")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v2" {
		t.Fatalf("got %v, want v2", r.Kvs)
	}
}
