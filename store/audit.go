package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
)

// Audit buckets (declared in store.go):
//
//	audit       seq, uint64 BE  -> record whose payload is the sealed event
//	                               line, byte for byte what the chain hashes
//	                               plus the hash member (see audit.Draft.Seal)
//	audit_meta  "head"           -> audit.SignedHead: latest signed head
//	            "anchor"         -> audit.Anchor: retention cut
//
// The chain tip is the last key of audit (its hash ends the line), or the
// anchor when every event was pruned, or genesis: there is no separate tip
// record to keep in step.
var (
	keyAuditHead   = []byte("head")
	keyAuditAnchor = []byte("anchor")
)

// Defaults of AuditOptions.
const (
	DefaultHeadEvery    = 1000
	DefaultHeadInterval = 10 * time.Second
	DefaultBatchDelay   = time.Millisecond
	DefaultBatchSize    = 64
	DefaultAuditQueue   = 16384
)

const (
	// maxAsyncBatch bounds one transaction of the async writer.
	maxAsyncBatch = 4096
	// rangeChunk is how many events one read transaction of Range decodes:
	// long reads never pin old pages for long.
	rangeChunk = 512
)

// AuditOptions configures an AuditLog. The zero value is a durable log with
// unsigned heads.
type AuditOptions struct {
	// Sync is audit.sync: durable (default) or async.
	Sync audit.SyncMode
	// Signer signs the chain head and retention anchors; nil disables
	// signing (then truncation of the tail is not detectable).
	Signer audit.HeadSigner
	// The first head is signed in the transaction of the first event (so
	// events without a head mean the head was deleted: ErrHeadMissing);
	// later ones when HeadEvery
	// events were appended since the last signed head (default 1000),
	// every HeadInterval while unsigned events exist (default 10s), at
	// startup if events are unsigned, after Prune, before Export and on
	// Close. Defaults apply to zero values.
	HeadEvery    int
	HeadInterval time.Duration
	// Clock stamps events, heads and anchors. Default time.Now.
	Clock func() time.Time
	// BatchDelay and BatchSize set bbolt's DB.MaxBatchDelay and
	// DB.MaxBatchSize, which are per database: creating the log sets them
	// for every Batch user of this DB (sessions, requests, the spool).
	// Audit appends do not use bbolt's Batch: they share commits through
	// a timer-less group commit (see groupCommit). Defaults 1ms and 64
	// (bbolt's 10ms would add 10ms to every grouped write).
	BatchDelay time.Duration
	BatchSize  int
	// QueueSize bounds the async queue; Append blocks when it is full.
	QueueSize int
	// SubscriberBuffer bounds each subscription's live queue.
	SubscriberBuffer int
	// OnError receives failures of background work (head signing, async
	// commits). Default: discarded; async commit errors also fail the next
	// Append and Close.
	OnError func(error)
	// OnBatch, when set, is told the number of events each commit of the
	// trail wrote (metrics); it must not block.
	OnBatch func(events int)
	// Inspect opens a trail that falls short of its high-water mark (see
	// audit.HighWater) instead of refusing, so audit verify and export can
	// show the damage. It writes nothing: it never signs a head (not at
	// open, not on Close, not before an export: unsigned events past the
	// head may be a writer's, and verify reports them as unsigned), and it
	// reads the segment without indexing or emptying it, reporting through
	// OnError what it holds that the bucket lacks (ErrSegmentPending) or
	// damage (ErrSegmentDamaged).
	Inspect bool
	// RecordKey (32 bytes, vault.DerivedKey(AuditRecordKeyPurpose))
	// authenticates every event the log writes, so that none a writer of
	// the data file adds after the tail is ever signed over (see
	// audit_auth.go). nil: none (tests).
	RecordKey []byte

	// updatePerEvent commits each durable append in its own Update: the
	// benchmark baseline.
	updatePerEvent bool
	// newTicker drives HeadInterval; tests inject a manual one.
	newTicker func(time.Duration) (<-chan time.Time, func())
	// sealHook, when set, runs before each durable event is sealed in a
	// commit; an error fails that commit (tests).
	sealHook func(d *audit.Draft) error
	// indexHook, when set, runs before the indexer writes a batch (tests).
	indexHook func()
	// indexGather replaces the const indexGather (tests).
	indexGather time.Duration
	// headSigned is called after a head is stored (tests).
	headSigned func(audit.SignedHead)
}

// AuditLog is the bbolt-backed audit trail.
type AuditLog struct {
	db    *DB
	opts  AuditOptions
	clock func() time.Time
	hub   *audit.Broadcaster
	hw    audit.HighWater // the Signer's, or nil

	mu     sync.RWMutex // appends hold it shared, Close exclusive
	closed bool

	group groupCommit // durable appends

	// Durable mode: the segment (see audit_segment.go). tipMu is held
	// while a group is sealed and written, and by Prune; tip is the
	// segment's last link; written its seq (read without the lock by
	// catchUp); segErr is sticky after a failed fdatasync.
	seg       *segment
	segEpoch  uint64 // the segment's epoch as found at open (trailNotLost)
	tipMu     sync.Mutex
	tip       audit.Link
	written   atomic.Uint64
	segErr    error
	ix        indexer
	signedSeq atomic.Uint64
	kick      chan struct{}
	stop      chan struct{}
	loops     sync.WaitGroup

	queue    chan *audit.Draft // async mode only
	asyncMu  sync.Mutex
	asyncErr error

	headMu  sync.Mutex // serializes head signing
	txMAC   *authMAC   // putAuth's, used only inside bbolt write transactions (one at a time)
	pruneMu sync.Mutex // serializes pruning
}

var (
	_ audit.Log  = (*AuditLog)(nil)
	_ audit.Sink = (*AuditLog)(nil)
)

