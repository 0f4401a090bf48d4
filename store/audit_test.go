package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
)

var (
	testPriv   = ed25519.NewKeyFromSeed(sha256.New().Sum([]byte("pamctl audit test key"))[:32])
	testSigner = audit.Ed25519Signer{KID: "k1", Key: testPriv}
	testKeys   = audit.Keys(map[string]ed25519.PublicKey{"k1": testPriv.Public().(ed25519.PublicKey)})
	auditT0    = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
)

// fakeClock advances one millisecond per reading unless set.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: auditT0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// openAudit opens the db in dir and its audit log, closing both at the end
// of the test. sync false skips fsync (logic tests only).
func openAudit(t *testing.T, dir string, sync bool, opts AuditOptions) (*DB, *AuditLog) {
	t.Helper()
	db, err := Open(dir, Options{NoSync: !sync})
	if err != nil {
		t.Fatal(err)
	}
	l, err := db.AuditLog(opts)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		db.Close()
	})
	return db, l
}

func closeAudit(t *testing.T, db *DB, l *AuditLog) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func appendN(t *testing.T, l *AuditLog, n int) []audit.Event {
	t.Helper()
	out := make([]audit.Event, 0, n)
	for i := 0; i < n; i++ {
		e := benchEvent(i)
		if err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		out = append(out, *e)
	}
	return out
}

// tamperFile edits the bbolt file directly, as an attacker with file access
// would, while pamctl is not running.
func tamperFile(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	b, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func wantBreak(t *testing.T, err error, seq uint64, kind audit.BreakKind) {
	t.Helper()
	var be *audit.BreakError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a break at seq %d (%s)", err, seq, kind)
	}
	if be.Seq != seq || be.Kind != kind {
		t.Fatalf("break at seq %d (%s), want seq %d (%s): %v", be.Seq, be.Kind, seq, kind, be)
	}
}

func collectSub(t *testing.T, s *audit.Subscription, n int) []audit.Event {
	t.Helper()
	var got []audit.Event
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case e, ok := <-s.C:
			if !ok {
				t.Fatalf("subscription ended after %d of %d events: %v", len(got), n, s.Err())
			}
			got = append(got, e)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(got), n)
		}
	}
	return got
}

func wantSeqs(t *testing.T, got []audit.Event, from uint64) {
	t.Helper()
	for i, e := range got {
		if e.Seq != from+uint64(i) {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, from+uint64(i))
		}
	}
}

