package etcdstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

var prefixes atomic.Int64

// openOn opens a store under a fresh prefix of c, closed when t ends.
func openOn(t testing.TB, c *etcdtest.Cluster) *etcdstore.DB {
	t.Helper()
	db, err := etcdstore.Open(context.Background(), etcdstore.Config{
		Endpoints: c.Endpoints(), Prefix: fmt.Sprintf("/t%d/", prefixes.Add(1)), OpTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestRequests(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Requests(t, func(t *testing.T) broker.Store { return openOn(t, c) })
}
