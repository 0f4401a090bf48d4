package etcdstore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
)

// Audit keys, under the store prefix P:
//
//	P audit/events/<seq, 20 digits>  -> the sealed line in a record:
//	                                     {"v":2,"d":<line>,"a":"<auth>"}
//	                                     with a RecordKey (auth: the event's
//	                                     authenticator, base64url, see
//	                                     store/audit_auth.go); without one,
//	                                     as earlier versions wrote every
//	                                     event, {"v":1,"d":<line>}, what
//	                                     bbolt's audit bucket holds
//	P audit/tip                      -> {"seq":N,"hash":H}: the link the next
//	                                     append chains to. Every append is a
//	                                     transaction guarded by the tip's
//	                                     mod revision (compare-and-swap), so
//	                                     concurrent replicas write one chain.
//	P audit/head                     -> audit.SignedHead (JSON): latest head
//	P audit/anchor                   -> audit.Anchor (JSON): retention cut
//
// Choice (docs/architecture.md): one chain appended by compare-and-swap on
// the tip, with group commit per replica: one committer goroutine per
// replica gathers every event that arrived while its previous transaction
// was in flight into the next one.
const (
	auditDir       = "audit/"
	auditEventsDir = auditDir + "events/"
	auditTipKey    = auditDir + "tip"
	auditHeadKey   = auditDir + "head"
	auditAnchorKey = auditDir + "anchor"
)

// Defaults of AuditOptions.
const (
	DefaultHeadEvery     = 1000
	DefaultHeadInterval  = 10 * time.Second
	DefaultAuditQueue    = 16384
	DefaultCommitTimeout = 5 * time.Second
	// DefaultMaxBatch keeps a transaction (its events, the tip and maybe the
	// first head) within etcd's default --max-txn-ops of 128.
	DefaultMaxBatch = 120
	// maxBatchBytes keeps a transaction under etcd's default
	// --max-request-bytes (1.5 MiB) with room for the envelope.
	maxBatchBytes = 1 << 20
	rangeChunk    = 512
)

// Leader says whether this replica runs the cluster's background work
// (here: the signed-head timer). A nil Leader means always.
type Leader interface {
	IsLeader() bool
}

// AuditOptions configures an AuditLog; the zero value is a durable log with
// unsigned heads. The fields mean what they mean in store.AuditOptions.
type AuditOptions struct {
	Sync             audit.SyncMode
	Signer           audit.HeadSigner
	HeadEvery        int
	HeadInterval     time.Duration
	Clock            func() time.Time
	QueueSize        int
	SubscriberBuffer int
	OnError          func(error)
	OnBatch          func(events int)
	Inspect          bool
	// RecordKey (32 bytes, vault.DerivedKey(store.AuditRecordKeyPurpose),
	// the same on every replica) authenticates every event a replica
	// writes, in the event's own record: no replica signs a head (or a
	// retention anchor) over an event past the last signed head whose
	// authenticator is missing or wrong, and opening refuses such a trail
	// (store.ErrUnauthenticated; an Inspect log reports it through OnError).
	// See store/audit_auth.go. nil: none (tests).
	RecordKey []byte
	// Leader gates the head timer and the every-HeadEvery signing to one
	// replica (nil: this one). The first head is signed in the transaction
	// of the first event by whichever replica writes it, and any replica
	// signs on Export, Prune and Close.
	Leader Leader
	// CommitTimeout bounds one transaction: when etcd has no quorum an
	// append fails after it instead of hanging (default 5s).
	CommitTimeout time.Duration
	// MaxBatch bounds the events of one transaction (default 120; must stay
	// below the cluster's --max-txn-ops minus 2).
	MaxBatch int

	newTicker  func(time.Duration) (<-chan time.Time, func())
	headSigned func(audit.SignedHead)
	// wrap names etcd errors and reports unavailability (DB.wrap); nil:
	// plain wrapping.
	wrap func(what string, err error) error
}

// AuditLog is the audit trail on etcd: one hash chain that any number of
// replicas append to.
type AuditLog struct {
	cli    *clientv3.Client
	prefix string
	opts   AuditOptions
	clock  func() time.Time
	hub    *audit.Broadcaster
	hw     audit.HighWater

	mu     sync.RWMutex // appends hold it shared, Close exclusive
	closed bool

	queue   chan *pendingAppend
	stop    chan struct{}
	loops   sync.WaitGroup
	watchWG sync.WaitGroup
	kick    chan struct{}

	// committer state (committer goroutine only)
	tip      audit.Link
	tipRev   int64
	tipKnown bool
	mac      *store.EventMAC // nil without a RecordKey

	signedSeq atomic.Uint64
	published atomic.Uint64 // highest seq handed to hub (watch recovery)

	asyncMu  sync.Mutex
	asyncErr error

	headMu  sync.Mutex
	pruneMu sync.Mutex

	watchCancel context.CancelFunc
}

var (
	_ audit.Log  = (*AuditLog)(nil)
	_ audit.Sink = (*AuditLog)(nil)
)

type pendingAppend struct {
	d    *audit.Draft
	done chan error // nil in async mode
	at   sealedAt
}

type sealedAt struct {
	seq        uint64
	prev, hash string
	head       *audit.SignedHead
}

// snapshot is the chain's metadata read at one revision.
type snapshot struct {
	rev     int64
	tip     audit.Link
	tipRev  int64
	head    *audit.SignedHead
	headRev int64
	anchor  *audit.Anchor
	anchRev int64
}

// AuditLog opens the audit trail kept in db (see OpenAuditLog). Commit
// errors of an unavailable cluster match ErrUnavailable and mark db
// unavailable, as every other operation does.
func (db *DB) AuditLog(ctx context.Context, opts AuditOptions) (*AuditLog, error) {
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = db.opTO
	}
	opts.wrap = db.wrap
	return OpenAuditLog(ctx, db.cli, db.prefix, opts)
}