// AuditLog opens the audit trail stored in db. Create one per DB, before
// serving, and Close it before closing db.
func (db *DB) AuditLog(opts AuditOptions) (*AuditLog, error) {
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
	if opts.indexGather <= 0 {
		opts.indexGather = indexGather
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.BatchDelay <= 0 {
		opts.BatchDelay = DefaultBatchDelay
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultAuditQueue
	}
	if opts.OnError == nil {
		opts.OnError = func(error) {}
	}
	if opts.newTicker == nil {
		opts.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	db.bolt.MaxBatchDelay = opts.BatchDelay
	db.bolt.MaxBatchSize = opts.BatchSize

	if !db.auditOpen.CompareAndSwap(false, true) {
		return nil, errors.New("store: an audit log of this database is already open: open one per DB and share it")
	}
	opened := false
	defer func() {
		if !opened {
			db.auditOpen.Store(false)
		}
	}()
	hw, _ := opts.Signer.(audit.HighWater)
	l := &AuditLog{db: db, opts: opts, clock: opts.Clock, hw: hw, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	l.ix.cond.L = &l.ix.mu
	l.ix.kick = make(chan struct{}, 1)
	if err := l.openSegment(); err != nil {
		return nil, err
	}
	keepSeg := false
	defer func() {
		if !keepSeg && l.seg != nil {
			l.seg.close()
		}
	}()
	var tip audit.Link
	var head *audit.SignedHead
	err = db.view(func(tx *bolt.Tx) error {
		var err error
		if tip, err = readTip(tx); err != nil {
			return err
		}
		if head, err = readHead(tx); err != nil {
			return err
		}
		if opts.Inspect {
			if err := l.trailNotLost(tx, tip); err != nil {
				opts.OnError(err) // verify shows the empty trail, and says why it is suspect
			}
			if head != nil {
				if err := l.checkAuthenticated(tx, head.Seq); err != nil {
					opts.OnError(err) // verify shows the event unsigned, and says what it is
				}
			}
			return nil
		}
		if opts.Signer != nil {
			if err := checkHighWater(tx, hw, tip, head); err != nil {
				return err
			}
			if head == nil && tip.Seq > 0 {
				return headMissing(db, tip)
			}
			if head != nil {
				if err := l.checkAuthenticated(tx, head.Seq); err != nil {
					return err
				}
			}
		}
		return l.trailNotLost(tx, tip)
	})
	if err != nil {
		return nil, err
	}
	if hw != nil && head != nil && !opts.Inspect {
		// A crash between storing a head and raising the mark leaves the
		// mark behind; catch it up now (the head's signature was checked
		// above), so the window where deleting the trail goes unnoticed
		// ends with the next start.
		if seq, _, ok := hw.HighWater(); !ok || seq < head.Seq {
			if err := hw.RaiseHighWater(context.Background(), head.KID, head.Seq, head.Hash); err != nil {
				return nil, fmt.Errorf("store: audit: raise high-water mark: %w", err)
			}
		}
	}
	if l.seg != nil && mode == audit.SyncDurable && !opts.updatePerEvent {
		keepSeg = true
		l.tip = tip
		l.written.Store(tip.Seq)
		l.ix.indexed = tip.Seq
		db.auditCatchUp = l.catchUp
		l.loops.Add(1)
		go l.indexLoop()
	} else if l.seg != nil {
		l.seg.close()
		l.seg = nil // appends go to bbolt
	}
	l.hub = audit.NewBroadcaster(tip.Seq, l.replay, opts.SubscriberBuffer)
	if head != nil {
		l.signedSeq.Store(head.Seq)
	}
	if opts.Signer != nil && !opts.Inspect {
		if tip.Seq > 0 && (head == nil || head.Seq < tip.Seq) {
			l.kickSigner() // events left unsigned by a crash; the loop checks continuity first
		}
		tick, stopTick := opts.newTicker(opts.HeadInterval)
		l.loops.Add(1)
		go l.headLoop(tick, stopTick)
	}
	if mode == audit.SyncAsync {
		l.queue = make(chan *audit.Draft, opts.QueueSize)
		l.loops.Add(1)
		go l.writer()
	}
	opened = true
	return l, nil
}

// openSegment opens the segment, indexes what it holds that the bucket
// lacks, and empties it. An Inspect log only reads it (inspectSegment).
func (l *AuditLog) openSegment() error {
	if l.opts.Inspect {
		return l.inspectSegment()
	}
	seg, recs, err := openSegment(l.db.dir, l.db.bolt.NoSync, l.opts.RecordKey)
	if err == nil {
		l.seg = seg
		l.segEpoch = seg.epoch
		if err = l.recoverSegment(recs); err == nil {
			err = seg.reset()
		}
	}
	if err == nil {
		return nil
	}
	if l.seg != nil {
		l.seg.close()
		l.seg = nil
	}
	return err
}

// ErrSegmentPending is what an Inspect log reports when the segment holds
// acknowledged events the bucket does not: a crash left them for the next
// start to index, and readers of the bucket do not see them yet.
var ErrSegmentPending = errors.New("store: audit segment holds events not yet indexed")

// inspectSegment reads the segment without changing it (an Inspect log
// writes nothing: indexing the events a crash left there is the next
// start's, with the first signed head when the trail begins there). A
// damaged segment, and acknowledged events it holds that the bucket lacks,
// are reported through OnError; audit verify shows the bucket's trail and
// fails with what was reported.
func (l *AuditLog) inspectSegment() error {
	epoch, recs, err := readSegmentFile(l.db.dir, l.opts.RecordKey)
	if err != nil {
		l.opts.OnError(err)
		return nil
	}
	l.segEpoch = epoch
	var pending []uint64
	if err := l.db.view(func(tx *bolt.Tx) error {
		var err error
		_, pending, err = l.walkSegment(tx, recs, false)
		return err
	}); err != nil {
		l.opts.OnError(fmt.Errorf("store: audit: the segment: %w", err))
		return nil
	}
	if len(pending) > 0 {
		l.opts.OnError(fmt.Errorf("%w: %s holds %d acknowledged events (seq %d to %d) that %s does not yet: they are not shown here. Start `pamctl serve` once to index them (a crash left them), then look again",
			ErrSegmentPending, filepath.Join(l.db.dir, SegmentFileName), len(pending), pending[0], pending[len(pending)-1], l.db.path()))
	}
	return nil
}

// trailNotLost refuses an empty trail beside a segment that has held
// events: its epoch (as found at open) moves past 1 only once records were
// written to it, so a database with no event and no retention anchor was
// replaced by a fresh one (created by a start that failed later, or
// deleted and made again). Opening it would begin a new trail over the
// old one's remains.
// The high-water mark catches a trail emptied under its signing keys;
// this catches the whole file replaced, keys and all.
func (l *AuditLog) trailNotLost(tx *bolt.Tx, tip audit.Link) error {
	if l.segEpoch <= 1 || tip.Seq > 0 {
		return nil
	}
	if a, err := readAnchor(tx); err != nil || a != nil {
		return err
	}
	return &DamagedError{Path: l.db.path(), Cause: fmt.Sprintf("it holds no audit event, but the audit segment beside it (%s, epoch %d) has held events: the database was replaced by an empty one; to start a new deployment on purpose, move %s away too", SegmentFileName, l.segEpoch, SegmentFileName)}
}

// Append records e. In durable mode it returns after the commit is
// fsynced, sharing the commit with concurrent appends (groupCommit), and
// sets e.Seq, e.PrevHash and e.Hash. In async mode it returns once e is
// queued.
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
	if l.queue != nil {
		return l.enqueue(ctx, d)
	}
	var at sealed
	if l.opts.updatePerEvent {
		err = l.db.bolt.Update(func(tx *bolt.Tx) error { return l.appendTx(tx, d, &at) })
		if err == nil {
			err = l.raiseFirst(at.head)
		}
	} else {
		at, err = l.group.append(l, d)
	}
	if err != nil {
		return fmt.Errorf("store: audit append: %w", err)
	}
	e.Seq, e.PrevHash, e.Hash = at.seq, at.prev, at.hash
	return nil
}

// groupCommit shares durable commits between concurrent appends without a
// timer: an append that finds no commit running leads one at once, with
// every append queued at that moment; appends that arrive while it runs
// queue, and when it returns the first of them leads the next commit,
// carrying all of them. So a lone writer commits alone and at once (no
// batch delay), and under load each commit (one bbolt transaction, its
// fsyncs) covers everything that arrived during the previous one.
type groupCommit struct {
	mu       sync.Mutex
	pending  []*pendingAppend
	leading  bool // a commit is running or being handed over
	lastSize int  // appends of the last commit
}

// gather lets appends that are runnable join the commit about to start,
// without a timer: when the last commit carried more appends than are
// queued now, its members are likely preparing their next event (a closed
// loop releases them all at once), so the leader yields its processor
// while that brings new arrivals, and stops at the first yield that brings
// none. Without it such a loop alternates commits of one event with
// commits of all the others. A lone writer (lastSize 1) never yields.
func (g *groupCommit) gather() {
	g.mu.Lock()
	n, want := len(g.pending), g.lastSize
	g.mu.Unlock()
	for range maxGatherYields {
		if n >= want {
			return
		}
		runtime.Gosched()
		g.mu.Lock()
		m := len(g.pending)
		g.mu.Unlock()
		if m == n {
			return
		}
		n = m
	}
}

// maxGatherYields bounds gather.
const maxGatherYields = 64

// pendingAppend is one durable append waiting for its commit.
type pendingAppend struct {
	d    *audit.Draft
	at   sealed
	err  error
	done chan bool // true: lead the next commit; false: committed (see err)
}

var pendingPool = sync.Pool{New: func() any { return &pendingAppend{done: make(chan bool, 1)} }}

// append queues d and returns once the commit that stored it is durable.
func (g *groupCommit) append(l *AuditLog, d *audit.Draft) (sealed, error) {
	p := pendingPool.Get().(*pendingAppend)
	p.d = d
	g.mu.Lock()
	g.pending = append(g.pending, p)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		lead = <-p.done
	}
	if lead {
		g.lead(l, p)
	}
	at, err := p.at, p.err
	*p = pendingAppend{done: p.done}
	pendingPool.Put(p)
	return at, err
}

// lead commits every queued append (self among them), tells each its
// outcome and hands the lead to the first append queued meanwhile.
func (g *groupCommit) lead(l *AuditLog, self *pendingAppend) {
	g.gather()
	g.mu.Lock()
	gen := g.pending
	g.pending = nil
	g.lastSize = len(gen)
	g.mu.Unlock()
	for i := 0; i < len(gen); i += maxAsyncBatch {
		l.commitGeneration(gen[i:min(i+maxAsyncBatch, len(gen))])
	}
	g.mu.Lock()
	var next *pendingAppend
	if len(g.pending) > 0 {
		next = g.pending[0]
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	for _, p := range gen {
		if p != self {
			p.done <- false // p belongs to its owner again from here on
		}
	}
	if next != nil {
		next.done <- true
	}
}

// commitGeneration stores gen in one transaction. If that fails, each
// append is retried in its own, so one bad event fails alone.
func (l *AuditLog) commitGeneration(gen []*pendingAppend) {
	if l.seg != nil {
		l.writeGeneration(gen)
		return
	}
	var first *pendingAppend // carries the trail's first signed head
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		first = nil
		tip, err := readTip(tx)
		if err != nil {
			return err
		}
		for _, p := range gen {
			if err := l.appendAfter(tx, p.d, tip, &p.at); err != nil {
				return err
			}
			tip = audit.Link{Seq: p.at.seq, Hash: p.at.hash}
			if p.at.head != nil {
				first = p
			}
		}
		return nil
	})
	if err != nil && len(gen) > 1 {
		for _, p := range gen {
			p.at = sealed{}
			p.err = l.db.bolt.Update(func(tx *bolt.Tx) error { return l.appendTx(tx, p.d, &p.at) })
			if p.err == nil {
				p.err = l.raiseFirst(p.at.head)
			}
			if p.err == nil && l.opts.OnBatch != nil {
				l.opts.OnBatch(1)
			}
		}
		return
	}
	for _, p := range gen {
		p.err = err
	}
	if err != nil {
		return
	}
	if first != nil {
		first.err = l.raiseFirst(first.at.head)
	}
	if l.opts.OnBatch != nil {
		l.opts.OnBatch(len(gen))
	}
}

