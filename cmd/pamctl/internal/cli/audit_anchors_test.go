package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
)

// anchoredServer runs a server whose config streams the trail to a file
// sink and anchors every signed head in an append-only file.
func anchoredServer(t *testing.T) (s *testServer, anchors, sink string) {
	t.Helper()
	dir := t.TempDir()
	anchors = filepath.Join(dir, "anchors", "heads.jsonl")
	sink = filepath.Join(dir, "sink", "trail.jsonl")
	conf := filepath.Join(dir, "config.yaml")
	os.MkdirAll(filepath.Dir(anchors), 0o700) // the anchor's directory is a mount pamctl does not create
	os.WriteFile(conf, []byte(fmt.Sprintf(`audit:
  head_every: 3
  head_interval: 1s
  sinks:
    - { type: file, path: %s }
  anchor: { file: %s }
`, sink, anchors)), 0o600)
	t.Setenv("PAMCTL_CONFIG", conf)
	s = startServer(t)
	for i := 0; i < 4; i++ {
		s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", fmt.Sprintf("key%d", i)).must(t, "vault set")
	}
	// Wait until a head past the vault changes is anchored.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st []auditsink.Status
		r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, "audit sinks")
		if err := json.Unmarshal([]byte(r.out), &st); err != nil || len(st) != 2 {
			t.Fatalf("audit sinks -o json: %v\n%s", err, r.out)
		}
		if st[0].Type != "file" || st[1].Anchor != true || !st[0].Running {
			t.Fatalf("audit sinks: %+v", st)
		}
		if st[1].Cursor.HeadSeq >= 5 && st[0].Cursor.Seq >= 5 && st[0].LastError == "" && st[1].LastError == "" {
			// The anchor takes the latest head, so heads signed while it
			// was between polls are never anchored: the callers need two
			// anchored heads, so make more until there are.
			if anchoredHeads(t, anchors) >= 2 {
				break
			}
			s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", "more").must(t, "vault set")
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing anchored: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s, anchors, sink
}

// anchoredHeads counts the heads in an anchor file.
func anchoredHeads(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("anchor file: %v", err)
	}
	return bytes.Count(b, []byte("\n"))
}

// TestAuditVerifyAnchorsCatchesRewriteWithMasterKey is the attack the
// anchors exist for: someone with the data file and the master key edits
// an event, re-chains everything after it, re-signs the head with the real
// keyring and moves the high-water mark. Plain verify cannot tell; verify
// --anchors can, and passes on the untouched trail.
func TestAuditVerifyAnchorsCatchesRewriteWithMasterKey(t *testing.T) {
	s, anchors, sink := anchoredServer(t)
	// Against the running server (admin socket, the broker's JWKS) too.
	live := s.as(t, "admin", "", "audit", "verify", "--anchors", anchors).must(t, "verify --anchors (running)")
	if !strings.Contains(live.err, "anchored off-host") {
		t.Fatalf("verify --anchors (running):\n%s", live.err)
	}
	s.stop()

	// Stopped: the stored cursors are shown, without live errors.
	r := s.as(t, "admin", "", "audit", "sinks").must(t, "audit sinks (stopped)")
	if !strings.Contains(r.out, "file:"+sink) || !strings.Contains(r.out, "anchor:file:"+anchors) || !strings.Contains(r.out, "(server not running)") {
		t.Fatalf("audit sinks (stopped):\n%s", r.out)
	}

	ok := s.as(t, "admin", "", "audit", "verify", "--anchors", anchors).must(t, "verify --anchors (untouched)")
	if !strings.Contains(ok.err, "anchored off-host") || strings.Contains(ok.err, "not rolled back") {
		t.Fatalf("verify --anchors (untouched):\n%s", ok.err)
	}
	j := s.as(t, "admin", "", "audit", "verify", "--anchors", anchors, "-o", "json").must(t, "verify --anchors -o json")
	var out struct {
		OK      bool `json:"ok"`
		Anchors struct {
			Heads, Matched int
			Last           uint64
		} `json:"anchors"`
	}
	if err := json.Unmarshal([]byte(j.out), &out); err != nil || !out.OK || out.Anchors.Heads < 2 || out.Anchors.Matched != out.Anchors.Heads {
		t.Fatalf("verify --anchors -o json: %v\n%s", err, j.out)
	}
	// The file sink's output verifies offline as well.
	s.as(t, "admin", "", "audit", "verify", "--file", sink).must(t, "verify --file sink")

	rewriteWithMasterKey(t, s, 2)

	plain := s.as(t, "admin", "", "audit", "verify")
	if plain.code != 0 {
		t.Fatalf("the rewrite is incomplete (plain verify should be fooled):\n%s", plain.err)
	}
	caught := s.as(t, "admin", "", "audit", "verify", "--anchors", anchors)
	if caught.code == 0 || !strings.Contains(caught.err, "off_host_anchor") || !strings.Contains(caught.err, "history was rewritten") {
		t.Fatalf("verify --anchors missed the rewrite: exit %d\n%s", caught.code, caught.err)
	}
	t.Logf("untouched:\n%s\nrewritten:\n%s", ok.err, caught.err)
	// The sink's JSON Lines carry the heads too: they catch it as well.
	if r := s.as(t, "admin", "", "audit", "verify", "--anchors", sink); r.code == 0 {
		t.Fatalf("verify --anchors with the sink file missed the rewrite:\n%s", r.err)
	}
}

