// Package etcdstore keeps pamctl's record-shaped state in an etcd v3
// cluster, so several broker replicas share it: requests and their
// indexes, sessions, signing keys (sealed, as store/ keeps them), vault
// entries and the master-key check, proxy enrollments and audit sink
// cursors. It implements the same consumer interfaces as store.DB
// (broker.Store, token.BatchKeyStore, vault.Store, link.Store,
// auditsink.CursorStore), with the same errors and the same record
// encoding (store.EncodeRecord), checked by store/storetest against both.
// It also feeds other replicas' changes to the broker (Watch) and tells
// the server when the cluster has no quorum (Available, Probe), so calls
// fail closed instead of hanging.
//
// Key layout under the prefix (default "/pamctl/"):
//
//	meta/version          schema version, decimal
//	meta/master_check     the vault's sealed master-key check (raw bytes)
//	meta/probe            time of the last write probe (RFC 3339), see Probe
//	requests/<id>         broker.Request (sealed: store.RecordKey)
//	req_idx/<index>/<key> the request indexes of store/request_index.go
//	                      (state, owner, party, due, grant, settled), empty
//	                      values, written in the same transaction as the
//	                      request
//	logins/<digest>       empty: a redeemed ID token, on a lease
//	sessions/<id>         broker.SessionRecord (sealed)
//	keys/<kid>            token.SealedKey
//	vault/<name>          vault.Entry (secret sealed under the master key)
//	proxies/<id>          link.Enrollment (sealed)
//	sinks/<name>          auditsink.Cursor
//
// The audit/, counters/ and election/ subtrees belong to the audit chain,
// the shared limit counters and leader election, kept elsewhere.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store"
)

// SchemaVersion is the key layout this build reads and writes; a cluster
// written by a newer pamctl is refused (store.ErrSchemaTooNew).
const SchemaVersion uint64 = 1

// DefaultPrefix is where pamctl's keys live when Config.Prefix is empty.
const DefaultPrefix = "/pamctl/"

// Defaults of Config's durations.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultOpTimeout   = 5 * time.Second
	DefaultCheckEvery  = 500 * time.Millisecond
)

// Config says how to reach the cluster.
type Config struct {
	Endpoints []string
	// Prefix is the key prefix; it must start and end with "/".
	Prefix      string
	DialTimeout time.Duration
	// TLS is the client's TLS (server CA, client certificate); nil: none.
	TLS      *tls.Config
	Username string
	Password string
	// OpTimeout bounds every operation, so callers never wait on a
	// cluster without quorum longer than this (default 5s).
	OpTimeout time.Duration
	// CheckEvery is how often the availability monitor reads with quorum
	// (default 500ms); OnAvailability hears every change of its verdict
	// (nil: available again). It runs on the monitor's goroutine.
	CheckEvery     time.Duration
	OnAvailability func(err error)
}

// ErrUnavailable means the cluster could not answer with quorum in time.
// It is broker.ErrStoreUnavailable, which the broker's API answers with
// 503 store_unavailable.
var ErrUnavailable = broker.ErrStoreUnavailable

// DB is an open etcd store.
type DB struct {
	cli    *clientv3.Client
	prefix string
	opTO   time.Duration
	// rk authenticates the records of sealedKinds; nil until
	// SetRecordKey, and those records are refused until then.
	rk atomic.Pointer[store.RecordKey]

	avail     atomic.Pointer[error] // nil pointer: available
	onAvail   func(error)
	availMu   sync.Mutex
	lastAvail error
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// ValidatePrefix checks a key prefix: it must start and end with "/" and
// hold no empty or dot segment (keys are compared as bytes: "/a" would
// also match "/ab/...").
func ValidatePrefix(p string) error {
	if len(p) < 1 || !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return fmt.Errorf("etcd prefix %q must start and end with \"/\" (e.g. %s)", p, DefaultPrefix)
	}
	if p != "/" {
		for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." {
				return fmt.Errorf("etcd prefix %q has an empty or dot segment", p)
			}
		}
	}
	for _, r := range p {
		if r < 0x21 || r == 0x7f {
			return fmt.Errorf("etcd prefix %q holds a space or control character", p)
		}
	}
	return nil
}