func TestAuditAppendAndRead(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	_, l := openAudit(t, t.TempDir(), true, AuditOptions{Clock: clock.Now})
	types := []audit.Type{audit.TypeLogin, audit.TypeRequestCreated, audit.TypeProxyCall}
	var appended []audit.Event
	prev := audit.GenesisHash
	for i := 0; i < 9; i++ {
		e := &audit.Event{Type: types[i%3], Actor: &audit.Actor{Subject: []string{"ada", "bob"}[i%2]}, Request: "r1"}
		if err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) || e.PrevHash != prev || len(e.Hash) != 64 || e.Code == "" || e.Time.IsZero() {
			t.Fatalf("append %d: seq %d prev %s hash %s code %q time %v", i, e.Seq, e.PrevHash, e.Hash, e.Code, e.Time)
		}
		prev = e.Hash
		appended = append(appended, *e)
	}

	got, err := l.Get(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, got), mustJSON(t, appended[3]); a != b {
		t.Fatalf("Get(4):\n%s\nwant\n%s", a, b)
	}
	if _, err := l.Get(ctx, 99); !errors.Is(err, audit.ErrNotFound) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(99) = %v", err)
	}

	last, err := l.Last(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, last, 7)
	if all, _ := l.Last(ctx, 100); len(all) != 9 {
		t.Fatalf("Last(100) returned %d", len(all))
	}

	f := audit.Filter{Types: []audit.Type{audit.TypeProxyCall}, Actor: "ada"}
	var matched []uint64
	if err := l.Range(ctx, 2, func(e audit.Event) bool {
		if f.Match(e) {
			matched = append(matched, e.Seq)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	// proxy.call at seqs 3, 6, 9; ada on odd seqs.
	if len(matched) != 2 || matched[0] != 3 || matched[1] != 9 {
		t.Fatalf("filtered range = %v", matched)
	}
	var stopped []uint64
	l.Range(ctx, 0, func(e audit.Event) bool { stopped = append(stopped, e.Seq); return len(stopped) < 2 })
	if len(stopped) != 2 {
		t.Fatalf("Range did not stop: %v", stopped)
	}

	st, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.First != 1 || st.Last.Seq != 9 || st.Last.Hash != prev || st.Head != nil || st.Anchor != nil {
		t.Fatalf("Head = %+v", st)
	}
	if rep, err := l.Verify(ctx, nil); err != nil || rep.Events != 9 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	// Without a signer there is no head, so a keyed verification fails.
	if _, err := l.Verify(ctx, testKeys); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("keyed verify of an unsigned log = %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAuditRecordsUseTheStoreEnvelope(t *testing.T) {
	db, l := openAudit(t, t.TempDir(), false, AuditOptions{})
	e := benchEvent(1)
	if err := l.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := l.catchUp(); err != nil { // the bucket holds it
		t.Fatal(err)
	}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketAudit).Get(u64(1))
		line, err := recordLine(raw)
		if err != nil {
			return err
		}
		want, err := encode(json.RawMessage(line))
		if err != nil {
			return err
		}
		if !bytes.Equal(raw, want) {
			t.Errorf("record is not what encode writes:\n%s\n%s", raw, want)
		}
		var viaRecord audit.Event
		if err := decode(raw, &viaRecord); err != nil {
			return err
		}
		if viaRecord.Hash != e.Hash {
			t.Errorf("decode() sees hash %q, want %q", viaRecord.Hash, e.Hash)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAuditAppendRejectsInvalidEvents(t *testing.T) {
	_, l := openAudit(t, t.TempDir(), false, AuditOptions{})
	if err := l.Append(context.Background(), &audit.Event{Type: "made.up"}); err == nil {
		t.Fatal("unknown type accepted")
	}
	st, _ := l.Head(context.Background())
	if st.Last.Seq != 0 {
		t.Fatalf("a refused event was stored: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Append(ctx, benchEvent(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v", err)
	}
}

func TestAuditChainContinuesAfterReopen(t *testing.T) {
	dir := t.TempDir()
	db, l := openAudit(t, dir, false, AuditOptions{Signer: testSigner})
	first := appendN(t, l, 5)
	closeAudit(t, db, l)

	_, l = openAudit(t, dir, false, AuditOptions{Signer: testSigner})
	e := benchEvent(6)
	if err := l.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if e.Seq != 6 || e.PrevHash != first[4].Hash {
		t.Fatalf("after reopen: seq %d prev %s, want 6 after %s", e.Seq, e.PrevHash, first[4].Hash)
	}
	if _, err := l.SignHead(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(context.Background(), testKeys)
	if err != nil || rep.Events != 6 || !rep.Signed || rep.Unsigned != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestAuditConcurrentWritersShareCommits(t *testing.T) {
	const writers, each = 64, 10
	ctx := context.Background()
	_, l := openAudit(t, t.TempDir(), true, AuditOptions{Signer: testSigner})
	seqs := make(chan uint64, writers*each)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := benchEvent(i)
				if err := l.Append(ctx, e); err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] || s < 1 || s > writers*each {
			t.Fatalf("seq %d returned twice or out of range", s)
		}
		seen[s] = true
	}
	var stored []audit.Event
	if err := l.Range(ctx, 1, func(e audit.Event) bool { stored = append(stored, e); return true }); err != nil {
		t.Fatal(err)
	}
	if len(stored) != writers*each {
		t.Fatalf("stored %d events, want %d", len(stored), writers*each)
	}
	wantSeqs(t, stored, 1)
	if _, err := l.SignHead(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.Verify(ctx, testKeys); err != nil || rep.Events != writers*each {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// The async writer and Prune chain events inside bbolt transactions (durable
// appends seal in the segment, see TestAuditGroupCommitFailsOnlyTheBadAppend).
func TestAuditAppendFunctionIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db, l := openAudit(t, t.TempDir(), false, AuditOptions{Sync: audit.SyncAsync})
	sub := l.Subscribe(ctx, 1)
	defer sub.Cancel()

	// A transaction that seals an event and then rolls back (what bbolt
	// does to a batch when another member fails) leaves no trace: running
	// the same draft again gives seq 1, and subscribers see it once.
	e := benchEvent(1)
	d, err := audit.NewDraft(e, auditT0)
	if err != nil {
		t.Fatal(err)
	}
	var first, second sealed
	errRollback := errors.New("another batch member failed")
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		if err := l.appendTx(tx, d, &first); err != nil {
			return err
		}
		return errRollback
	}); !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	if err := db.bolt.Update(func(tx *bolt.Tx) error { return l.appendTx(tx, d, &second) }); err != nil {
		t.Fatal(err)
	}
	if first != second || second.seq != 1 {
		t.Fatalf("rerun sealed %+v, first run %+v", second, first)
	}

	// Other Batch users failing beside the writer's commits leave the
	// chain contiguous and valid.
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := l.Append(ctx, benchEvent(i)); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			db.bolt.Batch(func(tx *bolt.Tx) error { return errRollback })
		}()
	}
	wg.Wait()
	got := collectSub(t, sub, 33)
	wantSeqs(t, got, 1)
	select {
	case e := <-sub.C:
		t.Fatalf("duplicate delivery of seq %d", e.Seq)
	default:
	}
	if rep, err := l.Verify(ctx, nil); err != nil || rep.Events != 33 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestAuditVerifyDetectsTamperingOnDisk(t *testing.T) {
	const n = 20
	cases := []struct {
		name   string
		tamper func(tx *bolt.Tx) error
		seq    uint64
		kind   audit.BreakKind
	}{
		{"edit a field", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			v := bytes.Replace(bytes.Clone(b.Get(u64(7))), []byte(`"decision":"allow"`), []byte(`"decision":"deny"`), 1)
			return b.Put(u64(7), v)
		}, 7, audit.BreakHash},
		{"delete an event", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAudit).Delete(u64(12))
		}, 12, audit.BreakMissing},
		{"reorder two events", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			a, c := bytes.Clone(b.Get(u64(4))), bytes.Clone(b.Get(u64(5)))
			if err := b.Put(u64(4), c); err != nil {
				return err
			}
			return b.Put(u64(5), a)
		}, 4, audit.BreakMissing},
		{"truncate the tail", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			for s := uint64(18); s <= n; s++ {
				if err := b.Delete(u64(s)); err != nil {
					return err
				}
			}
			return nil
		}, 18, audit.BreakTruncated},
		{"delete the signed head", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAuditMeta).Delete(keyAuditHead)
		}, 1, audit.BreakHead},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db, l := openAudit(t, dir, false, AuditOptions{Signer: testSigner})
			appendN(t, l, n)
			if _, err := l.SignHead(context.Background()); err != nil {
				t.Fatal(err)
			}
			if rep, err := l.Verify(context.Background(), testKeys); err != nil || rep.Events != n || rep.Unsigned != 0 {
				t.Fatalf("untouched: %+v, %v", rep, err)
			}
			closeAudit(t, db, l)

			tamperFile(t, dir, c.tamper)

			_, l = openAudit(t, dir, false, AuditOptions{})
			_, err := l.Verify(context.Background(), testKeys)
			wantBreak(t, err, c.seq, c.kind)

			var buf bytes.Buffer
			if err := l.Export(context.Background(), &buf); err != nil {
				t.Fatal(err)
			}
			_, err = audit.VerifyJSONL(&buf, testKeys)
			wantBreak(t, err, c.seq, c.kind)
		})
	}
}