// TestAuditVerifyAnchorsCatchesRollback: a data dir restored from an
// older copy (keys and all) passes plain verify but not --anchors.
func TestAuditVerifyAnchorsCatchesRollback(t *testing.T) {
	s, anchors, _ := anchoredServer(t)
	s.stop()
	db := filepath.Join(s.dir, "data", store.FileName)
	old, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	var before struct {
		Report struct{ Last uint64 } `json:"report"`
	}
	json.Unmarshal([]byte(s.as(t, "admin", "", "audit", "verify", "-o", "json").must(t, "verify").out), &before)
	if before.Report.Last == 0 {
		t.Fatal("verify -o json: no last seq")
	}
	s2 := restartWith(t, s)
	for i := 0; i < 6; i++ {
		s2.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", fmt.Sprintf("later%d", i)).must(t, "vault set")
	}
	waitAnchoredPast(t, s2, before.Report.Last+3)
	s2.stop()
	os.WriteFile(db, old, 0o600) // roll the whole file back
	s.as(t, "admin", "", "audit", "verify").must(t, "plain verify of the rolled-back file")
	r := s.as(t, "admin", "", "audit", "verify", "--anchors", anchors)
	t.Logf("rolled back:\n%s", r.err)
	if r.code == 0 || !strings.Contains(r.err, "rolled back") {
		t.Fatalf("verify --anchors missed the rollback: exit %d\n%s", r.code, r.err)
	}
}

