package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// verifyBreak runs `audit verify -o json` as user and checks that it
// fails at seq as an event (or authenticator) this deployment did not
// write, in words that say so and name the store.
func verifyBreak(t *testing.T, s *testServer, user string, seq uint64, store string) {
	t.Helper()
	r := s.as(t, user, "", "audit", "verify", "-o", "json")
	var vr verifyOutput
	if err := json.Unmarshal([]byte(r.out), &vr); err != nil {
		t.Fatalf("%s: verify -o json: %v\n%s%s", user, err, r.out, r.err)
	}
	if r.code != ExitError || vr.OK || vr.Break == nil || vr.Break.Seq != seq || vr.Break.Kind != audit.BreakUnauthenticated {
		t.Fatalf("%s: verify of a forged trail: exit %d, want a break at seq %d (%s)\n%s%s", user, r.code, seq, audit.BreakUnauthenticated, r.out, r.err)
	}
	for _, w := range []string{"not written by this deployment", "without the master key", store} {
		if !strings.Contains(vr.Error, w) || !strings.Contains(r.err, w) {
			t.Fatalf("%s: verify does not say %q:\n%s%s", user, w, r.out, r.err)
		}
	}
}

// An event a writer of the etcd prefix chained after the tail while a
// replica runs fails `audit verify` through the replica (a person's
// session and the admin socket), not only offline, and offline the same
// way. Before, the server reported it as one unsigned event and exited 0.
func TestAuditVerifyThroughAReplicaOnEtcdFailsOnAForgedEvent(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := startServerWith(t, onEtcd(c))
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	prefix := s.app.cfg.Store.Etcd.Prefix
	ok := s.as(t, "bob", "", "audit", "verify").must(t, "verify before the forgery")
	if !strings.Contains(ok.err, "the etcd cluster's data under "+prefix+" was not rolled back") || strings.Contains(ok.err, "pamctl.db") {
		t.Fatalf("verify on etcd does not name the store it read:\n%s", ok.err)
	}

	forgeEtcdAfterTail(t, c.Client(), prefix)
	resp, err := c.Client().Get(context.Background(), prefix+"audit/tip")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("tip: %v", err)
	}
	var tip audit.Link
	if err := json.Unmarshal(resp.Kvs[0].Value, &tip); err != nil {
		t.Fatal(err)
	}
	where := "etcd under " + prefix
	verifyBreak(t, s, "bob", tip.Seq, where)   // the broker API, with a session
	verifyBreak(t, s, "admin", tip.Seq, where) // the admin socket
	// The replica's own events after it do not hide it.
	s.as(t, "bob", "", "audit", "tail", "-n", "1").must(t, "audit tail")
	verifyBreak(t, s, "bob", tip.Seq, where)

	s.stop()
	t.Setenv("PAMCTL_SERVER", "")
	t.Setenv("PAMCTL_STORE_BACKEND", "etcd")
	t.Setenv("PAMCTL_STORE_ETCD_ENDPOINTS", strings.Join(c.Endpoints(), ","))
	verifyBreak(t, s, "admin", tip.Seq, where) // offline: the trail in etcd
}

// On bbolt a writer of pamctl.db who changes the authenticator of an
// event under the signed head (copying another event's) leaves a trail
// the server starts on; `audit verify` through the server fails at it,
// as offline verify does. A pamctl.db trail's verify names pamctl.db.
func TestAuditVerifyThroughAServerFailsOnAChangedAuthenticator(t *testing.T) {
	s, _ := trailServer(t)
	ok := s.as(t, "admin", "", "audit", "verify").must(t, "verify before the change")
	if !strings.Contains(ok.err, "that pamctl.db was not rolled back") {
		t.Fatalf("verify on bbolt does not name pamctl.db:\n%s", ok.err)
	}
	s.stop()
	tamperDB(t, s, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit_auth"))
		return b.Put(u64key(2), append([]byte(nil), b.Get(u64key(3))...))
	})
	s = restartWith(t, s)
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	verifyBreak(t, s, "bob", 2, "pamctl.db")
	verifyBreak(t, s, "admin", 2, "pamctl.db")
	s.stop()
	t.Setenv("PAMCTL_SERVER", "")
	verifyBreak(t, s, "admin", 2, "pamctl.db") // offline: the data dir
}

func u64key(n uint64) []byte {
	return []byte{byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}
