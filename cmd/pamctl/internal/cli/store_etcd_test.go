package cli

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// store migrate refuses a data dir a server holds, copies a stopped one
// into etcd and verifies the copy, refuses a second run into the same
// prefix unless --replace; store status shows the cluster and the head.
func TestStoreMigrateAndStatus(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	s := startServer(t)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	for range 3 {
		s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--reason", "migrate test", "--nowait").must(t, "request")
	}
	dataDir, mkFile := s.app.cfg.DataDir, s.app.cfg.MasterKeyFile
	cfgYAML := "data_dir: " + dataDir + "\nmaster_key_file: " + mkFile + "\nstore:\n  etcd:\n    endpoints: [" + cluster.Endpoints()[0] + "]\n    prefix: /migrated/\n"
	file := writeConfig(t, cfgYAML)
	t.Setenv("PAMCTL_SERVER", "")

	if r := runCLI(t, "--config", file, "store", "migrate", "--to", "etcd"); r.code != ExitConflict || !strings.Contains(r.err, "a server is running") {
		t.Fatalf("migrate while serving: code %d %s", r.code, r.err)
	}
	s.stop()
	r := runCLI(t, "--config", file, "store", "migrate", "--to", "etcd", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("migrate: code %d %s", r.code, r.err)
	}
	var res migrateResult
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("%v: %s", err, r.out)
	}
	if res.Copied.Events == 0 || res.Copied.Requests != 3 || res.Copied.Keys == 0 || !res.Verified.Signed || res.Verified.Last != res.Copied.Last.Seq {
		t.Fatalf("migrate result %+v", res)
	}
	if r := runCLI(t, "--config", file, "store", "migrate", "--to", "etcd"); r.code != ExitConflict || !strings.Contains(r.err, "--replace") {
		t.Fatalf("second migrate: code %d %s", r.code, r.err)
	}
	if r := runCLI(t, "--config", file, "store", "migrate", "--to", "etcd", "--replace"); r.code != ExitOK {
		t.Fatalf("migrate --replace: code %d %s", r.code, r.err)
	}
	if r := runCLI(t, "--config", file, "store", "migrate", "--to", "bbolt"); r.code != ExitUsage {
		t.Fatalf("--to bbolt: code %d %s", r.code, r.err)
	}
	// An event a writer of the data dir chained after the tail, without
	// keys, is not carried into etcd, where the log would sign over it
	// (found by a review).
	forgeAfterTail(t, filepath.Join(dataDir, store.FileName))
	if r := runCLI(t, "--config", file, "store", "migrate", "--to", "etcd", "--replace"); r.code == ExitOK || !strings.Contains(r.err, "not written by this deployment") {
		t.Fatalf("migrate of a forged trail: code %d %s", r.code, r.err)
	}

	etcdFile := writeConfig(t, cfgYAML+"  backend: etcd\n")
	r = runCLI(t, "--config", etcdFile, "store", "status", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("status: code %d %s", r.code, r.err)
	}
	var st storeStatus
	if err := json.Unmarshal([]byte(r.out), &st); err != nil {
		t.Fatalf("%v: %s", err, r.out)
	}
	if st.Backend != "etcd" || st.Etcd == nil || len(st.Etcd.Members) != 1 || st.Etcd.Leader == "" || st.Etcd.DBSize == 0 ||
		st.Audit == nil || st.Audit.Last.Seq != res.Copied.Last.Seq || st.Audit.Head == nil {
		t.Fatalf("status %+v", st)
	}
	r = runCLI(t, "--config", file, "store", "status")
	if r.code != ExitOK || !strings.Contains(r.out, "bbolt") || !strings.Contains(r.out, "signed head") {
		t.Fatalf("bbolt status: code %d\n%s%s", r.code, r.out, r.err)
	}
	// With no replica serving, audit verify reads the trail in etcd.
	r = runCLI(t, "--config", etcdFile, "audit", "verify")
	if r.code != ExitOK || !strings.Contains(r.out+r.err, "audit trail intact") {
		t.Fatalf("audit verify on etcd: code %d\n%s%s", r.code, r.out, r.err)
	}
	// The copy's check refuses an event past the last signed head in etcd
	// that the deployment did not write, as the replicas would, and so
	// does audit verify, saying what it is.
	forgeEtcdAfterTail(t, cluster.Client(), "/migrated/")
	r = runCLI(t, "--config", etcdFile, "audit", "verify", "-o", "json")
	var vr verifyOutput
	if err := json.Unmarshal([]byte(r.out), &vr); err != nil {
		t.Fatalf("%v: %s", err, r.out)
	}
	if r.code != ExitError || vr.OK || !strings.Contains(vr.Error, "not written by this deployment") || vr.Break == nil || vr.Break.Kind != audit.BreakUnauthenticated || vr.Break.Seq != res.Copied.Last.Seq+1 {
		t.Fatalf("audit verify of a forged trail on etcd: code %d %+v\n%s", r.code, vr, r.err)
	}
	db, err := etcdstore.Open(t.Context(), etcdstore.Config{Endpoints: cluster.Endpoints(), Prefix: "/migrated/"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mk, err := vault.LoadMasterKey("", mkFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyEtcd(t.Context(), db, mk); !errors.Is(err, store.ErrUnauthenticated) {
		t.Fatalf("verify of a forged copy: %v", err)
	}
}

// forgeAfterTail chains an event after the last one of the bbolt file at
// path, as a writer of the file without any key can.
func forgeAfterTail(t *testing.T, path string) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("audit"))
		k, v := bk.Cursor().Last()
		seq := binary.BigEndian.Uint64(k)
		line := v[len(`{"v":1,"d":`) : len(v)-1]
		d, err := audit.NewDraft(&audit.Event{Type: audit.TypeRequestApproved, Actor: &audit.Actor{Subject: "ciso", Kind: audit.KindUser}, Decision: "approved"}, time.Now())
		if err != nil {
			return err
		}
		nl, _, err := d.Seal(seq+1, audit.StoredHash(line))
		if err != nil {
			return err
		}
		return bk.Put(binary.BigEndian.AppendUint64(nil, seq+1), append(append([]byte(`{"v":1,"d":`), nl...), '}'))
	})
	if err != nil {
		t.Fatal(err)
	}
}
