package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Available reports whether the cluster answered the last quorum read (or
// operation): nil when it did, else an error matching ErrUnavailable. It
// is an atomic load, cheap enough for every proxied call.
func (db *DB) Available() error {
	if p := db.avail.Load(); p != nil {
		return *p
	}
	return nil
}

// setAvail records the verdict and tells OnAvailability when it changes.
func (db *DB) setAvail(cause error) {
	var err error
	if cause != nil {
		err = fmt.Errorf("%w: %v", ErrUnavailable, cause)
		db.avail.Store(&err)
	} else {
		db.avail.Store(nil)
	}
	db.availMu.Lock()
	changed := (db.lastAvail == nil) != (err == nil)
	db.lastAvail = err
	db.availMu.Unlock()
	if changed && db.onAvail != nil {
		db.onAvail(err)
	}
}

// monitor reads meta/version with quorum every interval and records the
// verdict, so a lost quorum shows within about an election timeout plus
// one interval, and its return without anyone restarting anything.
func (db *DB) monitor(every time.Duration) {
	defer close(db.done)
	t := time.NewTicker(every)
	defer t.Stop()
	timeout := min(db.opTO, 2*time.Second)
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), timeout)
		_, err := db.cli.Get(ctx, db.key("meta/version"))
		cancel()
		if err != nil && !unavailable(err) {
			err = fmt.Errorf("quorum read: %w", err)
		}
		db.setAvail(err)
	}
}

// unavailable tells a cluster that cannot answer (no leader, no quorum,
// unreachable, timed out) from a refused operation.
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) ||
		errors.Is(err, rpctypes.ErrGRPCNoLeader) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrGRPCTimeout) || errors.Is(err, rpctypes.ErrLeaderChanged) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) {
		return true
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return true
		}
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		switch ee.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return true
		}
	}
	return false
}
