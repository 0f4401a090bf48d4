package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
)

// stateStore is what the server keeps in its store, whichever backend
// (store.backend): the records the broker, vault, keyring, proxy
// enrollments and audit sinks share, the feed of other replicas' writes,
// and the write probe behind /readyz. store.DB (bbolt) and etcdstore.DB
// both are one.
type stateStore interface {
	broker.Store
	broker.Changes
	token.BatchKeyStore
	vault.Store
	link.Store
	auditsink.CursorStore
	Probe(ctx context.Context, now time.Time) error
}

var (
	_ stateStore = (*store.DB)(nil)
	_ stateStore = (*etcdstore.DB)(nil)
)

// etcdStoreHint is the store check's hint with store.backend etcd.
const etcdStoreHint = "the etcd cluster (store.etcd) cannot take writes with quorum (members down, network, TLS or credentials): proxied calls are refused with 503 store_unavailable and requests, approvals and logins fail until it is back, and this replica recovers by itself when it is; check `etcdctl endpoint health` and the server log"

// openStore opens pamctl.db in the data dir (which also holds the lock
// that makes this process the only server on it) and, with store.backend
// etcd, the cluster, where every shared record then lives. With etcd,
// pamctl.db keeps what is still per replica: the audit trail and the
// limit counters (the etcd audit chain and shared counters replace them).
func (a *App) openStore(ctx context.Context) error {
	var err error
	if a.db, err = store.Open(a.cfg.DataDir, store.Options{}); err != nil {
		return err
	}
	a.state = a.db
	if a.cfg.Store.Backend != BackendEtcd {
		return nil
	}
	ec, err := a.cfg.EtcdStoreConfig()
	if err != nil {
		return withCode(ExitUsage, err)
	}
	ec.OnAvailability = func(err error) {
		if err != nil {
			a.health.Fail(checkStore, err)
		} else {
			a.health.OK(checkStore)
		}
	}
	if a.etcd, err = etcdstore.Open(ctx, ec); err != nil {
		return fmt.Errorf("store.etcd: %w", err)
	}
	a.state = a.etcd
	a.log.Info("shared state in etcd", "endpoints", len(ec.Endpoints), "prefix", a.etcd.Prefix())
	return nil
}

// headSigner signs the audit chain's heads. With etcd the keyring is
// shared by every replica while each replica's trail is its own, so the
// high-water mark (one per key, in the shared key record) would compare
// one replica's trail with another's heads: the local trail is signed
// without it.
func (a *App) headSigner() audit.HeadSigner {
	if a.etcd != nil {
		return headOnly{a.keys}
	}
	return a.keys
}

type headOnly struct{ k *token.Keyring }

func (h headOnly) SignHead(msg []byte) (string, []byte, error) { return h.k.SignHead(msg) }

// snapshotter makes `pamctl store backup` copies of pamctl.db; with etcd
// the state is the cluster's (backed up with etcd's own tools), and the
// command refuses before it asks the server (errEtcdBackup).
func (a *App) snapshotter() broker.Snapshotter {
	if a.etcd != nil {
		return nil
	}
	return a.db
}

var errEtcdBackup = errors.New("store.backend is etcd: the shared state is the cluster's, so back it up with `etcdctl snapshot save FILE` (and keep the master key apart; see docs/deployment.md); pamctl store backup copies a bbolt data dir")

// storeGate refuses proxied calls while the etcd cluster has no quorum:
// revocations, key rotations and holds decided on other replicas would
// not reach this one, so nothing is forwarded (fail closed) until the
// availability monitor sees quorum again. With bbolt it is next.
func (a *App) storeGate(next http.Handler) http.Handler {
	if a.etcd == nil || next == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.etcd.Available() != nil {
			writeStoreUnavailable(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CodeStoreUnavailable is the proxy's error code while the shared store
// cannot answer.
const CodeStoreUnavailable = "store_unavailable"

func writeStoreUnavailable(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `{"error":{"message":"pamctl's shared store (etcd) is unavailable, so this call was not forwarded. Retry shortly; an administrator should check the etcd cluster and the pamctl logs.","type":"server_error","code":"`+CodeStoreUnavailable+`","param":null}}`)
}

var errEtcdLocal = errors.New("store.backend is etcd: the shared state is in the cluster, not in this data dir; run this command while a replica is serving (it goes through the replica's admin socket)")

// recordStore is a store whose records are authenticated under the
// record key (store.RecordKey): store.DB and etcdstore.DB.
type recordStore interface {
	SealRecords(ctx context.Context, rk *store.RecordKey) (int, error)
	SetRecordKey(rk *store.RecordKey)
}

var (
	_ recordStore = (*store.DB)(nil)
	_ recordStore = (*etcdstore.DB)(nil)
)

// useRecordKey gives st its record key, derived from the master key v
// holds. On the first start after the upgrade to authenticated records
// (the keyring kr says the deployment's records are not sealed yet) it
// seals every record first, then re-tags the key records to say so: from
// then on, on this and every later start, a record without a valid
// authenticator is refused, and nothing a writer without the master key
// can do to the store brings the sealing back.
//
// onForged, when set, is told of every record refused as forged.
func useRecordKey(ctx context.Context, st recordStore, kr *token.Keyring, v *vault.Vault, log *slog.Logger, onForged func(kind string, err error)) error {
	rk, err := recordKeyOf(v)
	if err != nil {
		return err
	}
	if onForged != nil {
		rk = rk.OnForged(onForged)
	}
	if !kr.RecordsSealed() {
		n, err := st.SealRecords(ctx, rk)
		if err != nil {
			return fmt.Errorf("seal the store's records (the upgrade to authenticated records): %w", err)
		}
		if err := kr.MarkRecordsSealed(ctx); err != nil {
			return err
		}
		if log != nil {
			log.Info("store records are now authenticated under the master key (one-time upgrade); older pamctl versions can no longer open this store", "sealed", n)
		}
	}
	st.SetRecordKey(rk)
	return nil
}

// recordKeyOf is the record key derived from v's master key.
func recordKeyOf(v *vault.Vault) (*store.RecordKey, error) {
	raw, err := v.DerivedKey(store.RecordKeyPurpose)
	if err != nil {
		return nil, err
	}
	return store.NewRecordKey(raw)
}