// TestAuditVerifyAnchorsGarbage: an anchor file that is not one fails
// clearly, naming the line.
func TestAuditVerifyAnchorsGarbage(t *testing.T) {
	s, anchors, _ := anchoredServer(t)
	s.stop()
	f, _ := os.OpenFile(anchors, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("this is not json\n")
	f.Close()
	r := s.as(t, "admin", "", "audit", "verify", "--anchors", anchors)
	if r.code == 0 || !strings.Contains(r.err, "not a signed head") || !strings.Contains(r.err, "line ") {
		t.Fatalf("garbage anchors: exit %d\n%s", r.code, r.err)
	}
	if r := s.as(t, "admin", "", "audit", "verify", "--anchors", anchors, "--file", anchors); r.code != ExitUsage {
		t.Fatalf("--anchors with --file: exit %d\n%s", r.code, r.err)
	}
	if r := s.as(t, "admin", "", "audit", "verify", "--anchors", filepath.Join(s.dir, "missing")); r.code != ExitUsage {
		t.Fatalf("missing anchors file: exit %d\n%s", r.code, r.err)
	}
}

func restartWith(t *testing.T, s *testServer) *testServer {
	t.Helper()
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(s.dir, "data")
	cfg.MasterKeyFile = filepath.Join(s.dir, "master.key")
	cfg.Policies = e2ePolicies
	ctx, cancel := context.WithCancel(context.Background())
	app, err := NewApp(ctx, cfg, AppOptions{Dev: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s2 := &testServer{app: app, cancel: cancel, done: make(chan error, 1), dir: s.dir}
	go func() { s2.done <- app.Serve(ctx, func() (*Config, error) { return cfg, nil }) }()
	t.Cleanup(s2.stop)
	t.Setenv("PAMCTL_SERVER", app.BrokerURL())
	return s2
}

// waitAnchoredPast waits until a head at or after seq is anchored.
func waitAnchoredPast(t *testing.T, s *testServer, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st []auditsink.Status
		r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, "audit sinks")
		json.Unmarshal([]byte(r.out), &st)
		if len(st) == 2 && st[1].Cursor.HeadSeq >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no head at or after seq %d anchored: %+v", seq, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rewriteWithMasterKey edits event seq `at` of the stopped data dir and
// re-chains, re-signs and re-marks everything after it, using the master
// key: all an insider holding the data file and the key can do.
func rewriteWithMasterKey(t *testing.T, s *testServer, at uint64) {
	t.Helper()
	dbPath := filepath.Join(s.dir, "data", store.FileName)
	raw, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var tip audit.Link
	var rewritten []audit.Link
	err = raw.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		c := b.Cursor()
		prev := ""
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			line := bytes.TrimSuffix(bytes.TrimPrefix(v, []byte(`{"v":1,"d":`)), []byte("}"))
			var e audit.Event
			if err := json.Unmarshal(line, &e); err != nil {
				return err
			}
			if prev == "" {
				prev = e.PrevHash
			}
			if seq < at {
				prev = e.Hash
				continue
			}
			if seq == at {
				e.Target = "nothing-to-see-here"
			}
			d, err := audit.NewDraft(&e, e.Time)
			if err != nil {
				return err
			}
			sealed, hash, err := d.Seal(seq, prev)
			if err != nil {
				return err
			}
			rec := append(append([]byte(`{"v":1,"d":`), sealed...), '}')
			if err := b.Put(append([]byte(nil), k...), rec); err != nil {
				return err
			}
			prev, tip = hash, audit.Link{Seq: seq, Hash: hash}
			rewritten = append(rewritten, tip)
		}
		return nil
	})
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}

	// Re-sign the head and move the high-water mark with the real keys.
	ctx := context.Background()
	db, err := store.Open(filepath.Join(s.dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := vault.LoadMasterKey("", filepath.Join(s.dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := token.LoadKeyring(ctx, db, v.Sealer(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	head := &audit.SignedHead{Seq: tip.Seq, Hash: tip.Hash, Time: time.Now().UTC()}
	if err := head.Sign(kr); err != nil {
		t.Fatal(err)
	}
	recs, err := db.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range recs {
		if k.Mark == nil {
			continue
		}
		k.Mark = &token.Mark{Seq: tip.Seq, Hash: tip.Hash}
		retired := "-"
		if k.RetiredAt != nil {
			retired = k.RetiredAt.UTC().Format(time.RFC3339Nano)
		}
		// The record's authentication tag, as broker/token computes it.
		msg := fmt.Sprintf("pamctl-signing-key-record-v2\nkid=%s\npublic=%s\ncreated=%s\nretired=%s\nsuccessor=%s\nmark=%d:%s\n",
			k.KID, base64.RawURLEncoding.EncodeToString(k.Public), k.Created.UTC().Format(time.RFC3339Nano), retired, k.Successor, tip.Seq, tip.Hash)
		if k.Auth, err = v.Sealer().Seal(nil, msg); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// And the rewritten events' authenticators, under the master key.
	authKey, err := v.DerivedKey(store.AuditRecordKeyPurpose)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	raw, err = bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	hj, _ := json.Marshal(head)
	if err := raw.Update(func(tx *bolt.Tx) error {
		mac := store.NewEventMAC(authKey)
		for _, l := range rewritten {
			if err := tx.Bucket([]byte("audit_auth")).Put(u64key(l.Seq), bytes.Clone(mac.Of(l.Seq, l.Hash))); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("audit_meta")).Put([]byte("head"), append(append([]byte(`{"v":1,"d":`), hj...), '}'))
	}); err != nil {
		t.Fatal(err)
	}
}

// verify names the retention a pruned trail's anchor claims, so a reviewer
// can hold it against audit.retention: a holder of the master key can sign
// an anchor that prunes all but the last hour.
func TestVerifyNamesTheRetentionItsAnchorClaims(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	rep := audit.Report{Events: 3, First: 13, Last: 15, Anchor: &audit.Anchor{Seq: 12, Before: at.Add(-90 * 24 * time.Hour), Time: at}}
	proven, _ := explain(rep, false)
	if len(proven) == 0 || !strings.Contains(proven[0], "events older than 2026-09-08T01:00:00Z pruned at 2026-12-07T01:00:00Z, a retention of 90d0h") {
		t.Fatalf("proven: %q", proven)
	}
}