func TestAuditRefusesToSignOverATruncatedChain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, l := openAudit(t, dir, false, AuditOptions{Signer: testSigner})
	appendN(t, l, 10)
	closeAudit(t, db, l) // signs seq 10
	tamperFile(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).Delete(u64(10))
	})
	_, l = openAudit(t, dir, false, AuditOptions{Signer: testSigner})
	appendN(t, l, 1) // reuses seq 10 after the tampering
	if _, err := l.SignHead(ctx); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("SignHead over a rewritten seq 10 = %v", err)
	}
	_, err := l.Verify(ctx, testKeys)
	wantBreak(t, err, 10, audit.BreakHead)
}

func TestAuditHeadSigning(t *testing.T) {
	ctx := context.Background()
	signed := make(chan audit.SignedHead, 16)
	tick := make(chan time.Time)
	opts := AuditOptions{
		Signer:       testSigner,
		HeadEvery:    5,
		HeadInterval: time.Hour,
		newTicker:    func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} },
		headSigned:   func(h audit.SignedHead) { signed <- h },
	}
	dir := t.TempDir()
	db, l := openAudit(t, dir, false, opts)
	waitHead := func(why string) audit.SignedHead {
		t.Helper()
		select {
		case h := <-signed:
			return h
		case <-time.After(10 * time.Second):
			t.Fatalf("no head signed after %s", why)
			return audit.SignedHead{}
		}
	}

	appendN(t, l, 1)
	if h := waitHead("the first event"); h.Seq != 1 {
		t.Fatalf("head at seq %d", h.Seq)
	}
	appendN(t, l, 5)
	if h := waitHead("5 more events with HeadEvery=5"); h.Seq != 6 {
		t.Fatalf("head at seq %d", h.Seq)
	}
	appendN(t, l, 2)
	tick <- auditT0 // HeadInterval elapsed
	if h := waitHead("an interval tick"); h.Seq != 8 {
		t.Fatalf("head at seq %d", h.Seq)
	}
	appendN(t, l, 1)
	closeAudit(t, db, l) // Close signs the final head
	if h := waitHead("Close"); h.Seq != 9 {
		t.Fatalf("head at seq %d", h.Seq)
	}
	select {
	case h := <-signed:
		t.Fatalf("unexpected extra head at seq %d", h.Seq)
	default:
	}

	_, l = openAudit(t, dir, false, AuditOptions{})
	st, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := testKeys("k1")
	if st.Head == nil || st.Head.Seq != 9 || st.Head.Hash != st.Last.Hash || !ed25519.Verify(pub, st.Head.Message(), st.Head.Sig) {
		t.Fatalf("stored head %+v, last %+v", st.Head, st.Last)
	}
	if h, err := l.SignHead(ctx); err != nil || h.Seq != 9 {
		t.Fatalf("SignHead without a signer returns the stored head: %+v, %v", h, err)
	}
}

