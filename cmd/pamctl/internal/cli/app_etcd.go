package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
)

// queuedLog is the server's audit trail: bbolt's (store.AuditLog) or, with
// store.backend etcd, the one chain every replica appends to
// (etcdstore.AuditLog).
type queuedLog interface {
	auditLog
	QueueDepth() int
}

var (
	_ queuedLog = (*store.AuditLog)(nil)
	_ queuedLog = (*etcdstore.AuditLog)(nil)
)

// counterStore is the proxy's limit counters: per process with bbolt,
// shared by the replicas with etcd (proxy.SharedCounters).
type counterStore interface {
	proxy.CounterStore
	Close() error
}

var (
	_ counterStore         = (*store.Counters)(nil)
	_ proxy.SharedCounters = (*etcdstore.Counters)(nil)
)

// openAuditLog opens the trail. With etcd it first starts this replica's
// campaign for the background work (a.leader), which the chain's
// signed-head timer follows too; the keyring signs heads with its
// high-water mark, which then describes the one shared chain.
func (a *App) openAuditLog(ctx context.Context, mode audit.SyncMode) (queuedLog, error) {
	onErr := a.auditFailed
	// Every event is authenticated under a key of the master key; with
	// etcd every replica derives the same one, so each checks the others'.
	key, err := a.vault.DerivedKey(store.AuditRecordKeyPurpose)
	if err != nil {
		return nil, err
	}
	if a.etcd == nil {
		return a.db.AuditLog(store.AuditOptions{Sync: mode, Signer: a.headSigner(), RecordKey: key,
			HeadEvery: a.cfg.Audit.HeadEvery, HeadInterval: a.cfg.Audit.HeadInterval,
			OnError: onErr, OnBatch: a.observeBatch()})
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s:%d", host, os.Getpid())
	a.election = a.etcd.Campaign(id, etcdstore.ElectionOptions{
		OnChange: func(leading bool) {
			a.log.Info("background work (sweeps, retention, signed heads)", "leading", leading, "replica", id)
		},
		OnError: func(err error) { a.log.Warn("leader election", "err", err.Error()) },
	})
	a.leader = a.election
	return a.etcd.AuditLog(ctx, etcdstore.AuditOptions{Sync: mode, Signer: a.keys, RecordKey: key,
		HeadEvery: a.cfg.Audit.HeadEvery, HeadInterval: a.cfg.Audit.HeadInterval,
		OnError: onErr, OnBatch: a.observeBatch(), Leader: a.leader})
}

// tamperedTrailHint is what /readyz and the log say while the audit
// check fails because the stored trail was tampered with.
const tamperedTrailHint = "the stored audit trail holds events or changes this deployment did not write (see the error in the server log), and no head is signed over them; this stays failing until pamctl restarts: run `pamctl audit verify`, restore the store (pamctl.db from a backup, or etcd from a snapshot), then restart every replica"

// auditFailed is the audit log's OnError (failures of its background
// work: head signing). A tampered trail fails the audit check until
// restart: a later append that succeeds would clear it, and the next
// head-signing attempt set it again, so /readyz flapped. Restart, not
// "until it verifies again", because every way out (restoring the store,
// or starting the earlier version once) means restarting pamctl, whose
// keys, revocations and sessions in memory came from the tampered
// store, and because a writer who deletes their event again proves
// nothing about what happened in between.
func (a *App) auditFailed(err error) {
	if trailTampered(err) {
		a.health.FailSticky(checkAudit, err, tamperedTrailHint)
		return
	}
	a.health.Fail(checkAudit, err)
}

// trailTampered says whether err, reported by the audit log's background
// work (head signing), means the stored trail was tampered with: an
// event this deployment did not write, a deleted head, a trail below its
// high-water mark. Appends that succeed do not make it good again (see
// health.FailSticky).
func trailTampered(err error) bool { return errors.Is(err, store.ErrTampered) }

// openCounters opens the proxy's limit counters.
func (a *App) openCounters() (counterStore, error) {
	onErr := func(err error) { a.log.Warn("limit counters not written; retrying", "err", err.Error()) }
	if a.etcd != nil {
		return a.etcd.Counters(etcdstore.CounterOptions{OnError: onErr})
	}
	return a.db.Counters(store.CounterOptions{OnError: onErr})
}

// issuerURL names the broker in the tokens it mints and the tokens its
// proxy accepts. One server: its own URL. Replicas on etcd behind a load
// balancer: `server` (the address everyone reaches them at) when set, so
// a token minted by one replica verifies at every replica; without it,
// every replica's own URL, which then must be the same on all of them
// (same broker.addr and TLS setting). serve --dev keeps its own URL: its
// embedded IdP lives there.
func (a *App) issuerURL() string {
	// The built-in default `server` names no load balancer: a replica left
	// with it (one server on etcd, a test) is its own issuer.
	if a.etcd != nil && !a.dev && a.cfg.Server != "" && a.cfg.Server != "http://"+DefaultBrokerAddr {
		return strings.TrimRight(a.cfg.Server, "/")
	}
	return a.BrokerURL()
}
