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

// legacyUpgrade is a deployment written by an older pamctl (a signing key
// from before key tags, records without authenticators), upgraded by the
// starts of this one: what both backends' upgrade tests share.
type legacyUpgrade struct {
	t        *testing.T
	ctx      context.Context
	dataDir  string
	mk       vault.MasterKey
	now, exp time.Time
	alice    broker.Identity
	adjust   []func(*Config)
}

// newLegacyUpgrade sets the environment of a server (a config dir, a
// master key) under dir; adjust is applied to every start's config.
func newLegacyUpgrade(t *testing.T, dir string, adjust ...func(*Config)) *legacyUpgrade {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	raw := make([]byte, 32)
	rand.Read(raw)
	t.Setenv(vault.EnvMasterKey, base64.StdEncoding.EncodeToString(raw))
	mk, err := vault.ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	return &legacyUpgrade{t: t, ctx: context.Background(), dataDir: filepath.Join(dir, "data"), mk: mk,
		now: now, exp: now.Add(time.Hour), alice: broker.Identity{Subject: "alice", Issuer: "corp"}, adjust: adjust}
}

// grant is an approved proxy:serve grant of alice.
func (u *legacyUpgrade) grant(id string) *broker.Request {
	return &broker.Request{ID: id, Kind: broker.KindAccess, Requester: u.alice, Scopes: []string{"proxy:serve"}, TTL: time.Hour,
		State: broker.StateApproved, CreatedAt: u.now, PendingUntil: u.now, ApprovedAt: &u.now, ExpiresAt: &u.exp}
}

// seed writes what the older deployment kept besides its records: the
// master check and a signing key from before key tags.
func (u *legacyUpgrade) seed(db interface {
	vault.Store
	token.KeyStore
}) {
	u.t.Helper()
	if _, err := vault.Open(u.ctx, db, u.mk, nil); err != nil {
		u.t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(u.mk)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sealedSeed, _ := sealer.Seal(priv.Seed(), "signing-key:"+kid)
	if err := db.SaveKey(u.ctx, token.SealedKey{KID: kid, Public: pub, Sealed: sealedSeed, Created: u.now.Add(-time.Hour)}); err != nil {
		u.t.Fatal(err)
	}
}

// start starts a server on the deployment, as `pamctl serve` would.
func (u *legacyUpgrade) start() (*App, error) {
	cfg, err := LoadConfig("", nil)
	if err != nil {
		u.t.Fatal(err)
	}
	cfg.DataDir = u.dataDir
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	for _, f := range u.adjust {
		f(cfg)
	}
	return NewApp(u.ctx, cfg, AppOptions{})
}

// firstStart is the start after the upgrade: it must read the legacy
// grant req_legacy, and what else check reads, then stop.
func (u *legacyUpgrade) firstStart(check func(*App)) {
	u.t.Helper()
	app, err := u.start()
	if err != nil {
		u.t.Fatalf("first start after the upgrade: %v", err)
	}
	defer app.Close()
	if r, err := app.state.GetRequest(u.ctx, "req_legacy"); err != nil || r.State != broker.StateApproved {
		u.t.Fatalf("a legacy request after the upgrade: %+v %v", r, err)
	}
	check(app)
}

// forgeAndRestart has a writer without the master key strip req_legacy's
// authenticator and add a forged grant, through putRequest (a record
// without an authenticator, as older builds and forgers write), and
// checks the next start refuses both: at start, or on reading them.
func (u *legacyUpgrade) forgeAndRestart(putRequest func(*broker.Request)) {
	u.t.Helper()
	putRequest(u.grant("req_legacy"))
	putRequest(u.grant("req_forged"))
	app, err := u.start()
	if err != nil {
		if !errors.Is(err, store.ErrRecordForged) {
			u.t.Fatalf("second start: %v", err)
		}
		return // refused at start: fine too
	}
	defer app.Close()
	for _, id := range []string{"req_legacy", "req_forged"} {
		if r, err := app.state.GetRequest(u.ctx, id); !errors.Is(err, store.ErrRecordForged) {
			u.t.Errorf("%s, unsealed after the upgrade, was read: %+v %v", id, r, err)
		}
	}
}

// The upgrade to authenticated records, on a data dir written by an
// older pamctl: the first start seals every record and marks the key
// records; a writer of the file without the master key who then strips
// the authenticators and adds a forged grant does not get them sealed
// again by the next start: both are refused.
func TestRecordsSealedOnceAtTheUpgrade(t *testing.T) {
	u := newLegacyUpgrade(t, t.TempDir())
	putRaw := func(bucket, key string, v any) {
		t.Helper()
		rec, err := store.EncodeRecord(v) // no authenticator: as older builds (and forgers) write
		if err != nil {
			t.Fatal(err)
		}
		b, err := bolt.Open(filepath.Join(u.dataDir, store.FileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucket)).Put([]byte(key), rec) }); err != nil {
			t.Fatal(err)
		}
	}

	db, err := store.Open(u.dataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u.seed(db)
	db.Close()
	putRaw("requests", "req_legacy", u.grant("req_legacy"))
	putRaw("sessions", "ses_legacy", &broker.SessionRecord{ID: "ses_legacy", Identity: u.alice, CreatedAt: u.now, LastUsedAt: u.now, ExpiresAt: u.exp, State: broker.SessionActive})

	u.firstStart(func(app *App) {
		if s, err := app.state.GetSession(u.ctx, "ses_legacy"); err != nil || s.Identity.Subject != "alice" {
			t.Fatalf("a legacy session after the upgrade: %+v %v", s, err)
		}
	})
	u.forgeAndRestart(func(r *broker.Request) { putRaw("requests", r.ID, r) })
}

// The same upgrade on etcd: the cluster's records from an older version
// are sealed by the first start, and once the key records say so, records
// stripped and forged under the prefix are refused on the next start.
func TestEtcdRecordsSealedOnceAtTheUpgrade(t *testing.T) {
	c := etcdtest.Start(t, 1)
	u := newLegacyUpgrade(t, t.TempDir(), onEtcd(c))
	putRaw := func(key string, v any) {
		t.Helper()
		rec, err := store.EncodeRecord(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client().Put(u.ctx, etcdstore.DefaultPrefix+key, string(rec)); err != nil {
			t.Fatal(err)
		}
	}
	db, err := etcdstore.Open(u.ctx, etcdstore.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	u.seed(db)
	db.Close()
	putRaw("requests/req_legacy", u.grant("req_legacy"))
	putRaw("proxies/prx_legacy", &link.Enrollment{ID: "prx_legacy", Subject: "alice", Issuer: "corp", Grant: "req_legacy"})

	u.firstStart(func(app *App) {
		if e, err := app.state.GetEnrollment(u.ctx, "prx_legacy"); err != nil || e.Subject != "alice" {
			t.Fatalf("a legacy enrollment after the upgrade: %+v %v", e, err)
		}
	})
	u.forgeAndRestart(func(r *broker.Request) { putRaw("requests/"+r.ID, r) })
}
