package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// TestMigrateBboltToEtcd fills a bbolt data dir the way a server does
// (signing keys, vault, a session, requests, counters, a few thousand
// signed events, a retention prune), migrates it, and checks that etcd
// holds the same records and a chain that verifies exactly as bbolt's did,
// high-water mark included; a second run is refused unless told to replace.
func TestMigrateBboltToEtcd(t *testing.T) {
	ctx := context.Background()
	mk, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	src, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.SetRecordKey(testRecKey)
	v, err := vault.Open(ctx, src, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := token.LoadKeyring(ctx, src, v.Sealer(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Set(ctx, "openai", vault.NewSecret("sk-test-migrate")); err != nil {
		t.Fatal(err)
	}
	key, err := v.DerivedKey(store.AuditRecordKeyPurpose)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now().Add(-48 * time.Hour)
	var cmu sync.Mutex
	now := func() time.Time { cmu.Lock(); defer cmu.Unlock(); clock = clock.Add(time.Millisecond); return clock }
	lg, err := src.AuditLog(store.AuditOptions{Signer: kr, Clock: now, RecordKey: key})
	if err != nil {
		t.Fatal(err)
	}
	appendN := func(n int) {
		var wg sync.WaitGroup
		for w := 0; w < 10; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n/10; i++ {
					if err := lg.Append(ctx, &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: fmt.Sprintf("a%d", w)}, Status: 200}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	appendN(1000)
	cut := now() // retention cuts the first 1000 events
	appendN(3000)
	if res, err := lg.Prune(ctx, cut); err != nil || res.Deleted == 0 {
		t.Fatalf("prune: %+v, %v", res, err)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	req := &broker.Request{ID: "req_migrated", Kind: broker.KindAccess, Requester: broker.Identity{Subject: "alice", Issuer: "corp"},
		Scopes: []string{"model:gpt-4o"}, State: broker.StateApproved, CreatedAt: time.Now(), ApprovedAt: &exp, ExpiresAt: &exp, TTL: time.Hour}
	if err := src.CreateRequest(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := src.CreateSession(ctx, &broker.SessionRecord{ID: "sess_1", Identity: broker.Identity{Subject: "alice", Issuer: "corp"}, CreatedAt: time.Now(), ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	// An ID token that opened a session, and one long expired.
	if _, err := src.RedeemLogin(ctx, "digest-live", time.Now(), exp); err != nil {
		t.Fatal(err)
	}
	if _, err := src.RedeemLogin(ctx, "digest-old", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	cs, err := src.Counters(store.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs.Add("req_migrated", proxy.UsageDelta{Tokens: 77, At: time.Now(), Expires: exp})
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	// What bbolt says about its chain.
	lg, err = src.AuditLog(store.AuditOptions{Signer: kr, Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	want, err := lg.Verify(ctx, audit.KeyFunc(kr.AnyPublicKey))
	lg.Close()
	if err != nil {
		t.Fatal(err)
	}

	cluster := etcdtest.Start(t, 1)
	dst, err := Open(ctx, Config{Endpoints: cluster.Endpoints(), Prefix: "/migrated/"})
	if err != nil {
		t.Fatal(err)
	}
	dst.SetRecordKey(testRecKey)
	defer dst.Close()
	start := time.Now()
	rep, err := Migrate(ctx, src, dst, false, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated %d events in %v: %+v", rep.Events, time.Since(start), rep)
	if rep.Events != want.Events || rep.Events < 3000 || rep.Last.Seq != want.Last || rep.Requests != 1 || rep.Sessions != 1 || rep.Logins != 1 || rep.VaultEntries != 1 || rep.Keys == 0 || rep.Counters != 1 {
		t.Fatalf("report %+v, bbolt verified %+v", rep, want)
	}
	// etcd's deployment view: the vault opens with the same master key, the
	// keyring loads from etcd, and the chain verifies against its mark.
	ev, err := vault.Open(ctx, dst, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := ev.Get(ctx, "openai"); err != nil || s.Reveal() != "sk-test-migrate" {
		t.Fatalf("vault entry after migration: %v", err)
	}
	ekr, err := token.LoadKeyring(ctx, dst, ev.Sealer(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	el, err := dst.AuditLog(ctx, AuditOptions{Signer: ekr, RecordKey: key})
	if err != nil {
		t.Fatalf("open the migrated trail (checks the high-water mark): %v", err)
	}
	defer el.Close()
	got, err := el.Verify(ctx, audit.KeyFunc(ekr.AnyPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if got.Events != want.Events || got.First != want.First || got.Last != want.Last || got.LastHash != want.LastHash || !got.Signed || got.HighWater == nil {
		t.Fatalf("etcd verify %+v, bbolt %+v", got, want)
	}
	// The chain goes on in etcd.
	e := &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "after"}}
	if err := el.Append(ctx, e); err != nil || e.Seq != want.Last+1 || e.PrevHash != want.LastHash {
		t.Fatalf("append after migration: seq %d prev %s, %v", e.Seq, e.PrevHash, err)
	}
	if r, err := dst.GetRequest(ctx, "req_migrated"); err != nil || r.State != broker.StateApproved {
		t.Fatalf("request: %+v, %v", r, err)
	}
	if first, err := dst.RedeemLogin(ctx, "digest-live", time.Now(), exp); err != nil || first {
		t.Fatalf("a redeemed ID token is redeemable again after migration: %v %v", first, err)
	}
	if first, err := dst.RedeemLogin(ctx, "digest-old", time.Now(), exp); err != nil || !first {
		t.Fatalf("an expired redemption was migrated: %v %v", first, err)
	}
	if rs, err := dst.RequestsInState(ctx, broker.StateApproved, nil); err != nil || len(rs) != 1 {
		t.Fatalf("state index after migration: %d, %v", len(rs), err)
	}
	ctr, err := dst.Counters(CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ctr.Close()
	if u, err := ctr.Load(ctx, "req_migrated"); err != nil || u.Tokens != 77 {
		t.Fatalf("counters after migration: %+v, %v", u, err)
	}

	if _, err := Migrate(ctx, src, dst, false, key); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("second migration into a non-empty prefix: %v", err)
	}
	el.Close()
	if rep, err := Migrate(ctx, src, dst, true, key); err != nil || rep.Last.Seq != want.Last {
		t.Fatalf("migration with replace: %+v, %v", rep, err)
	}
	// The old keyring remembers the head signed in etcd after the first
	// migration: to it, the replaced trail is a rollback.
	if _, err := el2Verify(ctx, dst, ekr); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("a keyring that saw a later head verified the replaced trail: %v", err)
	}
	ekr, err = token.LoadKeyring(ctx, dst, ev.Sealer(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	el2, err := dst.AuditLog(ctx, AuditOptions{Signer: ekr, Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer el2.Close()
	if got, err := el2.Verify(ctx, audit.KeyFunc(ekr.AnyPublicKey)); err != nil || got.Last != want.Last {
		t.Fatalf("verify after replace: %+v, %v", got, err)
	}
}

func el2Verify(ctx context.Context, dst *DB, kr *token.Keyring) (audit.Report, error) {
	l, err := dst.AuditLog(ctx, AuditOptions{Signer: kr, Inspect: true})
	if err != nil {
		return audit.Report{}, err
	}
	defer l.Close()
	return l.Verify(ctx, audit.KeyFunc(kr.AnyPublicKey))
}

// A data dir whose trail ends with events past its last signed head (a
// server that stopped without signing them) moves with their
// authenticators: the replicas open it and sign over them. One whose
// events there carry none (written by an earlier version, or added by a
// writer of the data file) is refused, as bbolt's own start refuses it:
// copying would give them authenticators.
func TestMigrateCarriesAuthenticators(t *testing.T) {
	ctx := context.Background()
	cluster := etcdtest.Start(t, 1)
	for _, authenticated := range []bool{true, false} {
		t.Run(fmt.Sprintf("authenticated=%v", authenticated), func(t *testing.T) {
			mk, _ := vault.GenerateMasterKey()
			src, err := store.Open(t.TempDir(), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			v, err := vault.Open(ctx, src, mk, nil)
			if err != nil {
				t.Fatal(err)
			}
			kr, err := token.LoadKeyring(ctx, src, v.Sealer(), time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			key, err := v.DerivedKey(store.AuditRecordKeyPurpose)
			if err != nil {
				t.Fatal(err)
			}
			appendN := func(opts store.AuditOptions, n int) {
				t.Helper()
				lg, err := src.AuditLog(opts)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < n; i++ {
					if err := lg.Append(ctx, &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "a"}, Status: 200}); err != nil {
						t.Fatal(err)
					}
				}
				if err := lg.Close(); err != nil {
					t.Fatal(err)
				}
			}
			appendN(store.AuditOptions{Signer: kr, RecordKey: key}, 5) // signed through seq 5
			unsigned := store.AuditOptions{}                           // no signer: 6-8 stay past the head
			if authenticated {
				unsigned.RecordKey = key
			}
			appendN(unsigned, 3)
			dst, err := Open(ctx, Config{Endpoints: cluster.Endpoints(), Prefix: "/carry-" + t.Name() + "/"})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			_, err = Migrate(ctx, src, dst, false, key)
			if !authenticated {
				if !errors.Is(err, store.ErrUnauthenticated) {
					t.Fatalf("migrate = %v, want store.ErrUnauthenticated", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ev, err := vault.Open(ctx, dst, mk, nil)
			if err != nil {
				t.Fatal(err)
			}
			ekr, err := token.LoadKeyring(ctx, dst, ev.Sealer(), time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			el, err := dst.AuditLog(ctx, AuditOptions{Signer: ekr, RecordKey: key})
			if err != nil {
				t.Fatalf("open the migrated trail: %v", err)
			}
			defer el.Close()
			if h, err := el.SignHead(ctx); err != nil || h == nil || h.Seq != 8 {
				t.Fatalf("SignHead over the migrated unsigned events = %+v, %v", h, err)
			}
		})
	}
}
