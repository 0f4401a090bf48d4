package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var testRecordKey = bytes.Repeat([]byte{7}, 32)

// A writer of the data dir without keys chains an event of their own after
// the tail while pamctl is stopped: the chain's hash and the segment's
// checksum take no key. pamctl never signs a head over it. Found by a red
// team: the next start indexed (segment) or kept (bucket) the event and
// signed a head over it, so verify called it intact and signed.
func TestForgedEventAfterTheTailIsNeverSigned(t *testing.T) {
	t.Run("in the bucket: start refuses", func(t *testing.T) {
		dir, mk := newDeployment(t, 5)
		seq, line, _ := forgedAfterTip(t, dir)
		tamperFile(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Put(u64(seq), wrapLine(line)) })
		if _, err := start(t, dir, mk, AuditOptions{}); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "seq 6") {
			t.Fatalf("start = %v, want ErrUnauthenticated for seq 6", err)
		}
		// audit verify opens it, shows the event unsigned and says what it is.
		var reported error
		d, err := start(t, dir, mk, AuditOptions{Inspect: true, OnError: func(err error) { reported = errors.Join(reported, err) }})
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := d.verify(); err != nil || rep.Unsigned != 1 || !errors.Is(reported, ErrUnauthenticated) {
			t.Fatalf("verify: %+v, %v; reported %v", rep, err, reported)
		}
	})
	t.Run("in the segment: never indexed", func(t *testing.T) {
		dir, mk := newDeployment(t, 5)
		seq, line, _ := forgedAfterTip(t, dir)
		raw, err := os.ReadFile(filepath.Join(dir, SegmentFileName))
		if err != nil {
			t.Fatal(err)
		}
		epoch := binary.BigEndian.Uint64(raw[8:16])
		forged := segmentFile(epoch, []segRecord{{seq: seq, line: line}}) // a valid checksum, no authenticator
		if err := os.WriteFile(filepath.Join(dir, SegmentFileName), forged, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := start(t, dir, mk, AuditOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.log.SignHead(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rep, err := d.verify(); err != nil || rep.Last != seq-1 || rep.Head == nil || rep.Head.Seq != seq-1 {
			t.Fatalf("verify: %+v, %v; want the trail through seq %d, without the forged event", rep, err, seq-1)
		}
	})
}

// What pamctl itself left unsigned by a crash starts as before: events
// only in the segment, and events already indexed, carry their
// authenticators and are signed over.
func TestACrashedTrailWithAuthenticatorsStarts(t *testing.T) {
	for _, indexed := range []bool{false, true} {
		t.Run(map[bool]string{false: "in the segment", true: "indexed, unsigned"}[indexed], func(t *testing.T) {
			src := t.TempDir()
			opts := AuditOptions{Signer: testSigner, RecordKey: testRecordKey, HeadEvery: 1 << 20, HeadInterval: time.Hour}
			_, l := openAudit(t, src, true, opts)
			appendN(t, l, 3)
			if err := l.catchUp(); err != nil {
				t.Fatal(err)
			}
			if _, err := l.SignHead(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !indexed {
				hold := make(chan struct{})
				var once sync.Once
				l.opts.indexHook = func() { <-hold }
				t.Cleanup(func() { once.Do(func() { close(hold) }) })
			}
			acked := appendN(t, l, 4)
			if indexed {
				if err := l.catchUp(); err != nil {
					t.Fatal(err)
				}
			}
			dst := crashCopy(t, src)
			_, l2 := openAudit(t, dst, true, opts)
			for _, e := range acked {
				if _, err := l2.Get(context.Background(), e.Seq); err != nil {
					t.Fatalf("seq %d: %v", e.Seq, err)
				}
			}
			h, err := l2.SignHead(context.Background())
			if err != nil || h.Seq != 7 {
				t.Fatalf("SignHead = %+v, %v", h, err)
			}
		})
	}
}

// A trail an earlier pamctl (without authenticators) left unsigned by a
// crash is refused, saying how to go on: its events cannot be told from
// a writer's.
func TestAnUnsignedTailWithoutAuthenticatorsIsRefused(t *testing.T) {
	src := t.TempDir()
	_, l := openAudit(t, src, true, AuditOptions{Signer: testSigner, HeadEvery: 1 << 20, HeadInterval: time.Hour})
	appendN(t, l, 4)
	if err := l.catchUp(); err != nil {
		t.Fatal(err)
	}
	dst := crashCopy(t, src)
	db, err := Open(dst, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.AuditLog(AuditOptions{Signer: testSigner, RecordKey: testRecordKey}); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "start the previous version once") {
		t.Fatalf("open = %v", err)
	}
}

// Pruning deletes the pruned events' authenticators with them; the
// anchor event it appends carries its own.
func TestPruneDropsTheAuthenticatorsOfWhatItDeletes(t *testing.T) {
	clock := newFakeClock()
	_, l := openAudit(t, t.TempDir(), true, AuditOptions{Signer: testSigner, RecordKey: testRecordKey, Clock: clock.Now})
	appendN(t, l, 5)
	clock.Set(auditT0.Add(time.Hour))
	appendN(t, l, 2)
	res, err := l.Prune(context.Background(), auditT0.Add(30*time.Minute))
	if err != nil || res.Deleted != 5 {
		t.Fatalf("prune: %+v, %v", res, err)
	}
	err = l.db.view(func(tx *bolt.Tx) error {
		auth := tx.Bucket(bucketAuditAuth)
		for seq := uint64(1); seq <= res.AnchorSeq; seq++ {
			if got := auth.Get(u64(seq)) != nil; got != (seq > 5) {
				t.Errorf("seq %d: authenticator stored %v", seq, got)
			}
		}
		return l.checkAuthenticated(tx, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
}