// Open connects to the cluster, checks (or writes, on a new cluster) the
// schema version, and starts the availability monitor. It fails when the
// cluster does not answer with quorum within DialTimeout + OpTimeout.
func Open(ctx context.Context, c Config) (*DB, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no endpoints")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if err := ValidatePrefix(c.Prefix); err != nil {
		return nil, fmt.Errorf("etcdstore: %w", err)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.CheckEvery <= 0 {
		c.CheckEvery = DefaultCheckEvery
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: c.Endpoints, DialTimeout: c.DialTimeout, TLS: c.TLS,
		Username: c.Username, Password: c.Password,
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		AutoSyncInterval:     0,
		PermitWithoutStream:  true,
		RejectOldCluster:     false,
		Context:              context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, connectError(c, err)
	}
	db := &DB{cli: cli, prefix: c.Prefix, opTO: c.OpTimeout, onAvail: c.OnAvailability, stop: make(chan struct{}), done: make(chan struct{})}
	if err := db.init(ctx, c.DialTimeout+c.OpTimeout); err != nil {
		cli.Close()
		return nil, err
	}
	go db.monitor(c.CheckEvery)
	return db, nil
}

// connectError names what to check when the client could not be made.
// With a username the client authenticates before it returns (clientv3.New
// runs Authenticate within DialTimeout), so a refused password fails here,
// once and at once, and so does a cluster that cannot be reached; the
// latter matches ErrUnavailable as it does without credentials, where
// init finds it.
func connectError(c Config, err error) error {
	eps := strings.Join(c.Endpoints, ",")
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("etcdstore: %s refused user %q: %w: check the username and password", eps, c.Username, err)
	case unavailable(err):
		return fmt.Errorf("etcdstore: %w (%s): check that the endpoints are right, the cluster has quorum, and the TLS and credentials match", ErrUnavailable, err)
	}
	return fmt.Errorf("etcdstore: connect to %s: %w", eps, err)
}

// init checks the schema version, writing it on a new cluster.
func (db *DB) init(ctx context.Context, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), wait)
	defer cancel()
	k := db.key("meta/version")
	want := strconv.FormatUint(SchemaVersion, 10)
	resp, err := db.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, want)).
		Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return fmt.Errorf("etcdstore: %w (%s): check that the endpoints are right, the cluster has quorum, and the TLS and credentials match", ErrUnavailable, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("etcdstore: %s vanished while opening", k)
	}
	got, err := strconv.ParseUint(string(kvs[0].Value), 10, 64)
	if err != nil {
		return fmt.Errorf("etcdstore: %s holds %q, not a schema version: is prefix %s another application's?", k, kvs[0].Value, db.prefix)
	}
	if got > SchemaVersion {
		return fmt.Errorf("%w (etcd schema %d under %s, this build reads up to %d): upgrade pamctl", store.ErrSchemaTooNew, got, db.prefix, SchemaVersion)
	}
	return nil
}

// Client is the etcd client, for the other users of the cluster (the
// audit chain, counters, election); they keep to their own subtrees.
func (db *DB) Client() *clientv3.Client { return db.cli }

// Prefix is the key prefix, ending in "/".
func (db *DB) Prefix() string { return db.prefix }

// OpTimeout is the bound on each operation.
func (db *DB) OpTimeout() time.Duration { return db.opTO }

// Close stops the monitor and closes the client.
func (db *DB) Close() error {
	var err error
	db.closeOnce.Do(func() {
		close(db.stop)
		<-db.done
		err = db.cli.Close()
	})
	return err
}

func (db *DB) key(rel string) string { return db.prefix + rel }

// op bounds one operation by OpTimeout and requires a leader, so a
// partitioned member answers at once with an error instead of waiting.
func (db *DB) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), db.opTO)
}

// wrap names the failed operation; errors of an unavailable cluster match
// ErrUnavailable and mark it unavailable until the monitor sees quorum.
func (db *DB) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	if unavailable(err) {
		db.setAvail(err)
		return fmt.Errorf("etcdstore: %s: %w (%v)", what, ErrUnavailable, err)
	}
	return fmt.Errorf("etcdstore: %s: %w", what, err)
}

// Probe writes meta/probe and reads it back with quorum: what /readyz's
// store check runs.
func (db *DB) Probe(ctx context.Context, now time.Time) error {
	ctx, cancel := db.op(ctx)
	defer cancel()
	k := db.key("meta/probe")
	if _, err := db.cli.Put(ctx, k, now.UTC().Format(time.RFC3339)); err != nil {
		return db.wrap("write probe", err)
	}
	if _, err := db.cli.Get(ctx, k); err != nil {
		return db.wrap("read probe", err)
	}
	return nil
}