type sealed struct {
	seq        uint64
	prev, hash string
	head       *audit.SignedHead // the first head, signed with this event
}

// appendTx chains d after the stored tip inside tx.
func (l *AuditLog) appendTx(tx *bolt.Tx, d *audit.Draft, out *sealed) error {
	tip, err := readTip(tx)
	if err != nil {
		return err
	}
	return l.appendAfter(tx, d, tip, out)
}

// appendAfter chains d after tip, the link readTip returned in this tx.
func (l *AuditLog) appendAfter(tx *bolt.Tx, d *audit.Draft, tip audit.Link, out *sealed) error {
	if l.opts.sealHook != nil {
		if err := l.opts.sealHook(d); err != nil {
			return err
		}
	}
	seq := tip.Seq + 1
	rec, _, hash, err := d.SealWrapped(seq, tip.Hash, recordPrefix, recordSuffix)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketAudit)
	b.FillPercent = 1 // keys only ever append: fill pages, write fewer per commit
	if err := b.Put(u64(seq), rec); err != nil {
		return fmt.Errorf("store: audit put: %w", err)
	}
	if err := l.putAuth(tx, seq, hash); err != nil {
		return err
	}
	*out = sealed{seq: seq, prev: tip.Hash, hash: hash}
	prev := tip.Hash
	tx.OnCommit(func() { l.committed(d.Event(seq, prev, hash)) })
	return l.firstHead(tx, seq, hash, out)
}