// OpenAuditLog opens the trail stored under prefix. One per replica; Close
// it before closing cli.
func OpenAuditLog(ctx context.Context, cli *clientv3.Client, prefix string, opts AuditOptions) (*AuditLog, error) {
	mode, err := audit.ParseSyncMode(string(opts.Sync))
	if err != nil {
		return nil, err
	}
	opts.Sync = mode
	if opts.HeadEvery <= 0 {
		opts.HeadEvery = DefaultHeadEvery
	}
	if opts.HeadInterval <= 0 {
		opts.HeadInterval = DefaultHeadInterval
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultAuditQueue
	}
	if opts.OnError == nil {
		opts.OnError = func(error) {}
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = DefaultCommitTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.wrap == nil {
		opts.wrap = func(what string, err error) error { return fmt.Errorf("etcdstore: %s: %w", what, err) }
	}
	if opts.newTicker == nil {
		opts.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	l := &AuditLog{cli: cli, prefix: prefix, opts: opts, clock: opts.Clock,
		queue: make(chan *pendingAppend, opts.QueueSize), stop: make(chan struct{}), kick: make(chan struct{}, 1)}
	l.hw, _ = opts.Signer.(audit.HighWater)
	l.mac = store.NewEventMAC(opts.RecordKey)

	s, err := l.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if !opts.Inspect && opts.Signer != nil {
		if err := l.checkHighWater(ctx, s); err != nil {
			return nil, err
		}
		if s.head == nil && s.tip.Seq > 0 {
			return nil, l.headMissing(s.tip)
		}
		if err := l.checkAuthenticated(ctx, s); err != nil {
			return nil, err
		}
	}
	if opts.Inspect {
		if err := l.checkAuthenticated(ctx, s); err != nil {
			opts.OnError(err) // verify shows the events unsigned, and says what they are
		}
	}
	if l.hw != nil && s.head != nil && !opts.Inspect {
		if seq, _, ok := l.hw.HighWater(); !ok || seq < s.head.Seq {
			if err := l.hw.RaiseHighWater(ctx, s.head.KID, s.head.Seq, s.head.Hash); err != nil {
				return nil, fmt.Errorf("etcdstore: audit: raise high-water mark: %w", err)
			}
		}
	}
	if s.head != nil {
		l.signedSeq.Store(s.head.Seq)
	}
	l.tip, l.tipRev, l.tipKnown = s.tip, s.tipRev, true
	l.published.Store(s.tip.Seq)
	l.hub = audit.NewBroadcaster(s.tip.Seq, l.rangeTo, opts.SubscriberBuffer)

	wctx, cancel := context.WithCancel(context.Background())
	l.watchCancel = cancel
	l.watchWG.Add(1)
	go l.watch(wctx, s.rev+1)

	l.loops.Add(1)
	go l.committer()
	if opts.Signer != nil {
		if s.head == nil || s.head.Seq < s.tip.Seq {
			l.kickSigner()
		}
		tick, stopTick := opts.newTicker(opts.HeadInterval)
		l.loops.Add(1)
		go l.headLoop(tick, stopTick)
	}
	return l, nil
}

func (l *AuditLog) key(k string) string { return l.prefix + k }

func (l *AuditLog) eventKey(seq uint64) string {
	return l.prefix + auditEventsDir + fmt.Sprintf("%020d", seq)
}

func (l *AuditLog) eventsEnd() string { return clientv3.GetPrefixRangeEnd(l.prefix + auditEventsDir) }

func seqOfKey(prefix string, k []byte) (uint64, error) {
	s := string(k[len(prefix)+len(auditEventsDir):])
	return strconv.ParseUint(s, 10, 64)
}

// snapshot reads tip, head and anchor at one revision.
func (l *AuditLog) snapshot(ctx context.Context) (snapshot, error) {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), l.opts.CommitTimeout)
	defer cancel()
	resp, err := l.cli.Txn(ctx).Then(
		clientv3.OpGet(l.key(auditTipKey)),
		clientv3.OpGet(l.key(auditHeadKey)),
		clientv3.OpGet(l.key(auditAnchorKey)),
	).Commit()
	if err != nil {
		return snapshot{}, l.opts.wrap("audit: read the chain's tip", err)
	}
	s := snapshot{rev: resp.Header.Revision}
	return s, s.fill(gets(resp))
}

// gets returns the range responses of a transaction's branch.
func gets(resp *clientv3.TxnResponse) []*clientv3.GetResponse {
	out := make([]*clientv3.GetResponse, len(resp.Responses))
	for i, r := range resp.Responses {
		out[i] = (*clientv3.GetResponse)(r.GetResponseRange())
	}
	return out
}

// fill decodes the responses of the three gets snapshot and the Else of an
// append issue: tip, head, anchor (head and anchor may be missing).
func (s *snapshot) fill(rs []*clientv3.GetResponse) error {
	get := func(i int) *clientv3.GetResponse {
		if i >= len(rs) {
			return nil
		}
		return rs[i]
	}
	s.tip, s.tipRev = audit.Link{Hash: audit.GenesisHash}, 0
	if r := get(0); r != nil && len(r.Kvs) == 1 {
		var t audit.Link
		if err := json.Unmarshal(r.Kvs[0].Value, &t); err != nil || !validHash(t.Hash) {
			return fmt.Errorf("etcdstore: audit: the chain's tip record is damaged (%q): run pamctl audit verify", r.Kvs[0].Value)
		}
		s.tip, s.tipRev = t, r.Kvs[0].ModRevision
	}
	s.head, s.headRev = nil, 0
	if r := get(1); r != nil && len(r.Kvs) == 1 {
		var h audit.SignedHead
		if err := json.Unmarshal(r.Kvs[0].Value, &h); err != nil {
			return fmt.Errorf("etcdstore: audit: decode the signed head: %w", err)
		}
		s.head, s.headRev = &h, r.Kvs[0].ModRevision
	}
	s.anchor, s.anchRev = nil, 0
	if r := get(2); r != nil && len(r.Kvs) == 1 {
		var a audit.Anchor
		if err := json.Unmarshal(r.Kvs[0].Value, &a); err != nil {
			return fmt.Errorf("etcdstore: audit: decode the retention anchor: %w", err)
		}
		s.anchor, s.anchRev = &a, r.Kvs[0].ModRevision
	}
	return nil
}

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// Append records e. In durable mode it returns once etcd committed the
// transaction holding it (a quorum of members has it in its WAL), sharing
// the transaction with every event this replica received while its
// previous transaction was in flight, and sets e.Seq, e.PrevHash, e.Hash.
// In async mode it returns once e is queued.
func (l *AuditLog) Append(ctx context.Context, e *audit.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := audit.NewDraft(e, l.clock())
	if err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return audit.ErrClosed
	}
	p := &pendingAppend{d: d}
	if l.opts.Sync == audit.SyncAsync {
		if err := l.writeErr(); err != nil {
			return err
		}
	} else {
		p.done = make(chan error, 1)
	}
	select {
	case l.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.done == nil {
		return nil
	}
	// Wait for the outcome even if ctx ends: the event may be committed,
	// and Close must not race the committer.
	if err := <-p.done; err != nil {
		return fmt.Errorf("etcdstore: audit append: %w", err)
	}
	e.Seq, e.PrevHash, e.Hash = p.at.seq, p.at.prev, p.at.hash
	return l.raiseFirst(p.at.head)
}

