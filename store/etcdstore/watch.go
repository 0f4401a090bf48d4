package etcdstore

import (
	"context"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker"
)

var _ broker.Changes = (*DB)(nil)

// Watch feeds every write to requests/, sessions/ and keys/ (by any
// replica) to fn, in revision order, one at a time, until ctx ends; then
// it returns nil. It starts with a broker.ChangeAll (what was loaded
// before the watch began may be stale) and sends another whenever it
// resumes after changes it can no longer replay (the revision was
// compacted). A watch cut by a lost quorum resumes where it stopped once
// the cluster is back. One watch covers keys/ through sessions/ (so the
// audit/, counters/ and election/ subtrees, which sort before, are not
// watched).
func (db *DB) Watch(ctx context.Context, fn func(broker.Change)) error {
	db.watchFrom(ctx, 0, fn)
	return nil
}

// watchFrom is Watch resuming after revision rev (0: from now, with a
// ChangeAll first).
func (db *DB) watchFrom(ctx context.Context, rev int64, fn func(broker.Change)) {
	start, end := db.key("keys/"), db.key("sessions0") // '0' follows '/'
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if rev == 0 {
			cur, err := db.revision(ctx)
			if err != nil {
				if !sleep(ctx, backoff) {
					break
				}
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			rev = cur
			fn(broker.Change{Kind: broker.ChangeAll})
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := db.cli.Watch(wctx, start, clientv3.WithRange(end), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				rev = 0 // start over from now, and reload everything
				break
			}
			if resp.Err() != nil {
				break
			}
			backoff = 100 * time.Millisecond
			for _, ev := range resp.Events {
				if ch, ok := db.change(ev); ok {
					fn(ch)
				}
				rev = max(rev, ev.Kv.ModRevision)
			}
		}
		cancel()
		if !sleep(ctx, backoff) {
			break
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// revision is the cluster's current revision, read with quorum.
func (db *DB) revision(ctx context.Context) (int64, error) {
	octx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Get(octx, db.key("meta/version"))
	if err != nil {
		return 0, db.wrap("read revision", err)
	}
	return resp.Header.Revision, nil
}

// change turns one event into a broker.Change (ok false: not one the
// broker follows, or a record that does not decode, which is skipped as
// the readers of that record will report it).
func (db *DB) change(ev *clientv3.Event) (broker.Change, bool) {
	rel := strings.TrimPrefix(string(ev.Kv.Key), db.prefix)
	put := ev.Type == mvccpb.PUT
	switch {
	case strings.HasPrefix(rel, "requests/"):
		ch := broker.Change{Kind: broker.ChangeRequest, ID: strings.TrimPrefix(rel, "requests/")}
		if put {
			var r broker.Request
			if db.decode(rel, ev.Kv.Value, &r) == nil {
				ch.Request = &r
			}
		}
		return ch, true
	case strings.HasPrefix(rel, "sessions/"):
		ch := broker.Change{Kind: broker.ChangeSession, ID: strings.TrimPrefix(rel, "sessions/")}
		if put {
			var s broker.SessionRecord
			if db.decode(rel, ev.Kv.Value, &s) != nil {
				// Unreadable or failing its authenticator: drop it from
				// the cache, so the next use reads (and reports) the
				// record.
				return ch, true
			}
			ch.Session = &s
		}
		return ch, true
	case strings.HasPrefix(rel, "keys/"):
		return broker.Change{Kind: broker.ChangeKey, ID: strings.TrimPrefix(rel, "keys/")}, true
	}
	return broker.Change{}, false
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
