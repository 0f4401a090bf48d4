package storetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// AuditOptions is what the suite asks of a log it opens. Backends map it to
// their own options.
type AuditOptions struct {
	// Signer signs heads and anchors (nil: unsigned).
	Signer audit.HeadSigner
	// Clock stamps events, heads and anchors.
	Clock func() time.Time
	// RecordKey authenticates every event the log writes (the backends'
	// AuditOptions.RecordKey; nil: none).
	RecordKey []byte
	// Inspect and OnError mean what they mean in the backends' options:
	// an inspecting log opens a damaged trail, writes nothing and reports
	// what it found through OnError.
	Inspect bool
	OnError func(error)
}

// AuditBackend describes a backend to the audit suite.
type AuditBackend struct {
	// New returns one new, empty trail. The suite opens one log on it at
	// a time, or several (one per replica) when Replicas is set; it closes
	// them (io.Closer) before the test ends.
	New func(t *testing.T) AuditTrail
	// Replicas is true when several logs may share one trail (etcd).
	Replicas bool
	// Unauthenticated is what a log with a RecordKey refuses a trail
	// with (errors.Is) when an event past the last signed head carries no
	// valid authenticator (store.ErrUnauthenticated).
	Unauthenticated error
}

// AuditTrail is one trail of a backend.
type AuditTrail struct {
	// Open opens a log on the trail.
	Open func(AuditOptions) (audit.Log, error)
	// Forge changes the stored trail the way a writer of the storage
	// (the data file, the etcd prefix) without the master key would, so
	// that the next signed head covers what it wrote: it stores f.Line at
	// f.Seq, and makes it the tip the next append chains to and the next
	// head is signed over when f.Seq is at or past the tip. It may run
	// while logs are open (after what they acknowledged is stored).
	Forge func(t *testing.T, f Forgery)
}

// Forgery is what AuditTrail.Forge writes.
type Forgery struct {
	Seq uint64
	// Line is the event line stored at Seq (audit.Draft.Seal); nil keeps
	// the stored event's own line and changes only its authenticator.
	Line []byte
	// AuthFrom is the seq of a stored event whose authenticator is copied
	// to Seq; 0 stores the event without one (deleting the one it had).
	AuthFrom uint64
}

// Audit runs the audit.Log suite: its public behaviour only, so any
// implementation of it (bbolt's, etcd's) runs the same checks.
func Audit(t *testing.T, b AuditBackend) {
	tests := []struct {
		name string
		fn   func(*testing.T, func(AuditOptions) audit.Log)
	}{
		{"AppendOrder", auditAppendOrder},
		{"ConcurrentAppendsOneChain", auditConcurrent},
		{"Subscribe", auditSubscribe},
		{"SignedHead", auditSignedHead},
		{"PruneAnchorVerify", auditPrune},
		{"ExportAndRange", auditExport},
	}
	if b.Replicas {
		tests = append(tests, struct {
			name string
			fn   func(*testing.T, func(AuditOptions) audit.Log)
		}{"ReplicasShareOneChain", auditReplicas})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := b.New(t)
			tc.fn(t, func(o AuditOptions) audit.Log {
				l, err := tr.Open(o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if c, ok := l.(io.Closer); ok {
						if err := c.Close(); err != nil {
							t.Errorf("close: %v", err)
						}
					}
				})
				return l
			})
		})
	}
	forgeries := []struct {
		name string
		fn   func(*testing.T, *forgeEnv)
	}{
		{"ForgedEventAfterTheTail", auditForgedAfterTail},
		{"ForgedEventWithACopiedAuthenticator", auditForgedCopiedAuth},
		{"GenuineTailReplaced", auditGenuineTailReplaced},
		{"AuthenticatorStripped", auditAuthenticatorStripped},
		{"PruneNeverAnchorsAForgedEvent", auditPruneForged},
		{"VerifyFailsOnAForgedEventWhileRunning", auditVerifyForgedWhileRunning},
		{"VerifyFailsOnAChangedAuthenticatorUnderTheHead", auditVerifyWrongAuthUnderTheHead},
	}
	if b.Replicas {
		forgeries = append(forgeries, struct {
			name string
			fn   func(*testing.T, *forgeEnv)
		}{"ReplicaRefusesAnotherReplicasForgedEvent", auditReplicaForged})
	}
	for _, tc := range forgeries {
		t.Run(tc.name, func(t *testing.T) {
			if b.Unauthenticated == nil {
				t.Fatal("AuditBackend.Unauthenticated is not set")
			}
			tc.fn(t, &forgeEnv{t: t, tr: b.New(t), unauth: b.Unauthenticated, fresh: b.New})
		})
	}
}

