package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// The upgrade to authenticated records, on a data dir written by an
// older pamctl (a signing key from before key tags, records without
// authenticators): the first start seals every record and marks the key
// records; a writer of the file without the master key who then strips
// the authenticators and adds a forged grant does not get them sealed
// again by the next start: both are refused.
func TestRecordsSealedOnceAtTheUpgrade(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	raw := make([]byte, 32)
	rand.Read(raw)
	t.Setenv(vault.EnvMasterKey, base64.StdEncoding.EncodeToString(raw))
	mk, err := vault.ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	now := time.Now().UTC()
	exp := now.Add(time.Hour)
	alice := broker.Identity{Subject: "alice", Issuer: "corp"}
	grant := func(id string) *broker.Request {
		return &broker.Request{ID: id, Kind: broker.KindAccess, Requester: alice, Scopes: []string{"proxy:serve"}, TTL: time.Hour,
			State: broker.StateApproved, CreatedAt: now, PendingUntil: now, ApprovedAt: &now, ExpiresAt: &exp}
	}
	putRaw := func(bucket, key string, v any) {
		t.Helper()
		rec, err := store.EncodeRecord(v) // no authenticator: as older builds (and forgers) write
		if err != nil {
			t.Fatal(err)
		}
		b, err := bolt.Open(filepath.Join(dataDir, store.FileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucket)).Put([]byte(key), rec) }); err != nil {
			t.Fatal(err)
		}
	}

	// The older deployment: master check, a legacy signing key, records.
	db, err := store.Open(dataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(mk)
	if _, err := vault.Open(ctx, db, mk, nil); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sealedSeed, _ := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	if err := db.SaveKey(ctx, token.SealedKey{KID: kid, Public: pub, Sealed: sealedSeed, Created: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	putRaw("requests", "req_legacy", grant("req_legacy"))
	putRaw("sessions", "ses_legacy", &broker.SessionRecord{ID: "ses_legacy", Identity: alice, CreatedAt: now, LastUsedAt: now, ExpiresAt: exp, State: broker.SessionActive})

	start := func() (*App, error) {
		cfg, err := LoadConfig("", nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = dataDir
		cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
		return NewApp(ctx, cfg, AppOptions{})
	}
	app, err := start()
	if err != nil {
		t.Fatalf("first start after the upgrade: %v", err)
	}
	if r, err := app.state.GetRequest(ctx, "req_legacy"); err != nil || r.State != broker.StateApproved {
		t.Fatalf("a legacy request after the upgrade: %+v %v", r, err)
	}
	if s, err := app.state.GetSession(ctx, "ses_legacy"); err != nil || s.Identity.Subject != "alice" {
		t.Fatalf("a legacy session after the upgrade: %+v %v", s, err)
	}
	app.Close()

	// The writer without the master key strips the authenticator and
	// adds a forged grant.
	putRaw("requests", "req_legacy", grant("req_legacy"))
	putRaw("requests", "req_forged", grant("req_forged"))
	app, err = start()
	if err != nil {
		if !errors.Is(err, store.ErrRecordForged) {
			t.Fatalf("second start: %v", err)
		}
		return // refused at start: fine too
	}
	defer app.Close()
	for _, id := range []string{"req_legacy", "req_forged"} {
		if r, err := app.state.GetRequest(ctx, id); !errors.Is(err, store.ErrRecordForged) {
			t.Errorf("%s, unsealed after the upgrade, was read: %+v %v", id, r, err)
		}
	}
}

// The same upgrade on etcd: the cluster's records from an older version
// are sealed by the first start, and once the key records say so, records
// stripped and forged under the prefix are refused on the next start.
func TestEtcdRecordsSealedOnceAtTheUpgrade(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	raw := make([]byte, 32)
	rand.Read(raw)
	t.Setenv(vault.EnvMasterKey, base64.StdEncoding.EncodeToString(raw))
	mk, err := vault.ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	exp := now.Add(time.Hour)
	alice := broker.Identity{Subject: "alice", Issuer: "corp"}
	grant := func(id string) *broker.Request {
		return &broker.Request{ID: id, Kind: broker.KindAccess, Requester: alice, Scopes: []string{"proxy:serve"}, TTL: time.Hour,
			State: broker.StateApproved, CreatedAt: now, PendingUntil: now, ApprovedAt: &now, ExpiresAt: &exp}
	}
	putRaw := func(key string, v any) {
		t.Helper()
		rec, err := store.EncodeRecord(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client().Put(ctx, etcdstore.DefaultPrefix+key, string(rec)); err != nil {
			t.Fatal(err)
		}
	}
	db, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Open(ctx, db, mk, nil); err != nil {
		t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(mk)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sealedSeed, _ := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	if err := db.SaveKey(ctx, token.SealedKey{KID: kid, Public: pub, Sealed: sealedSeed, Created: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	putRaw("requests/req_legacy", grant("req_legacy"))
	putRaw("proxies/prx_legacy", &link.Enrollment{ID: "prx_legacy", Subject: "alice", Issuer: "corp", Grant: "req_legacy"})

	start := func() (*App, error) {
		cfg, err := LoadConfig("", nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = filepath.Join(dir, "data")
		cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
		onEtcd(c)(cfg)
		return NewApp(ctx, cfg, AppOptions{})
	}
	app, err := start()
	if err != nil {
		t.Fatalf("first start after the upgrade: %v", err)
	}
	if r, err := app.state.GetRequest(ctx, "req_legacy"); err != nil || r.State != broker.StateApproved {
		t.Fatalf("a legacy request after the upgrade: %+v %v", r, err)
	}
	if e, err := app.state.GetEnrollment(ctx, "prx_legacy"); err != nil || e.Subject != "alice" {
		t.Fatalf("a legacy enrollment after the upgrade: %+v %v", e, err)
	}
	app.Close()

	putRaw("requests/req_legacy", grant("req_legacy"))
	putRaw("requests/req_forged", grant("req_forged"))
	app, err = start()
	if err != nil {
		if !errors.Is(err, store.ErrRecordForged) {
			t.Fatalf("second start: %v", err)
		}
		return
	}
	defer app.Close()
	for _, id := range []string{"req_legacy", "req_forged"} {
		if r, err := app.state.GetRequest(ctx, id); !errors.Is(err, store.ErrRecordForged) {
			t.Errorf("%s, unsealed after the upgrade, was read: %+v %v", id, r, err)
		}
	}
}
