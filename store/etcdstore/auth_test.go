package etcdstore_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// With etcd authentication on, a user whose role reads and writes only the
// prefix (docs/deployment.md) is all pamctl needs: open, records, the
// change feed and the probe all stay inside it. A wrong password fails
// Open with an error that names no password.
func TestAuthUserLimitedToThePrefix(t *testing.T) {
	c := etcdtest.Start(t, 1)
	admin := c.Client()
	// etcdtest's members hash passwords at bcrypt's lowest cost: at etcd's
	// default each Authenticate (three here: the wrong password, Open, and
	// the watch stream, which clientv3 authenticates again) took seconds
	// under -race on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.UserAdd(ctx, "root", "root-pw"))
	must(admin.UserGrantRole(ctx, "root", "root"))
	must(admin.RoleAdd(ctx, "pamctl"))
	must(admin.RoleGrantPermission(ctx, "pamctl", "/pamctl/", clientv3.GetPrefixRangeEnd("/pamctl/"), clientv3.PermissionType(clientv3.PermReadWrite)))
	must(admin.UserAdd(ctx, "pamctl", "pamctl-pw"))
	must(admin.UserGrantRole(ctx, "pamctl", "pamctl"))
	must(admin.AuthEnable(ctx))

	if _, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: c.Endpoints(), Username: "pamctl", Password: "wrong-pw"}); err == nil {
		t.Fatal("opened with a wrong password")
	} else if strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("the error shows the password: %v", err)
	} else if !errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, etcdstore.ErrUnavailable) || !strings.Contains(err.Error(), `user "pamctl"`) {
		t.Fatalf("a refused password is not told apart from an unavailable cluster, or the user is not named: %v", err)
	}
	db, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: c.Endpoints(), Username: "pamctl", Password: "pamctl-pw"})
	if err != nil {
		t.Fatal(err)
	}
	db.SetRecordKey(testRecKey)
	defer db.Close()
	feed, stop := context.WithCancel(ctx)
	defer stop()
	changes := make(chan broker.Change, 10)
	go db.Watch(feed, func(ch broker.Change) { changes <- ch })
	select {
	case ch := <-changes:
		if ch.Kind != broker.ChangeAll {
			t.Fatalf("first change %+v", ch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not start")
	}
	if err := db.CreateSession(ctx, &broker.SessionRecord{ID: "ses_1", State: "active"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ch := <-changes:
		if ch.Kind != broker.ChangeSession || ch.ID != "ses_1" {
			t.Fatalf("change %+v", ch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch inside the prefix saw nothing")
	}
	if err := db.Probe(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Keys reads the whole prefix to tell a new store from one that lost
	// its keys: allowed, and it finds the session.
	if _, err := db.Keys(ctx); !errors.Is(err, store.ErrKeysMissing) {
		t.Fatalf("keys over a prefix with a session and no key: %v", err)
	}
	// The user cannot reach outside the prefix: the role is what the
	// deployment docs say to create.
	if _, err := db.Client().Put(ctx, "/other/x", "y"); err == nil {
		t.Fatal("the pamctl user wrote outside its prefix")
	}
}

// With credentials the client authenticates while Open connects, so a
// cluster it cannot reach fails there: as without credentials, the error
// matches ErrUnavailable and says what to check, within DialTimeout.
func TestOpenWithCredentialsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	start := time.Now()
	_, err = etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{"http://" + addr},
		Username: "pamctl", Password: "pamctl-pw", DialTimeout: time.Second})
	if err == nil {
		t.Fatal("opened an unreachable cluster")
	}
	if !errors.Is(err, etcdstore.ErrUnavailable) || !strings.Contains(err.Error(), "quorum") || strings.Contains(err.Error(), "pamctl-pw") {
		t.Fatalf("error: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("took %s to give up", d)
	}
}
