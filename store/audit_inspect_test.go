package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
)

// forgedAfterTip seals an event chained after the trail's last stored
// event, as a writer of the data dir without any key can: the chain hash
// is unkeyed SHA-256.
func forgedAfterTip(t *testing.T, dir string) (seq uint64, line []byte, hash string) {
	t.Helper()
	b, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var tip audit.Link
	if err := b.View(func(tx *bolt.Tx) error { tip, err = readTip(tx); return err }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	d, err := audit.NewDraft(&audit.Event{Type: audit.TypeRequestApproved, Actor: &audit.Actor{Subject: "ciso", Kind: audit.KindUser},
		Request: "req_FORGED", Decision: "approved"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	line, hash, err = d.Seal(tip.Seq+1, tip.Hash)
	if err != nil {
		t.Fatal(err)
	}
	return tip.Seq + 1, line, hash
}

// An Inspect log (pamctl audit verify, tail, export on the data dir)
// signs nothing: not at open, not on Close. Found by a red team: a writer
// of the data dir without keys put an event after the tip of the bucket;
// the first verify reported it unsigned, and signed a head over it on
// Close, so the next verify called the forged event intact and signed.
func TestInspectSignsNoHeadOverAnUnsignedTail(t *testing.T) {
	dir, mk := newDeployment(t, 5)
	seq, line, hash := forgedAfterTip(t, dir)
	tamperFile(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Put(u64(seq), wrapLine(line)) })
	for i := range 2 {
		d, err := start(t, dir, mk, AuditOptions{Inspect: true})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // a head loop, were one running, would sign now
		rep, err := d.verify()
		wantBreak(t, err, seq, audit.BreakUnauthenticated)
		if rep.Head == nil || rep.Head.Seq != seq-1 || rep.Head.Hash == hash {
			t.Fatalf("verify %d of a trail with a forged event past its head: %+v; want the head still at seq %d", i+1, rep, seq-1)
		}
		d.stop()
	}
}

// A crash left the first events of a new trail in the segment; a
// read-only look at the data dir (audit verify) leaves them there and
// says so, and the next start indexes them with the trail's first signed
// head. Found by a red team: Inspect indexed them without the first head
// and emptied the segment, and pamctl serve then refused the trail for a
// deleted head nobody deleted.
func TestInspectLeavesACrashedSegmentToTheNextStart(t *testing.T) {
	dir, acked := crashedTrail(t, 0, 3)
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var reported error
	insp, err := db.AuditLog(AuditOptions{Signer: testSigner, Inspect: true, OnError: func(err error) { reported = errors.Join(reported, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(reported, ErrSegmentPending) {
		t.Errorf("Inspect reported %v, want the %d events waiting in the segment", reported, len(acked))
	}
	insp.Close()
	db.Close()

	db, err = Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := db.AuditLog(AuditOptions{Signer: testSigner})
	if err != nil {
		t.Fatalf("start after a crash and an audit verify: %v", err)
	}
	defer l.Close()
	rep, err := l.Verify(context.Background(), testKeys)
	if err != nil || rep.Last != uint64(len(acked)) || rep.Head == nil {
		t.Fatalf("Verify = %+v, %v; want the %d acknowledged events under a signed head", rep, err, len(acked))
	}
}