func (l *AuditLog) writeErr() error {
	l.asyncMu.Lock()
	defer l.asyncMu.Unlock()
	return l.asyncErr
}

// QueueDepth is the number of async events not yet committed (0 in durable
// mode).
func (l *AuditLog) QueueDepth() int {
	if l.opts.Sync != audit.SyncAsync {
		return 0
	}
	return len(l.queue)
}

// committer is the replica's one writer: it takes what is queued, commits
// it in one transaction, and repeats, so events that arrive while a
// transaction is in flight share the next one.
func (l *AuditLog) committer() {
	defer l.loops.Done()
	batch := make([]*pendingAppend, 0, l.opts.MaxBatch)
	for first := range l.queue {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < l.opts.MaxBatch {
			select {
			case p, ok := <-l.queue:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		l.commitBatch(batch)
		clear(batch)
	}
}

// commitBatch chains batch after the tip and commits it in one
// transaction, retrying when another replica moved the tip first.
func (l *AuditLog) commitBatch(batch []*pendingAppend) {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), l.opts.CommitTimeout)
	defer cancel()
	err := l.commitOnce(ctx, batch)
	if err == nil {
		for _, p := range batch {
			if p.done != nil {
				p.done <- nil
			}
		}
		if l.opts.OnBatch != nil {
			l.opts.OnBatch(len(batch))
		}
		return
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		}
	}
	if l.opts.Sync == audit.SyncAsync {
		err = fmt.Errorf("etcdstore: audit async commit of %d events: %w", len(batch), err)
		l.asyncMu.Lock()
		if l.asyncErr == nil {
			l.asyncErr = err
		}
		l.asyncMu.Unlock()
	}
	l.opts.OnError(err)
}

func (l *AuditLog) commitOnce(ctx context.Context, batch []*pendingAppend) error {
	lines := make([][]byte, len(batch))
	for attempt := 0; ; attempt++ {
		if !l.tipKnown {
			s, err := l.snapshot(ctx)
			if err != nil {
				return err
			}
			l.tip, l.tipRev, l.tipKnown = s.tip, s.tipRev, true
		}
		tip := l.tip
		ops := make([]clientv3.Op, 0, len(batch)+2)
		prev := tip.Hash
		bytes := 0
		for i, p := range batch {
			seq := tip.Seq + 1 + uint64(i)
			rec, hash, err := sealRecord(p.d, seq, prev, l.mac)
			if err != nil {
				return err
			}
			bytes += len(rec)
			lines[i] = rec
			p.at = sealedAt{seq: seq, prev: prev, hash: hash}
			ops = append(ops, clientv3.OpPut(l.eventKey(seq), string(rec)))
			prev = hash
		}
		if bytes > maxBatchBytes && len(batch) > 1 {
			// Too big for one request: commit in halves, in order.
			half := len(batch) / 2
			if err := l.commitOnce(ctx, batch[:half]); err != nil {
				return err
			}
			return l.commitOnce(ctx, batch[half:])
		}
		last := batch[len(batch)-1].at
		newTip, _ := json.Marshal(audit.Link{Seq: last.seq, Hash: last.hash})
		ops = append(ops, clientv3.OpPut(l.key(auditTipKey), string(newTip)))
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(l.key(auditTipKey)), "=", l.tipRev),
			// No event past the tip: a deleted tip record never makes an
			// append overwrite stored events.
			clientv3.Compare(clientv3.CreateRevision(l.eventKey(tip.Seq+1)), "=", 0).WithRange(l.eventsEnd()),
		}
		var first *audit.SignedHead
		if tip.Seq == 0 && l.opts.Signer != nil && !l.opts.Inspect {
			// The first head goes in the transaction of the first event
			// (as in bbolt): a trail with events and no head had it deleted.
			h := &audit.SignedHead{Seq: batch[0].at.seq, Hash: batch[0].at.hash, Time: l.clock().UTC()}
			if err := h.Sign(l.opts.Signer); err != nil {
				return err
			}
			hb, _ := json.Marshal(h)
			ops = append(ops, clientv3.OpPut(l.key(auditHeadKey), string(hb)))
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(l.key(auditHeadKey)), "=", 0))
			first = h
		}
		resp, err := l.cli.Txn(ctx).If(cmps...).Then(ops...).Else(
			clientv3.OpGet(l.key(auditTipKey)), clientv3.OpGet(l.key(auditHeadKey)), clientv3.OpGet(l.key(auditAnchorKey)),
		).Commit()
		if err != nil {
			l.tipKnown = false // the outcome is unknown: read the tip again
			return l.opts.wrap("audit: commit", err)
		}
		if resp.Succeeded {
			l.tip, l.tipRev = audit.Link{Seq: last.seq, Hash: last.hash}, resp.Header.Revision
			batch[0].at.head = first
			if first != nil {
				l.signedSeq.CompareAndSwap(0, first.Seq)
				if l.opts.headSigned != nil {
					l.opts.headSigned(*first)
				}
			}
			l.publish(batch)
			return nil
		}
		var s snapshot
		if err := s.fill(gets(resp)); err != nil {
			return err
		}
		if s.tipRev == l.tipRev {
			if tip.Seq == 0 && s.head != nil {
				return fmt.Errorf("etcdstore: audit: the trail has a signed head (seq %d) but no events: it was truncated. Run `pamctl audit verify`", s.head.Seq)
			}
			return fmt.Errorf("etcdstore: audit: events are stored past the chain's tip (seq %d): the tip record was deleted or rolled back. Run `pamctl audit verify`", tip.Seq)
		}
		l.tip, l.tipRev = s.tip, s.tipRev // another replica appended: chain after it
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// publish hands committed events to local subscribers and kicks the head
// signer every HeadEvery events.
func (l *AuditLog) publish(batch []*pendingAppend) {
	evs := make([]audit.Event, len(batch))
	for i, p := range batch {
		evs[i] = p.d.Event(p.at.seq, p.at.prev, p.at.hash)
	}
	l.hub.Publish(evs...)
	l.notePublished(evs[len(evs)-1].Seq)
}