var (
	suitePub, suitePriv, _ = ed25519.GenerateKey(nil)
	// SuiteSigner signs the suite's heads; SuiteKeys verifies them.
	SuiteSigner = audit.Ed25519Signer{KID: "suite-k1", Key: suitePriv}
	SuiteKeys   = audit.Keys(map[string]ed25519.PublicKey{"suite-k1": suitePub})
	// SuiteRecordKey authenticates the suite's events (AuditOptions.RecordKey).
	SuiteRecordKey = bytes.Repeat([]byte{0x5a}, 32)
	otherPub, _, _ = ed25519.GenerateKey(nil)
	otherKeys      = audit.Keys(map[string]ed25519.PublicKey{"suite-k1": otherPub})
)

// manualClock is a clock the suite moves.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func ev(i int) *audit.Event {
	return &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: fmt.Sprintf("agent-%d", i)}, Model: "gpt-4o", Status: 200}
}

func mustAppend(t *testing.T, l audit.Log, e *audit.Event) *audit.Event {
	t.Helper()
	if err := l.Append(context.Background(), e); err != nil {
		t.Fatalf("append: %v", err)
	}
	return e
}

func auditAppendOrder(t *testing.T, open func(AuditOptions) audit.Log) {
	ctx := context.Background()
	l := open(AuditOptions{})
	if st, err := l.Head(ctx); err != nil || st.Last.Seq != 0 || st.First != 0 || st.Last.Hash != audit.GenesisHash {
		t.Fatalf("empty head = %+v, %v; want seq 0 at genesis", st, err)
	}
	prev := audit.GenesisHash
	for i := 1; i <= 5; i++ {
		e := mustAppend(t, l, ev(i))
		if e.Seq != uint64(i) || e.PrevHash != prev || len(e.Hash) != 64 {
			t.Fatalf("append %d: seq %d prev %q hash %q; want seq %d after %q", i, e.Seq, e.PrevHash, e.Hash, i, prev)
		}
		prev = e.Hash
	}
	got, err := l.Get(ctx, 3)
	if err != nil || got.Seq != 3 || got.Actor.Subject != "agent-3" {
		t.Fatalf("Get(3) = %+v, %v", got, err)
	}
	if _, err := l.Get(ctx, 99); !errors.Is(err, audit.ErrNotFound) {
		t.Fatalf("Get(99) err = %v, want audit.ErrNotFound", err)
	}
	last, err := l.Last(ctx, 2)
	if err != nil || len(last) != 2 || last[0].Seq != 4 || last[1].Seq != 5 {
		t.Fatalf("Last(2) = %v, %v; want seqs 4, 5", seqs(last), err)
	}
	if all, _ := l.Last(ctx, 100); len(all) != 5 {
		t.Fatalf("Last(100) has %d events, want 5", len(all))
	}
	var ranged []audit.Event
	if err := l.Range(ctx, 2, func(e audit.Event) bool { ranged = append(ranged, e); return len(ranged) < 3 }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs(ranged)) != "[2 3 4]" {
		t.Fatalf("Range(2) stopped after 3 = %v, want [2 3 4]", seqs(ranged))
	}
	st, err := l.Head(ctx)
	if err != nil || st.First != 1 || st.Last.Seq != 5 || st.Last.Hash != prev || st.Head != nil || st.Anchor != nil {
		t.Fatalf("Head = %+v, %v; want first 1, last 5 (%s), unsigned", st, err, prev)
	}
	rep, err := l.Verify(ctx, nil)
	if err != nil || rep.Events != 5 || rep.Last != 5 || rep.LastHash != prev {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func seqs(evs []audit.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

// checkGapFree says every seq 1..n was returned exactly once and the stored
// chain verifies with keys.
func checkGapFree(t *testing.T, l audit.Log, got []uint64, n int) {
	t.Helper()
	seen := make([]bool, n+1)
	for _, s := range got {
		if s == 0 || s > uint64(n) || seen[s] {
			t.Fatalf("append returned seq %d twice or out of 1..%d", s, n)
		}
		seen[s] = true
	}
	rep, err := l.Verify(context.Background(), SuiteKeys)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Events != uint64(n) || rep.First != 1 || rep.Last != uint64(n) || !rep.Signed {
		t.Fatalf("verify = %+v; want %d signed events", rep, n)
	}
}

func auditConcurrent(t *testing.T, open func(AuditOptions) audit.Log) {
	l := open(AuditOptions{Signer: SuiteSigner, RecordKey: SuiteRecordKey})
	const writers, each = 16, 25
	got := make(chan uint64, writers*each)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := ev(w*each + i)
				if err := l.Append(context.Background(), e); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				got <- e.Seq
			}
		}()
	}
	wg.Wait()
	close(got)
	var all []uint64
	for s := range got {
		all = append(all, s)
	}
	if _, err := l.SignHead(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkGapFree(t, l, all, writers*each)
}

func auditReplicas(t *testing.T, open func(AuditOptions) audit.Log) {
	ctx := context.Background()
	a := open(AuditOptions{Signer: SuiteSigner, RecordKey: SuiteRecordKey})
	b := open(AuditOptions{Signer: SuiteSigner, RecordKey: SuiteRecordKey})
	sub := b.Subscribe(ctx, 1)
	defer sub.Cancel()
	const writers, each = 8, 25
	var mu sync.Mutex
	var all []uint64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		l := a
		if w%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := ev(w*each + i)
				if err := l.Append(ctx, e); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				all = append(all, e.Seq)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	n := writers * each
	if _, err := a.SignHead(ctx); err != nil {
		t.Fatal(err)
	}
	checkGapFree(t, b, all, n)
	// b's subscriber sees every event, a's too, in order.
	deadline := time.After(30 * time.Second)
	for want := uint64(1); want <= uint64(n); want++ {
		select {
		case e, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription ended at %d: %v", want, sub.Err())
			}
			if e.Seq != want {
				t.Fatalf("subscription got seq %d, want %d", e.Seq, want)
			}
		case <-deadline:
			t.Fatalf("subscription on replica b stuck before seq %d", want)
		}
	}
	// Heads signed by either replica are one chain's heads.
	mustAppend(t, b, ev(0))
	h, err := b.SignHead(ctx)
	if err != nil || h == nil || h.Seq != uint64(n+1) {
		t.Fatalf("b.SignHead = %+v, %v; want seq %d", h, err, n+1)
	}
	if st, err := a.Head(ctx); err != nil || st.Head == nil || st.Head.Seq != uint64(n+1) {
		t.Fatalf("a.Head = %+v, %v: b's head not seen", st, err)
	}
}

