package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// Forgeries: the chain's hashes take no key, so whoever can write the
// storage can chain events of their own after the tail, and the next head
// a log signed would cover them. With a RecordKey every event a log writes
// carries an authenticator, and no log signs a head (or a retention
// anchor) over an event past the last signed head whose authenticator is
// missing or wrong, nor opens such a trail except to inspect it.

// forgeEnv is one trail of a forgery test.
type forgeEnv struct {
	t      *testing.T
	tr     AuditTrail
	unauth error
	fresh  func(t *testing.T) AuditTrail // a new trail of the backend
}

// signing are the options of a log that authenticates and signs.
var signing = AuditOptions{Signer: SuiteSigner, RecordKey: SuiteRecordKey}

// open opens a log that the test closes itself; a log still open when the
// test ends is closed then, and what Close says is not checked (it signs
// the final head, which a forged trail refuses).
func (f *forgeEnv) open(o AuditOptions) audit.Log {
	f.t.Helper()
	l, err := f.tr.Open(o)
	if err != nil {
		f.t.Fatalf("open: %v", err)
	}
	f.t.Cleanup(func() { closeLog(l) })
	return l
}

func closeLog(l audit.Log) error {
	if c, ok := l.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// wantUnauthenticated fails unless err is the backend's refusal and names
// the event at seq.
func (f *forgeEnv) wantUnauthenticated(what string, err error, seq uint64) {
	f.t.Helper()
	if !errors.Is(err, f.unauth) {
		f.t.Fatalf("%s: err = %v, want %v", what, err, f.unauth)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("seq %d", seq)) {
		f.t.Fatalf("%s: %v does not name seq %d", what, err, seq)
	}
	for _, next := range []string{"pamctl audit verify", "restore"} {
		if !strings.Contains(err.Error(), next) {
			f.t.Fatalf("%s: %v does not say what to do (%q)", what, err, next)
		}
	}
}

// refusedAtOpen checks that a log refuses to open the trail, and that
// an inspecting one opens it, reports the forgery, still shows the head
// at headSeq (none was signed over it) and fails verify at the forged
// event.
func (f *forgeEnv) refusedAtOpen(seq, headSeq uint64) {
	f.t.Helper()
	if l, err := f.tr.Open(signing); err == nil {
		closeLog(l)
		f.t.Fatalf("a log opened the trail with a forged event at seq %d", seq)
	} else {
		f.wantUnauthenticated("open", err, seq)
	}
	var reported error
	l, err := f.tr.Open(AuditOptions{Signer: SuiteSigner, RecordKey: SuiteRecordKey, Inspect: true,
		OnError: func(err error) { reported = errors.Join(reported, err) }})
	if err != nil {
		f.t.Fatalf("an inspecting log does not open the trail: %v", err)
	}
	defer closeLog(l)
	f.wantUnauthenticated("inspect", reported, seq)
	f.headAt(l, headSeq)
	f.verifyBreaksAt(l, seq)
}

// verifyBreaksAt checks that l's Verify fails at the event at seq as one
// this deployment did not write, in words that say so, and names the
// store it read.
func (f *forgeEnv) verifyBreaksAt(l audit.Log, seq uint64) {
	f.t.Helper()
	rep, err := l.Verify(context.Background(), SuiteKeys)
	var be *audit.BreakError
	if !errors.As(err, &be) || be.Seq != seq || be.Kind != audit.BreakUnauthenticated {
		f.t.Fatalf("verify = %+v, %v; want a break at seq %d (%s)", rep, err, seq, audit.BreakUnauthenticated)
	}
	if !errors.Is(err, audit.ErrTampered) {
		f.t.Fatalf("verify: %v is not audit.ErrTampered", err)
	}
	for _, w := range []string{"not written by this deployment", "without the master key", "Restore"} {
		if !strings.Contains(err.Error(), w) {
			f.t.Fatalf("verify: %v does not say %q", err, w)
		}
	}
	if rep.Store == nil || rep.Store.Backend == "" || rep.Store.Name == "" {
		f.t.Fatalf("verify's report names no store: %+v", rep)
	}
}

// A writer chains an event after the tail while the log runs: the
// running log's Verify (what `pamctl audit verify` asks a server) fails
// at it, whether it carries no authenticator or a copied one, and so
// does an inspecting log's (verify with no server running).
func auditVerifyForgedWhileRunning(t *testing.T, f *forgeEnv) {
	for _, from := range []uint64{0, 3} {
		if from != 0 {
			f = &forgeEnv{t: t, tr: f.fresh(t), unauth: f.unauth, fresh: f.fresh}
		}
		l := f.open(signing)
		last := tail(t, l, 3)
		f.signAt(l, 3)
		if rep, err := l.Verify(context.Background(), SuiteKeys); err != nil || rep.Last != 3 {
			t.Fatalf("verify before the forgery = %+v, %v", rep, err)
		}
		f.tr.Forge(t, Forgery{Seq: 4, Line: forged(t, 4, last.Hash, time.Now()), AuthFrom: from})
		f.verifyBreaksAt(l, 4)
		f.wantUnauthenticated("Close", closeLog(l), 4)
		f.refusedAtOpen(4, 3)
	}
}

// An event under the signed head whose authenticator a writer changed
// (here: copied from another event) fails verify; one under the head
// without any (what earlier versions wrote; the head's signature covers
// it) does not.
func auditVerifyWrongAuthUnderTheHead(t *testing.T, f *forgeEnv) {
	l := f.open(signing)
	tail(t, l, 3)
	f.signAt(l, 3)
	f.tr.Forge(t, Forgery{Seq: 1})
	if rep, err := l.Verify(context.Background(), SuiteKeys); err != nil || rep.Last != 3 {
		t.Fatalf("verify with no authenticator under the head = %+v, %v; want it to pass", rep, err)
	}
	f.tr.Forge(t, Forgery{Seq: 2, AuthFrom: 3})
	f.verifyBreaksAt(l, 2)
}

// headAt checks that the stored head is still the one at seq.
func (f *forgeEnv) headAt(l audit.Log, seq uint64) {
	f.t.Helper()
	st, err := l.Head(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	if st.Head == nil || st.Head.Seq != seq {
		f.t.Fatalf("head = %+v; want the one signed at seq %d (none over the forgery)", st.Head, seq)
	}
	if st.Anchor != nil {
		f.t.Fatalf("anchor = %+v; want none", st.Anchor)
	}
}

// forged returns an event line of the writer's, sealed at seq after prev.
func forged(t *testing.T, seq uint64, prev string, at time.Time) []byte {
	t.Helper()
	d, err := audit.NewDraft(&audit.Event{Type: audit.TypeRequestApproved, Actor: &audit.Actor{Subject: "mallory", Kind: audit.KindUser}, Target: "req_forged", Decision: "approved"}, at)
	if err != nil {
		t.Fatal(err)
	}
	line, _, err := d.Seal(seq, prev)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(line)
}

// tail appends n events and returns the last.
func tail(t *testing.T, l audit.Log, n int) *audit.Event {
	t.Helper()
	var e *audit.Event
	for i := 1; i <= n; i++ {
		e = mustAppend(t, l, ev(i))
	}
	return e
}

func (f *forgeEnv) signAt(l audit.Log, seq uint64) {
	f.t.Helper()
	if h, err := l.SignHead(context.Background()); err != nil || h == nil || h.Seq != seq {
		f.t.Fatalf("SignHead = %+v, %v; want seq %d", h, err, seq)
	}
}

// An event chained after the tail while no log runs, without an
// authenticator: refused at open, and never signed over.
func auditForgedAfterTail(t *testing.T, f *forgeEnv) {
	l := f.open(signing)
	last := tail(t, l, 3)
	if err := closeLog(l); err != nil { // signs the head at 3
		t.Fatal(err)
	}
	f.tr.Forge(t, Forgery{Seq: 4, Line: forged(t, 4, last.Hash, time.Now())})
	f.refusedAtOpen(4, 3)
}

// The writer copies a genuine event's authenticator to theirs: it
// authenticates another seq and another hash.
func auditForgedCopiedAuth(t *testing.T, f *forgeEnv) {
	l := f.open(signing)
	last := tail(t, l, 3)
	if err := closeLog(l); err != nil {
		t.Fatal(err)
	}
	f.tr.Forge(t, Forgery{Seq: 4, Line: forged(t, 4, last.Hash, time.Now()), AuthFrom: 3})
	f.refusedAtOpen(4, 3)
}

// The genuine event at the tail, past the last signed head, is replaced
// by the writer's, keeping its authenticator, while the log runs: the log
// refuses to sign a head (SignHead, and Close), and a new one to open.
func auditGenuineTailReplaced(t *testing.T, f *forgeEnv) {
	ctx := context.Background()
	l := f.open(signing)
	tail(t, l, 3)
	f.signAt(l, 3)
	mustAppend(t, l, ev(4))
	mustAppend(t, l, ev(5))
	four, err := l.Get(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	f.tr.Forge(t, Forgery{Seq: 5, Line: forged(t, 5, four.Hash, time.Now()), AuthFrom: 5})
	_, err = l.SignHead(ctx)
	f.wantUnauthenticated("SignHead", err, 5)
	f.headAt(l, 3)
	f.wantUnauthenticated("Close", closeLog(l), 5)
	f.refusedAtOpen(5, 3)
}

// A genuine event past the last signed head loses its authenticator
// (deleted, or its record rewritten without one): what carries none cannot
// be told from a writer's event.
func auditAuthenticatorStripped(t *testing.T, f *forgeEnv) {
	ctx := context.Background()
	l := f.open(signing)
	tail(t, l, 3)
	f.signAt(l, 3)
	mustAppend(t, l, ev(4))
	f.tr.Forge(t, Forgery{Seq: 4})
	_, err := l.SignHead(ctx)
	f.wantUnauthenticated("SignHead", err, 4)
	f.headAt(l, 3)
	f.wantUnauthenticated("Close", closeLog(l), 4)
	f.refusedAtOpen(4, 3)
}

// A retention anchor is signed over the last event it cuts: never over a
// writer's event past the last signed head (pruned at once, it would
// leave only the signed anchor naming its hash).
func auditPruneForged(t *testing.T, f *forgeEnv) {
	ctx := context.Background()
	clk := &manualClock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	o := signing
	o.Clock = clk.now
	l := f.open(o)
	var last *audit.Event
	for i := 1; i <= 3; i++ {
		last = mustAppend(t, l, ev(i))
		clk.add(time.Hour)
	}
	f.signAt(l, 3)
	f.tr.Forge(t, Forgery{Seq: 4, Line: forged(t, 4, last.Hash, clk.now())})
	clk.add(time.Hour)
	_, err := l.Prune(ctx, clk.now()) // would cut every event, the forged one too
	f.wantUnauthenticated("Prune", err, 4)
	f.headAt(l, 3)
	if _, err := l.Get(ctx, 1); err != nil {
		t.Fatalf("the refused prune deleted events: %v", err)
	}
	f.wantUnauthenticated("Close", closeLog(l), 4)
	f.refusedAtOpen(4, 3)
}

// Replica A runs and appends; a writer chains an event after the tail;
// replica B (any replica, any path) refuses to sign over it, and so does
// A, though A's own appends go on after it.
func auditReplicaForged(t *testing.T, f *forgeEnv) {
	ctx := context.Background()
	a := f.open(signing)
	b := f.open(signing)
	tail(t, a, 3)
	f.signAt(b, 3)
	mustAppend(t, a, ev(4))
	last := mustAppend(t, a, ev(5))
	f.tr.Forge(t, Forgery{Seq: 6, Line: forged(t, 6, last.Hash, time.Now())})
	_, err := b.SignHead(ctx)
	f.wantUnauthenticated("replica B's SignHead", err, 6)
	// A appends after it (it cannot tell) but signs no head over it either.
	if e := mustAppend(t, a, ev(7)); e.Seq != 7 {
		t.Fatalf("A's append after the forgery: seq %d, want 7", e.Seq)
	}
	for name, l := range map[string]audit.Log{"A": a, "B": b} {
		_, err := l.SignHead(ctx)
		f.wantUnauthenticated("replica "+name+"'s SignHead", err, 6)
		f.headAt(l, 3)
	}
	f.wantUnauthenticated("replica A's Close", closeLog(a), 6)
	f.wantUnauthenticated("replica B's Close", closeLog(b), 6)
	f.refusedAtOpen(6, 3)
}