func (l *AuditLog) notePublished(seq uint64) {
	for {
		cur := l.published.Load()
		if seq <= cur || l.published.CompareAndSwap(cur, seq) {
			break
		}
	}
	if signed := l.signedSeq.Load(); l.opts.Signer != nil && seq >= signed+uint64(l.opts.HeadEvery) && l.leading() {
		l.kickSigner()
	}
}

func (l *AuditLog) leading() bool { return l.opts.Leader == nil || l.opts.Leader.IsLeader() }

func (l *AuditLog) raiseFirst(h *audit.SignedHead) error {
	if h == nil || l.hw == nil {
		return nil
	}
	if err := l.hw.RaiseHighWater(context.Background(), h.KID, h.Seq, h.Hash); err != nil {
		return fmt.Errorf("etcdstore: audit: raise high-water mark: %w", err)
	}
	return nil
}

// watch publishes the events other replicas commit, from rev on. When the
// watch breaks (compaction, lost member) it catches up by reading the
// events after the last one published and watches again.
func (l *AuditLog) watch(ctx context.Context, rev int64) {
	defer l.watchWG.Done()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := l.cli.Watch(wctx, l.prefix+auditEventsDir, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithFilterDelete())
		for resp := range ch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				e, err := decodeEvent(ev.Kv.Value)
				if err != nil {
					l.opts.OnError(fmt.Errorf("etcdstore: audit watch: %w", err))
					continue
				}
				l.hub.Publish(e)
				l.notePublished(e.Seq)
			}
			rev = resp.Header.Revision + 1
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		// Catch up from the store, then watch from after that read.
		next, err := l.catchUp(ctx)
		if err != nil {
			l.opts.OnError(fmt.Errorf("etcdstore: audit watch: %w", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		rev = next
	}
}

// catchUp publishes stored events after the last published one and returns
// the revision to watch from.
func (l *AuditLog) catchUp(ctx context.Context) (int64, error) {
	from := l.published.Load() + 1
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(l.eventsEnd()), clientv3.WithLimit(rangeChunk)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
		resp, err := l.cli.Get(cctx, l.eventKey(from), opts...)
		cancel()
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			e, err := decodeEvent(kv.Value)
			if err != nil {
				return 0, err
			}
			l.hub.Publish(e)
			l.notePublished(e.Seq)
			from = e.Seq + 1
		}
		if !resp.More {
			return rev + 1, nil
		}
	}
}

func (l *AuditLog) kickSigner() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *AuditLog) headLoop(tick <-chan time.Time, stopTick func()) {
	defer l.loops.Done()
	defer stopTick()
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-tick:
		}
		if !l.leading() {
			continue
		}
		if _, err := l.signHead(context.Background()); err != nil {
			l.opts.OnError(err)
		}
	}
}

// Close stops accepting events, commits what async mode still queues, signs
// the final head and ends every subscription. It does not close the client.
func (l *AuditLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.queue) // no Append holds the read lock: nobody sends any more
	l.mu.Unlock()
	close(l.stop)
	l.loops.Wait()
	err := l.writeErr()
	if l.opts.Signer != nil {
		if _, serr := l.signHead(context.Background()); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	l.watchCancel()
	l.watchWG.Wait()
	l.hub.Close()
	return err
}

// SignHead signs the current head now.
func (l *AuditLog) SignHead(ctx context.Context) (*audit.SignedHead, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, audit.ErrClosed
	}
	return l.signHead(ctx)
}

func (l *AuditLog) signHead(ctx context.Context) (*audit.SignedHead, error) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	for attempt := 0; ; attempt++ {
		s, err := l.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		if l.opts.Signer == nil || l.opts.Inspect {
			return s.head, nil // an inspecting log never signs over what it shows
		}
		if err := l.checkHighWater(ctx, s); err != nil {
			if errors.Is(err, ErrBelowHighWater) {
				var be *audit.BreakError
				errors.As(err, &be)
				return nil, fmt.Errorf("etcdstore: audit: refusing to sign a new head: %w (%w)", be, ErrBelowHighWater)
			}
			return nil, fmt.Errorf("etcdstore: audit: refusing to sign a new head: %w", err)
		}
		if s.head == nil {
			if s.tip.Seq > 0 {
				return nil, fmt.Errorf("etcdstore: audit: refusing to sign a new head: %w", l.headMissing(s.tip))
			}
			return nil, nil
		}
		if err := l.headStillStored(ctx, s); err != nil {
			return nil, err
		}
		if err := l.checkAuthenticated(ctx, s); err != nil {
			return nil, fmt.Errorf("etcdstore: audit: refusing to sign a new head: %w", err)
		}
		if s.head.Seq >= s.tip.Seq {
			l.signedSeq.Store(s.head.Seq)
			return s.head, nil
		}
		h := &audit.SignedHead{Seq: s.tip.Seq, Hash: s.tip.Hash, Time: l.clock().UTC()}
		if err := h.Sign(l.opts.Signer); err != nil {
			return nil, err
		}
		hb, _ := json.Marshal(h)
		cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
		resp, err := l.cli.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(l.key(auditHeadKey)), "=", s.headRev)).
			Then(clientv3.OpPut(l.key(auditHeadKey), string(hb))).Commit()
		cancel()
		if err != nil {
			return nil, l.opts.wrap("audit: store head", err)
		}
		if !resp.Succeeded {
			if attempt > 8 {
				return nil, errors.New("etcdstore: audit store head: the head keeps changing under this replica")
			}
			continue // another replica signed meanwhile: look again
		}
		if l.hw != nil {
			if err := l.hw.RaiseHighWater(context.Background(), h.KID, h.Seq, h.Hash); err != nil {
				return nil, fmt.Errorf("etcdstore: audit: raise high-water mark: %w", err)
			}
		}
		l.signedSeq.Store(h.Seq)
		if l.opts.headSigned != nil {
			l.opts.headSigned(*h)
		}
		return h, nil
	}
}