// firstHead signs a head over the first event of a trail that has none, in
// the transaction that stores the event: no committed trail of a signing
// log ever has events without a signed head, so one found that way had its
// head deleted (see ErrHeadMissing). Later heads are signed by the head loop.
func (l *AuditLog) firstHead(tx *bolt.Tx, seq uint64, hash string, out *sealed) error {
	if l.opts.Signer == nil || l.opts.Inspect || l.signedSeq.Load() != 0 {
		return nil
	}
	if cur, err := readHead(tx); err != nil || cur != nil {
		return err
	}
	h := &audit.SignedHead{Seq: seq, Hash: hash, Time: l.clock().UTC()}
	if err := h.Sign(l.opts.Signer); err != nil {
		return err
	}
	if err := put(tx, bucketAuditMeta, keyAuditHead, h); err != nil {
		return fmt.Errorf("store: audit store first head: %w", err)
	}
	out.head = h
	tx.OnCommit(func() {
		l.signedSeq.CompareAndSwap(0, h.Seq)
		if l.opts.headSigned != nil {
			l.opts.headSigned(*h)
		}
	})
	return nil
}

// raiseFirst records the head firstHead stored as the high-water mark,
// after its commit (as signHead does for later heads).
func (l *AuditLog) raiseFirst(h *audit.SignedHead) error {
	if h == nil || l.hw == nil {
		return nil
	}
	if err := l.hw.RaiseHighWater(context.Background(), h.KID, h.Seq, h.Hash); err != nil {
		return fmt.Errorf("store: audit: raise high-water mark: %w", err)
	}
	return nil
}

// committed runs after the commit that stored e.
func (l *AuditLog) committed(e audit.Event) {
	l.hub.Publish(e)
	// Sign when HeadEvery events are unsigned, and as soon as there is a
	// first event: a chain with events and no head fails keyed Verify.
	if signed := l.signedSeq.Load(); l.opts.Signer != nil && (signed == 0 || e.Seq >= signed+uint64(l.opts.HeadEvery)) {
		l.kickSigner()
	}
}

func (l *AuditLog) kickSigner() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *AuditLog) enqueue(ctx context.Context, d *audit.Draft) error {
	if err := l.writeErr(); err != nil {
		return err
	}
	select {
	case l.queue <- d:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *AuditLog) writeErr() error {
	l.asyncMu.Lock()
	defer l.asyncMu.Unlock()
	return l.asyncErr
}

// QueueDepth is the number of events the async queue holds, not yet
// committed (always 0 in durable mode, where Append waits for its commit).
func (l *AuditLog) QueueDepth() int {
	if l.queue == nil {
		return 0
	}
	return len(l.queue)
}

// writer commits the async queue in large transactions.
func (l *AuditLog) writer() {
	defer l.loops.Done()
	batch := make([]*audit.Draft, 0, maxAsyncBatch)
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	for d := range l.queue {
		batch = append(batch[:0], d)
		// Gather what arrives in the next asyncGather: one commit (and one
		// fsync) then carries a whole burst instead of a few events.
		gather.Reset(asyncGather)
	drain:
		for len(batch) < maxAsyncBatch {
			select {
			case d, ok := <-l.queue:
				if !ok {
					break drain
				}
				batch = append(batch, d)
			case <-gather.C:
				break drain
			}
		}
		gather.Stop()
		var first *audit.SignedHead
		err := l.db.bolt.Update(func(tx *bolt.Tx) error {
			var at sealed
			first = nil
			for _, d := range batch {
				if err := l.appendTx(tx, d, &at); err != nil {
					return err
				}
				if at.head != nil {
					first = at.head
				}
			}
			return nil
		})
		if err == nil {
			err = l.raiseFirst(first)
		}
		if err == nil && l.opts.OnBatch != nil {
			l.opts.OnBatch(len(batch))
		}
		if err != nil {
			err = fmt.Errorf("store: audit async commit of %d events: %w", len(batch), err)
			l.asyncMu.Lock()
			if l.asyncErr == nil {
				l.asyncErr = err
			}
			l.asyncMu.Unlock()
			l.opts.OnError(err)
		}
		clear(batch)
	}
}

// asyncGather is how long the async writer collects events before a commit.
// It bounds what a crash can lose beyond the queue, and is far below any
// human-visible delay.
const asyncGather = 5 * time.Millisecond

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
		if _, err := l.signHead(); err != nil {
			l.opts.OnError(err)
		}
	}
}

