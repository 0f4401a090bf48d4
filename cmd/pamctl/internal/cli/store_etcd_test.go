package cli

import (
	"encoding/json"
	"strings"
	"testing"

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
}
