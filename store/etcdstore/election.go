package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Leader election keys, under the store prefix P:
//
//	P election/<lease id, hex>  -> the candidate's id (host:pid), one per
//	                               campaigning replica, bound to its session
//	                               lease; the oldest key is the leader
//	                               (go.etcd.io/etcd/client/v3/concurrency)
const electionDir = "election/"

// DefaultLeaderTTL is the session TTL of a campaign: how long a dead
// leader's work stays unclaimed at most.
const DefaultLeaderTTL = 5 * time.Second

// Election campaigns for this replica to run the cluster's background work
// (expiry sweeps, retention, the signed-head timer). It implements Leader.
//
// At most one replica leads at a time, with one caveat every lease-based
// election has: a leader cut off from the cluster learns it lost its lease
// only when its client's keep-alive deadline passes, about when the lease
// expires on the servers, so for a moment (network delay) two replicas may
// both believe they lead. The work they gate is safe to run twice: every
// write it does is a compare-and-swap.
type Election struct {
	cli    *clientv3.Client
	prefix string
	id     string
	ttl    int
	change func(leading bool)

	leading atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	resign  func()
}

var _ Leader = (*Election)(nil)

// ElectionOptions tunes Campaign.
type ElectionOptions struct {
	// TTL is the session lease (default DefaultLeaderTTL, at least 1s).
	TTL time.Duration
	// OnChange hears every change of this replica's leadership; it runs
	// on the campaign's goroutine and must not block.
	OnChange func(leading bool)
	// OnError hears failures to reach the cluster (the campaign retries).
	OnError func(error)
}

// Campaign starts campaigning in db's cluster as id (a name people can
// read: host and pid) and returns at once; IsLeader says when it won.
func (db *DB) Campaign(id string, o ElectionOptions) *Election {
	return Campaign(db.cli, db.prefix, id, o)
}

// Campaign campaigns under prefix with cli (see DB.Campaign). Close ends
// it, resigning if it leads.
func Campaign(cli *clientv3.Client, prefix, id string, o ElectionOptions) *Election {
	ttl := int((o.TTL + time.Second - 1) / time.Second)
	if o.TTL <= 0 {
		ttl = int(DefaultLeaderTTL / time.Second)
	}
	ttl = max(ttl, 1)
	if o.OnChange == nil {
		o.OnChange = func(bool) {}
	}
	if o.OnError == nil {
		o.OnError = func(error) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Election{cli: cli, prefix: prefix, id: id, ttl: ttl, change: o.OnChange, cancel: cancel, done: make(chan struct{})}
	go e.run(ctx, o.OnError)
	return e
}

// IsLeader reports whether this replica leads now.
func (e *Election) IsLeader() bool { return e.leading.Load() }

// ID is the id this replica campaigns as.
func (e *Election) ID() string { return e.id }

func (e *Election) set(v bool) {
	if e.leading.Swap(v) != v {
		e.change(v)
	}
}

func (e *Election) run(ctx context.Context, onError func(error)) {
	defer close(e.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := e.term(ctx)
		e.set(false)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			onError(fmt.Errorf("etcdstore: leader election: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// term is one session: campaign, lead until the session ends, resign.
func (e *Election) term(ctx context.Context) error {
	s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(e.ttl), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close() // revokes the lease when the cluster is reachable
	// Campaign waits for older candidates' keys to go; it must stop too
	// when this session's lease is lost.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	el := concurrency.NewElection(s, e.prefix+electionDir)
	if err := el.Campaign(cctx, e.id); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	select {
	case <-s.Done():
		return errors.New("session lease lost; campaigning again")
	default:
	}
	e.set(true)
	select {
	case <-s.Done():
		e.set(false)
		return errors.New("session lease lost while leading; campaigning again")
	case <-ctx.Done():
		e.set(false)
		// A clean stop hands over at once: resign, and revoke the lease
		// (the session's own Close cannot: its context ended).
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = el.Resign(rctx)
		_, _ = e.cli.Revoke(rctx, s.Lease())
		rcancel()
		return nil
	}
}

// Close stops campaigning and resigns if leading.
func (e *Election) Close() error {
	e.cancel()
	<-e.done
	return nil
}

// LeaderID returns the id of the replica that leads now ("" when none).
func (db *DB) LeaderID(ctx context.Context) (string, error) {
	return LeaderID(ctx, db.cli, db.prefix)
}

// LeaderID reads the current leader's id under prefix.
func LeaderID(ctx context.Context, cli *clientv3.Client, prefix string) (string, error) {
	resp, err := cli.Get(ctx, prefix+electionDir, clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("etcdstore: read the leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