func auditSubscribe(t *testing.T, open func(AuditOptions) audit.Log) {
	ctx := context.Background()
	l := open(AuditOptions{})
	for i := 1; i <= 3; i++ {
		mustAppend(t, l, ev(i))
	}
	sub := l.Subscribe(ctx, 2)
	defer sub.Cancel()
	next := func(want uint64) {
		t.Helper()
		select {
		case e, ok := <-sub.C:
			if !ok || e.Seq != want {
				t.Fatalf("subscription: got %d (open %v, err %v), want %d", e.Seq, ok, sub.Err(), want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("subscription: no event %d", want)
		}
	}
	next(2)
	next(3)
	for i := 4; i <= 6; i++ {
		mustAppend(t, l, ev(i))
	}
	next(4)
	next(5)
	next(6)
	select {
	case e := <-sub.C:
		t.Fatalf("unexpected event %d", e.Seq)
	case <-time.After(50 * time.Millisecond):
	}
	sub.Cancel()
	<-sub.Done()
}

func auditSignedHead(t *testing.T, open func(AuditOptions) audit.Log) {
	ctx := context.Background()
	l := open(AuditOptions{Signer: SuiteSigner, RecordKey: SuiteRecordKey})
	if h, err := l.SignHead(ctx); err != nil || h != nil {
		t.Fatalf("SignHead on an empty log = %+v, %v; want nil", h, err)
	}
	first := mustAppend(t, l, ev(1))
	st, err := l.Head(ctx)
	if err != nil || st.Head == nil || st.Head.Seq != 1 || st.Head.Hash != first.Hash {
		t.Fatalf("after the first event Head = %+v, %v; want a head signed at seq 1", st.Head, err)
	}
	for i := 2; i <= 4; i++ {
		mustAppend(t, l, ev(i))
	}
	h, err := l.SignHead(ctx)
	if err != nil || h == nil || h.Seq != 4 {
		t.Fatalf("SignHead = %+v, %v; want seq 4", h, err)
	}
	if err := h.Check(SuiteKeys); err != nil {
		t.Fatalf("head signature: %v", err)
	}
	if again, err := l.SignHead(ctx); err != nil || again.Seq != 4 || !again.Time.Equal(h.Time) {
		t.Fatalf("SignHead with nothing new = %+v, %v; want the same head", again, err)
	}
	rep, err := l.Verify(ctx, SuiteKeys)
	if err != nil || !rep.Signed || rep.Head == nil || rep.Head.Seq != 4 || rep.Unsigned != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	mustAppend(t, l, ev(5))
	if rep, err := l.Verify(ctx, SuiteKeys); err != nil || rep.Unsigned != 1 {
		t.Fatalf("Verify with one unsigned event = %+v, %v", rep, err)
	}
	if _, err := l.Verify(ctx, otherKeys); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("Verify with another deployment's key: err = %v, want a break", err)
	}
}

func auditPrune(t *testing.T, open func(AuditOptions) audit.Log) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	l := open(AuditOptions{Signer: SuiteSigner, Clock: clk.now, RecordKey: SuiteRecordKey})
	start := clk.now()
	for i := 1; i <= 6; i++ { // one event an hour
		mustAppend(t, l, ev(i))
		clk.add(time.Hour)
	}
	if res, err := l.Prune(ctx, start); err != nil || res.Deleted != 0 {
		t.Fatalf("Prune before the first event = %+v, %v; want nothing", res, err)
	}
	res, err := l.Prune(ctx, start.Add(150*time.Minute)) // events 1-3 are older
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 3 || res.Anchor == nil || res.Anchor.Seq != 3 || res.AnchorSeq != 7 {
		t.Fatalf("Prune = %+v; want 3 deleted, anchor at 3, anchor event 7", res)
	}
	if err := res.Anchor.Check(SuiteKeys); err != nil {
		t.Fatalf("anchor signature: %v", err)
	}
	if _, err := l.Get(ctx, 2); !errors.Is(err, audit.ErrNotFound) {
		t.Fatalf("Get(2) after prune: %v", err)
	}
	anchorEv, err := l.Get(ctx, 7)
	if err != nil || anchorEv.Type != audit.TypeAuditAnchor || anchorEv.Details[audit.DetailAnchorSeq] != "3" {
		t.Fatalf("event 7 = %+v, %v; want the audit.anchor event", anchorEv, err)
	}
	st, err := l.Head(ctx)
	if err != nil || st.First != 4 || st.Last.Seq != 7 || st.Anchor == nil || st.Anchor.Seq != 3 || st.Head == nil || st.Head.Seq != 7 {
		t.Fatalf("Head after prune = %+v, %v", st, err)
	}
	rep, err := l.Verify(ctx, SuiteKeys)
	if err != nil || rep.First != 4 || rep.Last != 7 || rep.Events != 4 || rep.Anchor == nil {
		t.Fatalf("Verify after prune = %+v, %v", rep, err)
	}
	mustAppend(t, l, ev(8))
	var buf bytes.Buffer
	if err := l.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.VerifyJSONL(&buf, SuiteKeys); err != nil || rep.Events != 5 || !rep.Signed || rep.Last != 8 {
		t.Fatalf("VerifyJSONL of the export after prune = %+v, %v", rep, err)
	}
	// Pruning everything keeps the chain going from the anchor.
	clk.add(time.Hour)
	if res, err := l.Prune(ctx, clk.now()); err != nil || res.Anchor.Seq != 8 {
		t.Fatalf("prune all = %+v, %v", res, err)
	}
	e := mustAppend(t, l, ev(10))
	if e.Seq != 10 {
		t.Fatalf("append after pruning all: seq %d, want 10", e.Seq)
	}
	if rep, err := l.Verify(ctx, SuiteKeys); err != nil || rep.First != 9 || rep.Last != 10 {
		t.Fatalf("Verify after pruning all = %+v, %v", rep, err)
	}
}