// Close stops accepting events, commits what async mode still queues,
// signs the final head and ends every subscription. It does not close db.
func (l *AuditLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	if l.queue != nil {
		close(l.queue)
	}
	l.mu.Unlock()
	close(l.stop)
	l.loops.Wait()
	err := l.writeErr()
	if l.seg != nil {
		l.tipMu.Lock()
		l.truncateIndexedLocked()
		err = errors.Join(err, l.segErr, l.indexErr(), l.seg.close())
		l.tipMu.Unlock()
	}
	if l.opts.Signer != nil && !l.opts.Inspect {
		if _, serr := l.signHead(); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	l.hub.Close()
	l.db.auditOpen.Store(false)
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
	return l.signHead()
}

func (l *AuditLog) signHead() (*audit.SignedHead, error) {
	// A head covers every event acknowledged before it was asked for.
	if err := l.catchUp(); err != nil {
		return nil, err
	}
	l.headMu.Lock()
	defer l.headMu.Unlock()
	var tip audit.Link
	var cur *audit.SignedHead
	err := l.db.view(func(tx *bolt.Tx) error {
		var err error
		if tip, err = readTip(tx); err != nil {
			return err
		}
		if cur, err = readHead(tx); err != nil || l.opts.Signer == nil {
			return err
		}
		if err := checkHighWater(tx, l.hw, tip, cur); err != nil {
			var hwe *highWaterError
			if errors.As(err, &hwe) {
				return fmt.Errorf("store: audit: refusing to sign a new head: %w (%w)", hwe.be, ErrBelowHighWater)
			}
			return fmt.Errorf("store: audit: refusing to sign a new head: %w", err)
		}
		if cur == nil {
			if tip.Seq > 0 {
				return fmt.Errorf("store: audit: refusing to sign a new head: %w", headMissing(l.db, tip))
			}
			return nil
		}
		if err := headStillStored(tx, cur, tip); err != nil {
			return err
		}
		if !l.opts.Inspect {
			if err := l.checkAuthenticated(tx, cur.Seq); err != nil {
				return fmt.Errorf("store: audit: refusing to sign a new head: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if l.opts.Signer == nil || l.opts.Inspect || tip.Seq == 0 || (cur != nil && cur.Seq >= tip.Seq) {
		return cur, nil // an inspecting log never signs over what it shows
	}
	h := &audit.SignedHead{Seq: tip.Seq, Hash: tip.Hash, Time: l.clock().UTC()}
	if err := h.Sign(l.opts.Signer); err != nil {
		return nil, err
	}
	if err := l.db.bolt.Update(func(tx *bolt.Tx) error { return put(tx, bucketAuditMeta, keyAuditHead, h) }); err != nil {
		return nil, fmt.Errorf("store: audit store head: %w", err)
	}
	// Raised after the head is stored: a crash in between leaves the mark
	// behind the head, never ahead of it.
	if l.hw != nil {
		if err := l.hw.RaiseHighWater(context.Background(), h.KID, h.Seq, h.Hash); err != nil {
			return nil, fmt.Errorf("store: audit: raise high-water mark: %w", err)
		}
	}
	l.signedSeq.Store(h.Seq)
	if l.opts.headSigned != nil {
		l.opts.headSigned(*h)
	}
	return h, nil
}

// ErrHeadMissing means the trail has events (or a retention anchor) but no
// signed head. A signing log writes its first head in the transaction of
// its first event, so this is never a crash: the head was deleted.
var ErrHeadMissing error = TrailTampered("store: audit trail has events but no signed head")

func headMissing(db *DB, tip audit.Link) error {
	return fmt.Errorf("%w: %s holds events through seq %d and no signed head; the head was deleted from the data file (pamctl signs one with the very first event). Run `pamctl audit verify` to see the damage, and restore it from a backup", ErrHeadMissing, db.path(), tip.Seq)
}

// ErrBelowHighWater means the stored trail falls short of its
// authenticated high-water mark: events, the signed head or the anchor were
// deleted, or the data file was rolled back. It wraps an *audit.BreakError.
var ErrBelowHighWater error = TrailTampered("store: audit trail is shorter than its high-water mark")

type highWaterError struct{ be *audit.BreakError }

func (e *highWaterError) Error() string {
	return fmt.Sprintf("store: audit: the trail is shorter than the high-water mark in the signing key's authenticated record (%s: expected %s, found %s): events, the signed head or the anchor were deleted, or pamctl.db was rolled back. Run `pamctl audit verify` to see what is missing, and restore pamctl.db from a backup",
		"seq "+strconv.FormatUint(e.be.Seq, 10), e.be.Expected, e.be.Found)
}
func (e *highWaterError) Unwrap() error { return e.be }
func (e *highWaterError) Is(target error) bool {
	return target == ErrBelowHighWater || target == ErrTampered
}

// checkHighWater compares the stored chain with hw's mark in O(1): the
// event at the mark must be stored with the mark's hash (or pruned behind
// the anchor), and the signed head must not be older than the mark.
func checkHighWater(tx *bolt.Tx, hw audit.HighWater, tip audit.Link, head *audit.SignedHead) error {
	if hw == nil {
		return nil
	}
	keys := audit.KeyFunc(hw.AnyPublicKey)
	if head != nil {
		if err := head.Check(keys); err != nil {
			return foreignSignature("head", err)
		}
	}
	if a, err := readAnchor(tx); err != nil {
		return err
	} else if a != nil && a.Sig != nil {
		if err := a.Check(keys); err != nil {
			return foreignSignature("retention anchor", err)
		}
	} else if a != nil {
		// A signing log signs every anchor it stores. An unsigned one
		// could say anything: past the head, the next head would be
		// signed over what it says; at or before it, it would stand in
		// for signed events a writer deleted (the high-water mark takes
		// an event pruned behind the anchor as accounted for).
		return fmt.Errorf("%w: the retention anchor (seq %d) is not signed: a writer of the data file put it there. Run `pamctl audit verify`, and restore the data dir from a backup", ErrDamaged, a.Seq)
	}
	seq, hash, ok := hw.HighWater()
	if !ok {
		return nil
	}
	fail := func(at uint64, expected, found string) error {
		return &highWaterError{&audit.BreakError{Seq: at, Kind: audit.BreakHighWater, Expected: expected, Found: found}}
	}
	if tip.Seq < seq {
		found := fmt.Sprintf("last event seq %d", tip.Seq)
		if tip.Seq == 0 {
			found = "no events"
		}
		return fail(tip.Seq+1, fmt.Sprintf("events through seq %d (a head was signed there)", seq), found)
	}
	if v := tx.Bucket(bucketAudit).Get(u64(seq)); v != nil {
		line, err := recordLine(v)
		if err != nil {
			return err
		}
		if h := audit.StoredHash(line); h != hash {
			return fail(seq, "hash "+hash, h)
		}
	} else {
		a, err := readAnchor(tx)
		if err != nil {
			return err
		}
		if a == nil || a.Seq < seq || (a.Seq == seq && a.Hash != hash) {
			return fail(seq, fmt.Sprintf("the event at seq %d, or a retention anchor past it", seq), "neither")
		}
	}
	if head == nil || head.Seq < seq {
		found := "no signed head"
		if head != nil {
			found = fmt.Sprintf("a signed head at seq %d", head.Seq)
		}
		return fail(seq, fmt.Sprintf("a signed head at or after seq %d", seq), found)
	}
	return nil
}

// foreignSignature is the error for a stored head or anchor that this
// deployment's keys do not verify.
func foreignSignature(what string, err error) error {
	return fmt.Errorf("store: audit: the trail's %s is not signed by a key of this deployment (%w): the signing key's record was deleted or replaced, or the trail comes from another deployment. Run `pamctl audit verify` to see the damage, and restore pamctl.db from a backup", what, err)
}

// headStillStored refuses to sign over a chain that lost the previously
// signed head (truncated or rewritten while pamctl was stopped): signing
// it again would bless the tampering.
func headStillStored(tx *bolt.Tx, cur *audit.SignedHead, tip audit.Link) error {
	refuse := func(found string) error {
		return fmt.Errorf("store: audit: refusing to sign a new head: %w", &audit.BreakError{
			Seq: cur.Seq, Kind: audit.BreakHead, Expected: "hash " + cur.Hash + " (previous signed head)", Found: found})
	}
	if cur.Seq > tip.Seq {
		return refuse(fmt.Sprintf("last event seq %d", tip.Seq))
	}
	if cur.Seq == tip.Seq {
		if tip.Hash != cur.Hash {
			return refuse(tip.Hash)
		}
		return nil
	}
	v := tx.Bucket(bucketAudit).Get(u64(cur.Seq))
	if v == nil {
		a, err := readAnchor(tx)
		if err != nil {
			return err
		}
		if a != nil && cur.Seq <= a.Seq {
			return nil // pruned
		}
		return refuse("no event")
	}
	line, err := recordLine(v)
	if err != nil {
		return err
	}
	if h := audit.StoredHash(line); h != cur.Hash {
		return refuse(h)
	}
	return nil
}

// Range calls fn for each event with seq >= fromSeq, in seq order, until fn
// returns false. fn runs outside any transaction.
func (l *AuditLog) Range(ctx context.Context, fromSeq uint64, fn func(audit.Event) bool) error {
	if err := l.catchUp(); err != nil {
		return err
	}
	return l.rangeTo(ctx, fromSeq, math.MaxUint64, fn)
}

func (l *AuditLog) replay(ctx context.Context, from, to uint64, fn func(audit.Event) bool) error {
	return l.rangeTo(ctx, from, to, fn)
}

func (l *AuditLog) rangeTo(ctx context.Context, from, to uint64, fn func(audit.Event) bool) error {
	next := max(from, 1)
	buf := make([]audit.Event, 0, rangeChunk)
	for next <= to {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf = buf[:0]
		var lastKey uint64
		err := l.db.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketAudit).Cursor()
			for k, v := c.Seek(u64(next)); k != nil && len(buf) < rangeChunk; k, v = c.Next() {
				seq := binary.BigEndian.Uint64(k)
				if seq > to {
					break
				}
				e, err := decodeEvent(v)
				if err != nil {
					return fmt.Errorf("%w (audit seq %d)", err, seq)
				}
				buf = append(buf, e)
				lastKey = seq
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			return nil
		}
		for _, e := range buf {
			if !fn(e) {
				return nil
			}
		}
		if lastKey == math.MaxUint64 {
			return nil
		}
		next = lastKey + 1
	}
	return nil
}

// Last returns the last n events in seq order.
func (l *AuditLog) Last(ctx context.Context, n int) ([]audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	if err := l.catchUp(); err != nil {
		return nil, err
	}
	var out []audit.Event
	err := l.db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			e, err := decodeEvent(v)
			if err != nil {
				return fmt.Errorf("%w (audit seq %d)", err, binary.BigEndian.Uint64(k))
			}
			out = append(out, e)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// Get returns the event at seq, or an error matching audit.ErrNotFound and
// ErrNotFound.
func (l *AuditLog) Get(ctx context.Context, seq uint64) (audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return audit.Event{}, err
	}
	if err := l.catchUp(); err != nil {
		return audit.Event{}, err
	}
	var e audit.Event
	err := l.db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAudit).Get(u64(seq))
		if v == nil {
			return fmt.Errorf("store: audit seq %d: %w (%w)", seq, audit.ErrNotFound, ErrNotFound)
		}
		var err error
		e, err = decodeEvent(v)
		return err
	})
	return e, err
}

// Subscribe follows the log from fromSeq: stored events first, then new
// ones as they commit, without gaps or duplicates. See
// audit.Broadcaster.Subscribe.
func (l *AuditLog) Subscribe(ctx context.Context, fromSeq uint64) *audit.Subscription {
	return l.hub.Subscribe(ctx, fromSeq)
}

// Head describes the stored chain.
func (l *AuditLog) Head(ctx context.Context) (audit.Status, error) {
	if err := ctx.Err(); err != nil {
		return audit.Status{}, err
	}
	if err := l.catchUp(); err != nil {
		return audit.Status{}, err
	}
	var st audit.Status
	err := l.db.view(func(tx *bolt.Tx) error {
		var err error
		if st.Last, err = readTip(tx); err != nil {
			return err
		}
		if k, _ := tx.Bucket(bucketAudit).Cursor().First(); k != nil {
			st.First = binary.BigEndian.Uint64(k)
		}
		if st.Head, err = readHead(tx); err != nil {
			return err
		}
		st.Anchor, err = readAnchor(tx)
		return err
	})
	return st, err
}

// Prune deletes every event before the first one at or after before (a
// whole prefix of the chain), records the cut as the retention anchor
// (signed when a Signer is set) and appends an audit.anchor event naming
// it, so Verify starts from the anchor and still covers every kept event.
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
	if l.seg != nil {
		// No group is written while the trail is cut: the anchor event
		// chains to the tip, and the bucket must hold all of it.
		l.tipMu.Lock()
		defer l.tipMu.Unlock()
		if l.segErr != nil {
			return audit.PruneResult{}, fmt.Errorf("store: audit prune: the segment failed earlier (%w); restart pamctl", l.segErr)
		}
		if err := l.catchUp(); err != nil {
			return audit.PruneResult{}, err
		}
	}

	// Find the cut in a read transaction; only Prune deletes, so it stays
	// valid until the write below.
	var first, cut uint64
	var cutHash string
	err := l.db.view(func(tx *bolt.Tx) error {
		if l.opts.Signer != nil && !l.opts.Inspect {
			// The anchor is signed over the last event it cuts, which may
			// be past the last signed head.
			head, err := readHead(tx)
			if err != nil {
				return err
			}
			if head != nil {
				if err := l.checkAuthenticated(tx, head.Seq); err != nil {
					return fmt.Errorf("store: audit: refusing to sign a retention anchor: %w", err)
				}
			}
		}
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			line, err := recordLine(v)
			if err != nil {
				return err
			}
			var e struct {
				Time time.Time `json:"time"`
				Hash string    `json:"hash"`
			}
			if err := json.Unmarshal(line, &e); err != nil {
				return fmt.Errorf("store: audit seq %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if !e.Time.Before(before) {
				break
			}
			cut, cutHash = binary.BigEndian.Uint64(k), e.Hash
			if first == 0 {
				first = cut
			}
		}
		return nil
	})
	if err != nil || cut == 0 {
		return audit.PruneResult{}, err
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
	var at sealed
	err = l.db.bolt.Update(func(tx *bolt.Tx) error {
		// Read the tip before deleting: bbolt's Cursor.Last can spin on
		// leaves emptied earlier in the same transaction (etcd-io/bbolt#95,
		// #341), and the anchor event chains to the tip anyway.
		tip, err := readTip(tx)
		if err != nil {
			return err
		}
		b, auth := tx.Bucket(bucketAudit), tx.Bucket(bucketAuditAuth)
		for seq := first; seq <= cut; seq++ {
			if err := b.Delete(u64(seq)); err != nil {
				return fmt.Errorf("store: audit prune: %w", err)
			}
			if auth != nil {
				if err := auth.Delete(u64(seq)); err != nil {
					return fmt.Errorf("store: audit prune: %w", err)
				}
			}
		}
		if err := put(tx, bucketAuditMeta, keyAuditAnchor, anchor); err != nil {
			return err
		}
		return l.appendAfter(tx, d, tip, &at)
	})
	if err != nil {
		return audit.PruneResult{}, fmt.Errorf("store: audit prune: %w", err)
	}
	if l.seg != nil {
		l.tip = audit.Link{Seq: at.seq, Hash: at.hash}
		l.ix.mu.Lock()
		l.ix.indexed = at.seq
		l.ix.mu.Unlock()
		l.written.Store(at.seq)
		l.truncateIndexedLocked()
	}
	res := audit.PruneResult{Deleted: deleted, Anchor: anchor, AnchorSeq: at.seq}
	if _, err := l.signHead(); err != nil {
		return res, err
	}
	return res, nil
}

// Verify checks the stored chain in one read transaction: every link from
// the anchor (or genesis) to the last event, the anchor and the signed
// head. A break is returned as *audit.BreakError.
func (l *AuditLog) Verify(ctx context.Context, keys audit.KeyFunc) (audit.Report, error) {
	if err := l.catchUp(); err != nil {
		return audit.Report{}, err
	}
	var rep audit.Report
	var verr error
	err := l.db.view(func(tx *bolt.Tx) error {
		anchor, err := readAnchor(tx)
		if err != nil {
			return err
		}
		head, err := readHead(tx)
		if err != nil {
			return err
		}
		v := audit.NewVerifier(anchor, keys)
		v.ExpectHead(head)
		if l.hw != nil {
			if seq, hash, ok := l.hw.HighWater(); ok {
				v.ExpectHighWater(audit.Link{Seq: seq, Hash: hash})
			}
		}
		check := NewAuthCheck(l.opts.RecordKey, head, FileName)
		auth := tx.Bucket(bucketAuditAuth)
		for line, err := range lines(ctx, tx) {
			if err != nil {
				return err
			}
			if v.Add(line) != nil {
				break
			}
			if check != nil {
				seq := v.LastSeq()
				var got []byte
				if auth != nil {
					got = auth.Get(u64(seq))
				}
				if b := check.Check(seq, line, got); b != nil {
					v.Fail(b)
					break
				}
			}
		}
		rep, verr = v.Finish(head)
		return nil
	})
	rep.Store = &audit.StoreRef{Backend: audit.StoreBolt, Name: FileName}
	if err != nil {
		return rep, err
	}
	return rep, verr
}

// Export writes the chain as JSON Lines (audit.WriteJSONL) from one read
// transaction, after signing the head so the export is covered up to the
// moment it starts.
func (l *AuditLog) Export(ctx context.Context, w io.Writer) error {
	return l.export(ctx, func(anchor *audit.Anchor, lines iter.Seq2[[]byte, error], head *audit.SignedHead) error {
		return audit.WriteJSONL(w, anchor, lines, head)
	})
}

// export signs the head, then runs fn in one read transaction with the
// anchor, the event lines and the signed head. When it signed, the lines
// end at the head (audit.ThroughHead): events appended between the two
// are left for the next export, so the signature covers every event.
func (l *AuditLog) export(ctx context.Context, fn func(anchor *audit.Anchor, lines iter.Seq2[[]byte, error], head *audit.SignedHead) error) error {
	if err := l.catchUp(); err != nil {
		return err
	}
	if l.opts.Signer != nil {
		if _, err := l.SignHead(ctx); err != nil {
			return err
		}
	}
	return l.db.view(func(tx *bolt.Tx) error {
		anchor, err := readAnchor(tx)
		if err != nil {
			return err
		}
		head, err := readHead(tx)
		if err != nil {
			return err
		}
		ls := lines(ctx, tx)
		if l.opts.Signer != nil {
			ls = audit.ThroughHead(ls, head)
		}
		return fn(anchor, ls, head)
	})
}

// lines yields the stored event lines of tx in seq order. A line points
// into the transaction's pages: valid until tx ends.
func lines(ctx context.Context, tx *bolt.Tx) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		c := tx.Bucket(bucketAudit).Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					yield(nil, err)
					return
				}
			}
			line, err := recordLine(v)
			if err != nil {
				err = fmt.Errorf("%w (audit seq %d)", err, binary.BigEndian.Uint64(k))
			}
			if !yield(line, err) || err != nil {
				return
			}
		}
	}
}

