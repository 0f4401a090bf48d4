package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/store"
)

// restartApp starts a server on s's data dir again, as `pamctl serve` would.
func restartApp(t *testing.T, s *testServer) error {
	t.Helper()
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(s.dir, "data")
	cfg.MasterKeyFile = filepath.Join(s.dir, "master.key")
	cfg.Policies = e2ePolicies
	app, err := NewApp(context.Background(), cfg, AppOptions{Dev: true})
	if err == nil {
		app.Close()
	}
	return err
}

// tamperDB edits pamctl.db directly, as a writer of the data dir without
// the master key can while pamctl is stopped.
func tamperDB(t *testing.T, s *testServer, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(s.dir, "data", store.FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func trailServer(t *testing.T) (*testServer, string) {
	t.Helper()
	s := startServer(t)
	for _, name := range []string{"openai", "anthropic", "mistral"} {
		s.as(t, "admin", "sk-test-0123456789abcdef-"+name, "vault", "set", name).must(t, "vault set")
	}
	resp, err := http.Get(s.app.BrokerURL() + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	jf := filepath.Join(s.dir, "jwks.json")
	os.WriteFile(jf, jwks, 0o600)
	return s, jf
}

// TestAuditVerifySaysRangeOrTrail: a range export is never reported with
// the whole trail's "intact" line, -o json says what scope, start and keys
// were checked, and what was and was not proven.
func TestAuditVerifySaysRangeOrTrail(t *testing.T) {
	s, jwks := trailServer(t)
	s.stop()
	v := s.as(t, "admin", "", "audit", "verify").must(t, "verify")
	if !strings.Contains(v.err, "audit trail intact") || !strings.Contains(v.err, "signed by a key of this deployment") || !strings.Contains(v.err, "high-water mark") {
		t.Fatalf("verify:\n%s", v.err)
	}
	full, part := filepath.Join(s.dir, "all.jsonl"), filepath.Join(s.dir, "part.jsonl")
	s.as(t, "admin", "", "audit", "export", "--file", full).must(t, "export")
	// From the second event on: a range line, then the rest.
	raw, _ := os.ReadFile(full)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var ev struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	}
	json.Unmarshal([]byte(lines[0]), &ev)
	rangeExport := `{"range":{"seq":1,"hash":"` + ev.Hash + `"}}` + "\n" + strings.Join(lines[1:], "\n") + "\n"
	os.WriteFile(part, []byte(rangeExport), 0o600)

	r := s.as(t, "admin", "", "audit", "verify", "--file", part).must(t, "verify range")
	if strings.Contains(r.err, "audit trail intact") || !strings.Contains(r.err, "audit range consistent (not the whole trail)") || !strings.Contains(r.err, "chained after seq 1") {
		t.Fatalf("range verify:\n%s", r.err)
	}
	var out struct {
		OK     bool
		Report struct {
			Scope string
			Start *struct{ Seq uint64 }
			Keys  string
		}
		Proven    []string `json:"proven"`
		NotProven []string `json:"not_proven"`
	}
	r = s.as(t, "admin", "", "audit", "verify", "--file", part, "--jwks", jwks, "-o", "json").must(t, "verify range json")
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatal(err)
	}
	if !out.OK || out.Report.Scope != "range" || out.Report.Start == nil || out.Report.Start.Seq != 1 || out.Report.Keys != "jwks-file" || len(out.NotProven) == 0 {
		t.Fatalf("range json: %s", r.out)
	}
	r = s.as(t, "admin", "", "audit", "verify", "--file", full, "-o", "json").must(t, "verify full json")
	out.Report.Start = nil
	json.Unmarshal([]byte(r.out), &out)
	if out.Report.Scope != "trail" || out.Report.Start != nil || out.Report.Keys != "deployment" || len(out.Proven) < 2 {
		t.Fatalf("full json: %s", r.out)
	}
	if r := s.as(t, "admin", "", "audit", "verify", "--jwks", jwks); r.code != ExitUsage {
		t.Fatalf("--jwks without --file: %+v", r)
	}
}

// TestEmptiedTrailRefused deletes every event and the head from the data
// file: the server refuses to start and verify fails, both saying what is
// missing. The old code started and printed "audit chain intact: 0 events".
func TestEmptiedTrailRefused(t *testing.T) {
	s, _ := trailServer(t)
	s.stop()
	tamperDB(t, s, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("audit")); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("audit")); err != nil {
			return err
		}
		return tx.Bucket([]byte("audit_meta")).Delete([]byte("head"))
	})
	err := restartApp(t, s)
	if err == nil || !strings.Contains(err.Error(), "the trail is shorter than the high-water mark in the signing key's authenticated record") || !strings.Contains(err.Error(), "found no events") {
		t.Fatalf("start on an emptied trail: %v", err)
	}
	r := s.as(t, "admin", "", "audit", "verify")
	if r.code == 0 || !strings.Contains(r.err, "(high_water): expected events through seq") || !strings.Contains(r.err, "found no events") {
		t.Fatalf("verify on an emptied trail: %+v", r)
	}
}

// TestReplacedSigningKeyRefused replaces the signing key's public half in
// the data file: start and verify refuse with the same clear error.
func TestReplacedSigningKeyRefused(t *testing.T) {
	s, _ := trailServer(t)
	s.stop()
	apub, _, _ := ed25519.GenerateKey(rand.Reader)
	tamperDB(t, s, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("keys"))
		type kv struct{ k, v []byte }
		var all []kv
		b.ForEach(func(k, v []byte) error {
			all = append(all, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		})
		for _, e := range all {
			var env struct {
				V int             `json:"v"`
				D json.RawMessage `json:"d"`
			}
			json.Unmarshal(e.v, &env)
			var rec map[string]any
			json.Unmarshal(env.D, &rec)
			rec["public"] = apub
			env.D, _ = json.Marshal(rec)
			nv, _ := json.Marshal(env)
			if err := b.Put(e.k, nv); err != nil {
				return err
			}
		}
		return nil
	})
	const want = "has a stored public key that does not match its sealed seed; the data file was modified without the master key or copied from another deployment: restore pamctl.db from a backup"
	if err := restartApp(t, s); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("start with a replaced key: %v", err)
	}
	if r := s.as(t, "admin", "", "audit", "verify"); r.code == 0 || !strings.Contains(r.err, want) {
		t.Fatalf("verify with a replaced key: %+v", r)
	}
}