func auditExport(t *testing.T, open func(AuditOptions) audit.Log) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	l := open(AuditOptions{Signer: SuiteSigner, Clock: clk.now, RecordKey: SuiteRecordKey})
	start := clk.now()
	for i := 1; i <= 10; i++ {
		mustAppend(t, l, ev(i))
		clk.add(time.Minute)
	}
	var full bytes.Buffer
	if err := l.Export(ctx, &full); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyJSONL(bytes.NewReader(full.Bytes()), SuiteKeys)
	if err != nil || rep.Events != 10 || !rep.Signed || rep.Head == nil || rep.Head.Seq != 10 {
		t.Fatalf("VerifyJSONL(export) = %+v, %v; export signs the head first", rep, err)
	}
	// A flipped byte in an event breaks the export.
	bad := bytes.Replace(full.Bytes(), []byte(`"agent-5"`), []byte(`"agent-6"`), 1)
	if _, err := audit.VerifyJSONL(bytes.NewReader(bad), SuiteKeys); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("edited export verified: %v", err)
	}
	var mid bytes.Buffer
	if err := l.ExportRange(ctx, &mid, start.Add(3*time.Minute), start.Add(7*time.Minute)); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.VerifyJSONL(&mid, SuiteKeys)
	if err != nil || rep.First != 4 || rep.Last != 7 || !rep.Partial {
		t.Fatalf("VerifyJSONL(range 4..7) = %+v, %v", rep, err)
	}
	var tail bytes.Buffer
	if err := l.ExportRange(ctx, &tail, start.Add(8*time.Minute), time.Time{}); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.VerifyJSONL(&tail, SuiteKeys)
	if err != nil || rep.First != 9 || rep.Last != 10 || !rep.Signed {
		t.Fatalf("VerifyJSONL(range 9..) = %+v, %v; a range reaching the head is signed", rep, err)
	}
}