// recordPrefix opens the record envelope (record.go) around a sealed line;
// writing it by hand gives the same bytes as encode without re-encoding.
const (
	recordPrefix = `{"v":1,"d":`
	recordSuffix = `}`
)

func wrapLine(line []byte) []byte {
	b := make([]byte, 0, len(recordPrefix)+len(line)+len(recordSuffix))
	b = append(b, recordPrefix...)
	b = append(b, line...)
	return append(b, recordSuffix...)
}

// recordLine returns the sealed line inside a stored record without
// copying it.
func recordLine(raw []byte) ([]byte, error) {
	if bytes.HasPrefix(raw, []byte(recordPrefix)) && len(raw) > len(recordPrefix) && raw[len(raw)-1] == '}' {
		return raw[len(recordPrefix) : len(raw)-1], nil
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("store: decode record: %w", err)
	}
	if env.V > recordVersion {
		return nil, fmt.Errorf("%w (record version %d, this build reads up to %d): upgrade pamctl", ErrSchemaTooNew, env.V, recordVersion)
	}
	return env.D, nil
}

func decodeEvent(raw []byte) (audit.Event, error) {
	var e audit.Event
	line, err := recordLine(raw)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return e, fmt.Errorf("store: decode audit event: %w", err)
	}
	return e, nil
}