// ErrHeadMissing means the trail has events but no signed head: the head
// was deleted (the first head is written with the first event).
var ErrHeadMissing error = store.TrailTampered("etcdstore: audit trail has events but no signed head")

func (l *AuditLog) headMissing(tip audit.Link) error {
	return fmt.Errorf("%w: %saudit/ holds events through seq %d and no signed head; the head was deleted from etcd (pamctl signs one with the very first event). Run `pamctl audit verify` to see the damage, and restore etcd from a snapshot", ErrHeadMissing, l.prefix, tip.Seq)
}

// ErrBelowHighWater means the stored trail falls short of its authenticated
// high-water mark. It wraps an *audit.BreakError.
var ErrBelowHighWater error = store.TrailTampered("etcdstore: audit trail is shorter than its high-water mark")

type highWaterError struct{ be *audit.BreakError }

func (e *highWaterError) Error() string {
	return fmt.Sprintf("etcdstore: audit: the trail is shorter than the high-water mark in the signing key's authenticated record (seq %d: expected %s, found %s): events, the signed head or the anchor were deleted, or etcd was rolled back. Run `pamctl audit verify` to see what is missing, and restore etcd from a snapshot",
		e.be.Seq, e.be.Expected, e.be.Found)
}
func (e *highWaterError) Unwrap() error { return e.be }
func (e *highWaterError) Is(target error) bool {
	return target == ErrBelowHighWater || target == store.ErrTampered
}

// lineAt returns the stored line of seq at revision rev (nil when absent).
func (l *AuditLog) lineAt(ctx context.Context, seq uint64, rev int64) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
	defer cancel()
	opts := []clientv3.OpOption{}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := l.cli.Get(cctx, l.eventKey(seq), opts...)
	if err != nil {
		return nil, l.opts.wrap(fmt.Sprintf("audit seq %d", seq), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return recordLine(resp.Kvs[0].Value)
}

func foreignSignature(what string, err error) error {
	return fmt.Errorf("etcdstore: audit: the trail's %s is not signed by a key of this deployment (%w): the signing key's record was deleted or replaced, or the trail comes from another deployment. Run `pamctl audit verify` to see the damage", what, err)
}

// checkHighWater compares the chain in s with the mark (see store's).
func (l *AuditLog) checkHighWater(ctx context.Context, s snapshot) error {
	if l.hw == nil {
		return nil
	}
	keys := audit.KeyFunc(l.hw.AnyPublicKey)
	if s.head != nil {
		if err := s.head.Check(keys); err != nil {
			return foreignSignature("head", err)
		}
	}
	if s.anchor != nil && s.anchor.Sig != nil {
		if err := s.anchor.Check(keys); err != nil {
			return foreignSignature("retention anchor", err)
		}
	}
	seq, hash, ok := l.hw.HighWater()
	if !ok {
		return nil
	}
	fail := func(at uint64, expected, found string) error {
		return &highWaterError{&audit.BreakError{Seq: at, Kind: audit.BreakHighWater, Expected: expected, Found: found}}
	}
	if s.tip.Seq < seq {
		found := fmt.Sprintf("last event seq %d", s.tip.Seq)
		if s.tip.Seq == 0 {
			found = "no events"
		}
		return fail(s.tip.Seq+1, fmt.Sprintf("events through seq %d (a head was signed there)", seq), found)
	}
	line, err := l.lineAt(ctx, seq, s.rev)
	if err != nil {
		return err
	}
	if line != nil {
		if h := audit.StoredHash(line); h != hash {
			return fail(seq, "hash "+hash, h)
		}
	} else if a := s.anchor; a == nil || a.Seq < seq || (a.Seq == seq && a.Hash != hash) {
		return fail(seq, fmt.Sprintf("the event at seq %d, or a retention anchor past it", seq), "neither")
	}
	if s.head == nil || s.head.Seq < seq {
		found := "no signed head"
		if s.head != nil {
			found = fmt.Sprintf("a signed head at seq %d", s.head.Seq)
		}
		return fail(seq, fmt.Sprintf("a signed head at or after seq %d", seq), found)
	}
	return nil
}

// headStillStored refuses to sign over a chain that lost the previously
// signed head.
func (l *AuditLog) headStillStored(ctx context.Context, s snapshot) error {
	cur := s.head
	refuse := func(found string) error {
		return fmt.Errorf("etcdstore: audit: refusing to sign a new head: %w", &audit.BreakError{
			Seq: cur.Seq, Kind: audit.BreakHead, Expected: "hash " + cur.Hash + " (previous signed head)", Found: found})
	}
	switch {
	case cur.Seq > s.tip.Seq:
		return refuse(fmt.Sprintf("last event seq %d", s.tip.Seq))
	case cur.Seq == s.tip.Seq:
		if s.tip.Hash != cur.Hash {
			return refuse(s.tip.Hash)
		}
		return nil
	}
	line, err := l.lineAt(ctx, cur.Seq, s.rev)
	if err != nil {
		return err
	}
	if line == nil {
		if s.anchor != nil && cur.Seq <= s.anchor.Seq {
			return nil
		}
		return refuse("no event")
	}
	if h := audit.StoredHash(line); h != cur.Hash {
		return refuse(h)
	}
	return nil
}

// checkAuthenticated checks, at s's revision, that every event stored
// after the last signed head carries its authenticator, and that the tip
// names one of them (nothing without a RecordKey or a head): a head is
// signed over the tip, so a tip record naming a hash no event of this
// deployment has would have a head signed over a writer's event too.
// See store/audit_auth.go.
func (l *AuditLog) checkAuthenticated(ctx context.Context, s snapshot) error {
	if l.opts.RecordKey == nil || s.head == nil {
		return nil
	}
	from := s.head.Seq
	mac := store.NewEventMAC(l.opts.RecordKey)
	tipSeen := s.tip.Seq <= from
	for kv, err := range l.records(ctx, from+1, s.rev) {
		if err != nil {
			return err
		}
		seq, err := seqOfKey(l.prefix, kv.Key)
		if err != nil {
			return fmt.Errorf("etcdstore: audit: bad event key %q", kv.Key)
		}
		line, got, err := parseRecord(kv.Value)
		if err != nil {
			return fmt.Errorf("%w (audit seq %d)", err, seq)
		}
		hash := audit.StoredHash(line)
		if !hmac.Equal(got, mac.Of(seq, hash)) {
			what := "its authenticator is wrong"
			if got == nil {
				what = "it has no authenticator"
			}
			return l.unauthenticated(fmt.Sprintf("%s holds event seq %d after the last signed head (seq %d), and %s", l.eventKey(seq), seq, from, what))
		}
		if seq == s.tip.Seq && hash == s.tip.Hash {
			tipSeen = true
		}
	}
	if !tipSeen {
		return fmt.Errorf("%w: the chain's tip record (%s), which the next head is signed over, names seq %d with hash %s after the last signed head (seq %d), and no event stored there has that hash: a writer of etcd under %s rewrote the tip record or deleted the event, and no replica signs a head over it. Run `pamctl audit verify` to see the events after the last signed head, and restore etcd from a snapshot taken before the change (etcdctl snapshot restore)",
			store.ErrUnauthenticated, l.key(auditTipKey), s.tip.Seq, s.tip.Hash, from, l.prefix)
	}
	return nil
}

// unauthenticated is checkAuthenticated's error: what it found, what it
// means and what to do.
func (l *AuditLog) unauthenticated(found string) error {
	return fmt.Errorf("%w: %s: it was written by a writer of etcd under %s, not by pamctl, and no replica signs a head over it. Run `pamctl audit verify` to see the events after the last signed head. If they are pamctl's (written by an earlier version that did not authenticate events and did not sign them: replicas of that version still running, a crash just before the upgrade, or an etcd snapshot it wrote, restored) and your sinks or off-host anchors show the same events, stop every replica, start that earlier version once and stop it cleanly, which signs them, then start this one on every replica; otherwise restore etcd from a snapshot taken before them (etcdctl snapshot restore)",
		store.ErrUnauthenticated, found, l.prefix)
}

// Range calls fn for each event with seq >= fromSeq, in seq order, until fn
// returns false.
func (l *AuditLog) Range(ctx context.Context, fromSeq uint64, fn func(audit.Event) bool) error {
	return l.rangeTo(ctx, fromSeq, math.MaxUint64, fn)
}

func (l *AuditLog) rangeTo(ctx context.Context, from, to uint64, fn func(audit.Event) bool) error {
	for line, err := range l.lines(ctx, max(from, 1), 0) {
		if err != nil {
			return err
		}
		var e audit.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("etcdstore: decode audit event: %w", err)
		}
		if e.Seq > to || !fn(e) {
			return nil
		}
	}
	return nil
}