func TestAuditSignsTheTailLeftByACrashAtStartup(t *testing.T) {
	dir := t.TempDir()
	db, l := openAudit(t, dir, false, AuditOptions{Signer: testSigner}) // head at seq 1
	appendN(t, l, 1)
	closeAudit(t, db, l)
	db, l = openAudit(t, dir, false, AuditOptions{}) // no signer: seq 2 and 3 stay unsigned
	appendN(t, l, 2)
	closeAudit(t, db, l)
	signed := make(chan audit.SignedHead, 1)
	_, l = openAudit(t, dir, false, AuditOptions{Signer: testSigner, headSigned: func(h audit.SignedHead) { signed <- h }})
	select {
	case h := <-signed:
		if h.Seq != 3 {
			t.Fatalf("head at seq %d", h.Seq)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unsigned tail was not signed at startup")
	}
	if rep, err := l.Verify(context.Background(), testKeys); err != nil || rep.Unsigned != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestAuditSubscribeHandoff(t *testing.T) {
	const writers, each = 8, 150
	ctx := context.Background()
	_, l := openAudit(t, t.TempDir(), false, AuditOptions{SubscriberBuffer: writers * each})
	appendN(t, l, 40)
	total := 40 + writers*each

	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := l.Append(ctx, benchEvent(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for i := 0; i < 8; i++ {
		st, err := l.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		from := []uint64{1, st.Last.Seq / 2, st.Last.Seq, st.Last.Seq + 1}[i%4]
		from = max(from, 1)
		sub := l.Subscribe(ctx, from)
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer sub.Cancel()
			wantSeqs(t, collectSub(t, sub, total-int(from)+1), from)
		}()
	}
	wg.Wait()
	readers.Wait()
}

func TestAuditSlowSubscriberIsDropped(t *testing.T) {
	ctx := context.Background()
	_, l := openAudit(t, t.TempDir(), false, AuditOptions{SubscriberBuffer: 4})
	sub := l.Subscribe(ctx, 1)
	appendN(t, l, 150)                  // nobody reads; appends must not block
	if err := l.catchUp(); err != nil { // every event is published
		t.Fatal(err)
	}
	var got []audit.Event
	for e := range sub.C {
		got = append(got, e)
	}
	if !errors.Is(sub.Err(), audit.ErrSlowSubscriber) {
		t.Fatalf("Err = %v", sub.Err())
	}
	wantSeqs(t, got, 1)
	next := uint64(len(got)) + 1
	again := l.Subscribe(ctx, next)
	defer again.Cancel()
	wantSeqs(t, collectSub(t, again, 150-int(next)+1), next)
}

func TestAuditPruneKeepsTheChainVerifiable(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	dir := t.TempDir()
	db, l := openAudit(t, dir, false, AuditOptions{Signer: testSigner, Clock: clock.Now})
	for i := 1; i <= 20; i++ {
		e := benchEvent(i)
		e.Time = auditT0.Add(time.Duration(i) * time.Minute)
		if err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(auditT0.Add(time.Hour))

	res, err := l.Prune(ctx, auditT0.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 9 || res.Anchor == nil || res.Anchor.Seq != 9 || res.AnchorSeq != 21 {
		t.Fatalf("Prune = %+v", res)
	}
	if _, err := l.Get(ctx, 9); !errors.Is(err, audit.ErrNotFound) {
		t.Fatalf("Get(9) after prune = %v", err)
	}
	first, err := l.Get(ctx, 10)
	if err != nil || first.PrevHash != res.Anchor.Hash {
		t.Fatalf("first kept event prev %s, anchor %s (%v)", first.PrevHash, res.Anchor.Hash, err)
	}
	ev, err := l.Get(ctx, 21)
	if err != nil || ev.Type != audit.TypeAuditAnchor || ev.Details[audit.DetailAnchorHash] != res.Anchor.Hash || ev.Code != "PAM-L003" {
		t.Fatalf("anchor event %+v (%v)", ev, err)
	}
	rep, err := l.Verify(ctx, testKeys)
	if err != nil || rep.First != 10 || rep.Last != 21 || !rep.Signed || rep.Unsigned != 0 {
		t.Fatalf("Verify after prune = %+v, %v", rep, err)
	}
	if res, err := l.Prune(ctx, auditT0); err != nil || res.Deleted != 0 {
		t.Fatalf("nothing to prune: %+v, %v", res, err)
	}
	// A second prune moves the anchor; the new anchor event records it.
	res2, err := l.Prune(ctx, auditT0.Add(15*time.Minute))
	if err != nil || res2.Deleted != 5 || res2.Anchor.Seq != 14 {
		t.Fatalf("second Prune = %+v, %v", res2, err)
	}
	var buf bytes.Buffer
	if err := l.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.VerifyJSONL(&buf, testKeys); err != nil || rep.First != 15 || rep.Anchor.Seq != 14 {
		t.Fatalf("offline verify after prune = %+v, %v", rep, err)
	}
	// Pruning everything leaves the anchor event alone, still verifiable.
	if res3, err := l.Prune(ctx, auditT0.Add(24*time.Hour)); err != nil || res3.Anchor.Seq != 22 {
		t.Fatalf("prune all = %+v, %v", res3, err)
	}
	if rep, err := l.Verify(ctx, testKeys); err != nil || rep.Events != 1 {
		t.Fatalf("verify after pruning all = %+v, %v", rep, err)
	}
	closeAudit(t, db, l)

	t.Run("anchor tampered", func(t *testing.T) {
		tamperFile(t, dir, func(tx *bolt.Tx) error {
			var a audit.Anchor
			if err := get(tx, bucketAuditMeta, keyAuditAnchor, &a); err != nil {
				return err
			}
			a.Hash = audit.GenesisHash
			return put(tx, bucketAuditMeta, keyAuditAnchor, &a)
		})
		_, l := openAudit(t, dir, false, AuditOptions{})
		_, err := l.Verify(ctx, testKeys)
		wantBreak(t, err, 22, audit.BreakAnchor) // signature no longer matches
		_, err = l.Verify(ctx, nil)
		wantBreak(t, err, 23, audit.BreakLink) // and without keys the first kept link breaks
	})
	t.Run("anchor deleted", func(t *testing.T) {
		tamperFile(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bucketAuditMeta).Delete(keyAuditAnchor) })
		_, l := openAudit(t, dir, false, AuditOptions{})
		_, err := l.Verify(ctx, testKeys)
		wantBreak(t, err, 1, audit.BreakMissing)
	})
}

func TestAuditAsyncMode(t *testing.T) {
	const writers, each = 4, 750
	ctx := context.Background()
	dir := t.TempDir()
	db, l := openAudit(t, dir, true, AuditOptions{Sync: audit.SyncAsync, QueueSize: 256, Signer: testSigner})
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := l.Append(ctx, benchEvent(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	closeAudit(t, db, l) // flushes the queue
	if err := l.Append(ctx, benchEvent(0)); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}

	_, l = openAudit(t, dir, false, AuditOptions{})
	rep, err := l.Verify(ctx, testKeys)
	if err != nil || rep.Events != writers*each || rep.Unsigned != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestAuditCloseEndsSubscriptions(t *testing.T) {
	db, l := openAudit(t, t.TempDir(), false, AuditOptions{})
	sub := l.Subscribe(context.Background(), 1)
	closeAudit(t, db, l)
	<-sub.Done()
	if !errors.Is(sub.Err(), audit.ErrClosed) {
		t.Fatalf("Err = %v", sub.Err())
	}
	if _, err := l.SignHead(context.Background()); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("SignHead after Close = %v", err)
	}
}
