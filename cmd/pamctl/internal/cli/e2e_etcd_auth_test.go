package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// A replica on etcd authenticates every event it writes (the key comes
// from the master key), refuses to sign a head over an event a writer of
// the etcd prefix chained after the tail while it runs (reported on
// /readyz), and a replica started on that trail refuses to start, saying
// what happened and what to do.
func TestEtcdReplicaRefusesAForgedEvent(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := startServerWith(t, func(cfg *Config) {
		onEtcd(c)(cfg)
		cfg.Audit.HeadInterval = 100 * time.Millisecond
	})
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	ctx := context.Background()
	cli := c.Client()
	prefix := s.app.cfg.Store.Etcd.Prefix
	resp, err := cli.Get(ctx, prefix+"audit/events/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("events in etcd: %d, %v", len(resp.Kvs), err)
	}
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Value), `{"v":2,"d":`) || !strings.Contains(string(kv.Value), `,"a":"`) {
			t.Fatalf("%s carries no authenticator: %.80s…", kv.Key, kv.Value)
		}
	}

	forgeEtcdAfterTail(t, cli, prefix)
	eventually(t, "/readyz failing the audit check", 30*time.Second, func() bool {
		code, body := etcdReadyz(t, s)
		return code == 503 && strings.Contains(body, "audit: failing")
	})
	s.stop()

	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.MasterKeyFile = s.app.cfg.MasterKeyFile
	cfg.Policies = e2ePolicies
	onEtcd(c)(cfg)
	app, err := NewApp(ctx, cfg, AppOptions{})
	if err == nil {
		app.Close()
		t.Fatal("a replica started on a trail with a forged event after the tail")
	}
	if !errors.Is(err, store.ErrUnauthenticated) || !strings.Contains(err.Error(), "pamctl audit verify") || !strings.Contains(err.Error(), "restore etcd") {
		t.Fatalf("start = %v", err)
	}
}

// forgeEtcdAfterTail chains an event after the tail of the trail under
// prefix and moves the tip to it, as a writer of etcd without the master
// key can.
func forgeEtcdAfterTail(t *testing.T, cli *clientv3.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	resp, err := cli.Get(ctx, prefix+"audit/tip")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("tip: %v", err)
	}
	var tip audit.Link
	if err := json.Unmarshal(resp.Kvs[0].Value, &tip); err != nil {
		t.Fatal(err)
	}
	d, err := audit.NewDraft(&audit.Event{Type: audit.TypeRequestApproved, Actor: &audit.Actor{Subject: "ciso", Kind: audit.KindUser}, Decision: "approved"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seq := tip.Seq + 1
	line, hash, err := d.Seal(seq, tip.Hash)
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := json.Marshal(audit.Link{Seq: seq, Hash: hash})
	_, err = cli.Txn(ctx).Then(
		clientv3.OpPut(fmt.Sprintf("%saudit/events/%020d", prefix, seq), `{"v":1,"d":`+string(line)+`}`),
		clientv3.OpPut(prefix+"audit/tip", string(tb)),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
}