// readTip returns the link the next append chains to: the last stored
// event, else the anchor, else genesis.
func readTip(tx *bolt.Tx) (audit.Link, error) {
	if k, v := tx.Bucket(bucketAudit).Cursor().Last(); k != nil {
		seq := binary.BigEndian.Uint64(k)
		line, err := recordLine(v)
		if err != nil {
			return audit.Link{}, fmt.Errorf("%w (audit seq %d)", err, seq)
		}
		h := audit.StoredHash(line)
		if _, err := hex.DecodeString(h); err != nil || h == "" {
			return audit.Link{}, fmt.Errorf("store: audit: last event (seq %d) is damaged, run pamctl audit verify", seq)
		}
		return audit.Link{Seq: seq, Hash: h}, nil
	}
	a, err := readAnchor(tx)
	if err != nil || a == nil {
		return audit.Link{Hash: audit.GenesisHash}, err
	}
	return audit.Link{Seq: a.Seq, Hash: a.Hash}, nil
}

func readHead(tx *bolt.Tx) (*audit.SignedHead, error) {
	var h audit.SignedHead
	if err := get(tx, bucketAuditMeta, keyAuditHead, &h); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return &h, nil
}

func readAnchor(tx *bolt.Tx) (*audit.Anchor, error) {
	var a audit.Anchor
	if err := get(tx, bucketAuditMeta, keyAuditAnchor, &a); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return &a, nil
}

// ExportRange writes the events from the first one at or after since up to
// the last one before until (a zero time leaves that end open) as JSON
// Lines, streaming. The export starts with the anchor when the range starts
// at the first retained event, or with a range line naming the event before
// it; it ends with the signed head when the range reaches it. So any range
// verifies offline as a consistent piece of the chain (audit.VerifyJSONL),
// and one that reaches the head is signature-checked too.
func (l *AuditLog) ExportRange(ctx context.Context, w io.Writer, since, until time.Time) error {
	if since.IsZero() && until.IsZero() {
		return l.Export(ctx, w)
	}
	return l.export(ctx, func(anchor *audit.Anchor, lines iter.Seq2[[]byte, error], head *audit.SignedHead) error {
		return audit.WriteJSONLRange(w, anchor, lines, head, since, until)
	})
}