// lines yields the stored lines from seq from on, in pages read at revision
// rev (0: the first page's revision, so the whole walk is one snapshot).
func (l *AuditLog) lines(ctx context.Context, from uint64, rev int64) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for kv, err := range l.records(ctx, from, rev) {
			if err != nil {
				yield(nil, err)
				return
			}
			line, err := recordLine(kv.Value)
			if err != nil {
				seq, _ := seqOfKey(l.prefix, kv.Key)
				err = fmt.Errorf("%w (audit seq %d)", err, seq)
			}
			if !yield(line, err) || err != nil {
				return
			}
		}
	}
}

// records yields the stored event records from seq from on, as lines
// does.
func (l *AuditLog) records(ctx context.Context, from uint64, rev int64) iter.Seq2[*mvccpb.KeyValue, error] {
	return func(yield func(*mvccpb.KeyValue, error) bool) {
		next := l.eventKey(from)
		for {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			opts := []clientv3.OpOption{clientv3.WithRange(l.eventsEnd()), clientv3.WithLimit(rangeChunk)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
			resp, err := l.cli.Get(cctx, next, opts...)
			cancel()
			if err != nil {
				yield(nil, l.opts.wrap("audit read", err))
				return
			}
			if rev == 0 {
				rev = resp.Header.Revision
			}
			for _, kv := range resp.Kvs {
				if !yield(kv, nil) {
					return
				}
			}
			if !resp.More || len(resp.Kvs) == 0 {
				return
			}
			next = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
}

// Last returns the last n events in seq order.
func (l *AuditLog) Last(ctx context.Context, n int) ([]audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
	defer cancel()
	resp, err := l.cli.Get(cctx, l.prefix+auditEventsDir, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(n)))
	if err != nil {
		return nil, l.opts.wrap("audit read", err)
	}
	out := make([]audit.Event, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		e, err := decodeEvent(kv.Value)
		if err != nil {
			return nil, err
		}
		out[len(out)-1-i] = e
	}
	return out, nil
}

// Get returns the event at seq, or an error matching audit.ErrNotFound.
func (l *AuditLog) Get(ctx context.Context, seq uint64) (audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return audit.Event{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
	defer cancel()
	resp, err := l.cli.Get(cctx, l.eventKey(seq))
	if err != nil {
		return audit.Event{}, l.opts.wrap("audit read", err)
	}
	if len(resp.Kvs) == 0 {
		return audit.Event{}, fmt.Errorf("etcdstore: audit seq %d: %w", seq, audit.ErrNotFound)
	}
	return decodeEvent(resp.Kvs[0].Value)
}

// Subscribe follows the log from fromSeq: stored events first, then new
// ones as any replica commits them (etcd watch), without gaps or
// duplicates.
func (l *AuditLog) Subscribe(ctx context.Context, fromSeq uint64) *audit.Subscription {
	return l.hub.Subscribe(ctx, fromSeq)
}

// Head describes the stored chain.
func (l *AuditLog) Head(ctx context.Context) (audit.Status, error) {
	if err := ctx.Err(); err != nil {
		return audit.Status{}, err
	}
	s, err := l.snapshot(ctx)
	if err != nil {
		return audit.Status{}, err
	}
	st := audit.Status{Last: s.tip, Head: s.head, Anchor: s.anchor}
	cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
	defer cancel()
	resp, err := l.cli.Get(cctx, l.prefix+auditEventsDir, clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly(), clientv3.WithRev(s.rev))
	if err != nil {
		return st, l.opts.wrap("audit read", err)
	}
	if len(resp.Kvs) == 1 {
		if st.First, err = seqOfKey(l.prefix, resp.Kvs[0].Key); err != nil {
			return st, fmt.Errorf("etcdstore: audit: bad event key %q", resp.Kvs[0].Key)
		}
	}
	return st, nil
}

// Prune deletes every event before the first one at or after before,
// records the cut as the retention anchor (signed when a Signer is set) and
// appends an audit.anchor event naming it, in one transaction guarded by
// the tip and the anchor.
func (l *AuditLog) Prune(ctx context.Context, before time.Time) (audit.PruneResult, error) {
	if err := ctx.Err(); err != nil {
		return audit.PruneResult{}, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return audit.PruneResult{}, audit.ErrClosed
	}
	l.pruneMu.Lock()
	defer l.pruneMu.Unlock()
	for attempt := 0; ; attempt++ {
		s, err := l.snapshot(ctx)
		if err != nil {
			return audit.PruneResult{}, err
		}
		if l.opts.Signer != nil {
			// The anchor is signed over the last event it cuts, which may
			// be past the last signed head.
			if err := l.checkAuthenticated(ctx, s); err != nil {
				return audit.PruneResult{}, fmt.Errorf("etcdstore: audit: refusing to sign a retention anchor: %w", err)
			}
		}
		var first, cut uint64
		var cutHash string
		for line, err := range l.lines(ctx, 1, s.rev) {
			if err != nil {
				return audit.PruneResult{}, err
			}
			var e struct {
				Seq  uint64    `json:"seq"`
				Time time.Time `json:"time"`
				Hash string    `json:"hash"`
			}
			if err := json.Unmarshal(line, &e); err != nil {
				return audit.PruneResult{}, l.opts.wrap("audit prune", err)
			}
			if !e.Time.Before(before) {
				break
			}
			cut, cutHash = e.Seq, e.Hash
			if first == 0 {
				first = cut
			}
		}
		if cut == 0 {
			return audit.PruneResult{}, nil
		}
		now := l.clock().UTC()
		anchor := &audit.Anchor{Seq: cut, Hash: cutHash, Before: before.UTC(), Time: now}
		if l.opts.Signer != nil {
			if err := anchor.Sign(l.opts.Signer); err != nil {
				return audit.PruneResult{}, err
			}
		}
		deleted := cut - first + 1
		d, err := audit.NewDraft(audit.AnchorEvent(anchor, deleted), now)
		if err != nil {
			return audit.PruneResult{}, err
		}
		seq := s.tip.Seq + 1
		rec, hash, err := sealRecord(d, seq, s.tip.Hash, store.NewEventMAC(l.opts.RecordKey))
		if err != nil {
			return audit.PruneResult{}, err
		}
		ab, _ := json.Marshal(anchor)
		tb, _ := json.Marshal(audit.Link{Seq: seq, Hash: hash})
		cctx, cancel := context.WithTimeout(ctx, l.opts.CommitTimeout)
		resp, err := l.cli.Txn(cctx).If(
			clientv3.Compare(clientv3.ModRevision(l.key(auditTipKey)), "=", s.tipRev),
			clientv3.Compare(clientv3.ModRevision(l.key(auditAnchorKey)), "=", s.anchRev),
			clientv3.Compare(clientv3.CreateRevision(l.eventKey(seq)), "=", 0).WithRange(l.eventsEnd()),
		).Then(
			clientv3.OpDelete(l.eventKey(first), clientv3.WithRange(l.eventKey(cut+1))),
			clientv3.OpPut(l.key(auditAnchorKey), string(ab)),
			clientv3.OpPut(l.eventKey(seq), string(rec)),
			clientv3.OpPut(l.key(auditTipKey), string(tb)),
		).Commit()
		cancel()
		if err != nil {
			return audit.PruneResult{}, l.opts.wrap("audit prune", err)
		}
		if !resp.Succeeded {
			if attempt > 16 {
				return audit.PruneResult{}, errors.New("etcdstore: audit prune: the chain kept moving; try again")
			}
			continue // an append or another prune won: look again
		}
		l.hub.Publish(d.Event(seq, s.tip.Hash, hash))
		l.notePublished(seq)
		res := audit.PruneResult{Deleted: deleted, Anchor: anchor, AnchorSeq: seq}
		if _, err := l.signHead(ctx); err != nil {
			return res, err
		}
		return res, nil
	}
}

// Verify checks the stored chain at one revision: every link from the
// anchor (or genesis) to the last event, the anchor and the signed head.
func (l *AuditLog) Verify(ctx context.Context, keys audit.KeyFunc) (audit.Report, error) {
	s, err := l.snapshot(ctx)
	if err != nil {
		return audit.Report{}, err
	}
	v := audit.NewVerifier(s.anchor, keys)
	v.ExpectHead(s.head)
	if l.hw != nil {
		if seq, hash, ok := l.hw.HighWater(); ok {
			v.ExpectHighWater(audit.Link{Seq: seq, Hash: hash})
		}
	}
	check := store.NewAuthCheck(l.opts.RecordKey, s.head, "etcd under "+l.prefix)
	for kv, err := range l.records(ctx, 1, s.rev) {
		if err != nil {
			return audit.Report{}, err
		}
		line, got, err := parseRecord(kv.Value)
		if err != nil {
			seq, _ := seqOfKey(l.prefix, kv.Key)
			return audit.Report{}, fmt.Errorf("%w (audit seq %d)", err, seq)
		}
		if v.Add(line) != nil {
			break
		}
		if b := check.Check(v.LastSeq(), line, got); b != nil {
			v.Fail(b)
			break
		}
	}
	rep, err := v.Finish(s.head)
	rep.Store = &audit.StoreRef{Backend: audit.StoreEtcd, Name: l.prefix}
	return rep, err
}

// Export writes the chain as JSON Lines (audit.WriteJSONL) at one revision,
// after signing the head.
func (l *AuditLog) Export(ctx context.Context, w io.Writer) error {
	s, err := l.exportSnapshot(ctx)
	if err != nil {
		return err
	}
	return audit.WriteJSONL(w, s.anchor, l.exportLines(ctx, s), s.head)
}

// exportLines are the event lines of an export at s: through the head
// when the export signed it (audit.ThroughHead), as store.AuditLog's.
func (l *AuditLog) exportLines(ctx context.Context, s snapshot) iter.Seq2[[]byte, error] {
	ls := l.lines(ctx, 1, s.rev)
	if l.opts.Signer != nil {
		ls = audit.ThroughHead(ls, s.head)
	}
	return ls
}

func (l *AuditLog) exportSnapshot(ctx context.Context) (snapshot, error) {
	if l.opts.Signer != nil {
		if _, err := l.SignHead(ctx); err != nil {
			return snapshot{}, err
		}
	}
	return l.snapshot(ctx)
}

// ExportRange writes the events from the first one at or after since up to
// the last one before until as JSON Lines, like store.AuditLog.ExportRange.
func (l *AuditLog) ExportRange(ctx context.Context, w io.Writer, since, until time.Time) error {
	if since.IsZero() && until.IsZero() {
		return l.Export(ctx, w)
	}
	s, err := l.exportSnapshot(ctx)
	if err != nil {
		return err
	}
	return audit.WriteJSONLRange(w, s.anchor, l.exportLines(ctx, s), s.head, since, until)
}

// Event records. Without a RecordKey (and as earlier versions wrote every
// event) the record is the envelope bbolt's audit bucket stores around a
// sealed line, {"v":1,"d":<line>}. With one it is version 2, the line and
// the event's authenticator: {"v":2,"d":<line>,"a":"<22 base64url>"}.
// The authenticator goes in the event's own record, written by the same
// put, so a transaction holds as many events as before (etcd's
// --max-txn-ops counts operations); it goes after the line so the record
// is sealed in the draft's own buffer (audit.Draft.SealWrapped: at most 32
// bytes each side), and is written over a placeholder once the hash is
// known. An earlier version refuses a version 2 record ("upgrade pamctl")
// rather than misread it.
var recordPrefix = []byte(`{"v":1,"d":`)

const (
	recordVersion  = 2
	recordPrefixV2 = `{"v":2,"d":`
	// authSuffix ends a version 2 record; its 22 A's are the placeholder
	// the authenticator is written over.
	authSuffix = `,"a":"AAAAAAAAAAAAAAAAAAAAAA"}`
	authOpen   = `,"a":"`
)

// authB64Len is the length of an authenticator in base64url (no padding).
var authB64Len = base64.RawURLEncoding.EncodedLen(store.AuthenticatorLen)

func init() {
	if len(authOpen)+authB64Len+len(`"}`) != len(authSuffix) {
		panic("etcdstore: authSuffix does not fit the authenticator")
	}
}

func wrapLine(line []byte) []byte {
	b := make([]byte, 0, len(recordPrefix)+len(line)+1)
	b = append(b, recordPrefix...)
	b = append(b, line...)
	return append(b, '}')
}

// sealRecord seals d at seq after prev and returns its record: version 2
// with the event's authenticator under mac, or version 1 when mac is nil.
// rec is valid until d is sealed again.
func sealRecord(d *audit.Draft, seq uint64, prev string, mac *store.EventMAC) (rec []byte, hash string, err error) {
	if mac == nil {
		rec, _, hash, err = d.SealWrapped(seq, prev, string(recordPrefix), "}")
		return rec, hash, err
	}
	rec, _, hash, err = d.SealWrapped(seq, prev, recordPrefixV2, authSuffix)
	if err != nil {
		return nil, "", err
	}
	putAuth(rec, mac.Of(seq, hash))
	return rec, hash, nil
}

// putAuth writes auth over the placeholder at the end of a version 2
// record.
func putAuth(rec, auth []byte) {
	end := len(rec) - len(`"}`)
	base64.RawURLEncoding.Encode(rec[end-authB64Len:end], auth)
}

// authRecord is a version 2 record of line carrying auth.
func authRecord(line, auth []byte) []byte {
	b := make([]byte, 0, len(recordPrefixV2)+len(line)+len(authSuffix))
	b = append(b, recordPrefixV2...)
	b = append(b, line...)
	b = append(b, authSuffix...)
	putAuth(b, auth)
	return b
}

func recordLine(raw []byte) ([]byte, error) {
	line, _, err := splitRecord(raw)
	return line, err
}

// parseRecord returns the sealed line inside a stored record, without
// copying it, and the event's authenticator: nil when the record carries
// none (version 1), and not nil but never a valid one when it carries
// something that does not decode.
func parseRecord(raw []byte) (line, auth []byte, err error) {
	line, b64, err := splitRecord(raw)
	if b64 != nil {
		auth = decodeAuth(b64)
	}
	return line, auth, err
}

// splitRecord returns the line inside a stored record and its
// authenticator as stored (base64url; nil when there is none).
func splitRecord(raw []byte) (line, auth []byte, err error) {
	if bytes.HasPrefix(raw, recordPrefix) && len(raw) > len(recordPrefix) && raw[len(raw)-1] == '}' {
		return raw[len(recordPrefix) : len(raw)-1], nil, nil
	}
	if n := len(raw) - len(authSuffix); bytes.HasPrefix(raw, []byte(recordPrefixV2)) && n > len(recordPrefixV2) &&
		string(raw[n:n+len(authOpen)]) == authOpen && bytes.HasSuffix(raw, []byte(`"}`)) && raw[n-1] == '}' {
		return raw[len(recordPrefixV2):n], raw[n+len(authOpen) : len(raw)-2], nil
	}
	var env struct {
		V int             `json:"v"`
		D json.RawMessage `json:"d"`
		A *string         `json:"a"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, nil, fmt.Errorf("etcdstore: decode record: %w", err)
	}
	if env.V > recordVersion {
		return nil, nil, fmt.Errorf("%w (record version %d, this build reads up to %d): upgrade pamctl", store.ErrSchemaTooNew, env.V, recordVersion)
	}
	if env.A != nil {
		auth = []byte(*env.A)
	}
	return env.D, auth, nil
}

func decodeAuth(b64 []byte) []byte {
	if len(b64) != authB64Len {
		return []byte{}
	}
	auth := make([]byte, store.AuthenticatorLen)
	if n, err := base64.RawURLEncoding.Decode(auth, b64); err != nil || n != len(auth) {
		return []byte{}
	}
	return auth
}

func decodeEvent(raw []byte) (audit.Event, error) {
	var e audit.Event
	line, err := recordLine(raw)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return e, fmt.Errorf("etcdstore: decode audit event: %w", err)
	}
	return e, nil
}
