package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/vault"
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
		// audit verify opens it, fails at the event and says what it is.
		var reported error
		d, err := start(t, dir, mk, AuditOptions{Inspect: true, OnError: func(err error) { reported = errors.Join(reported, err) }})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.verify()
		wantBreak(t, err, seq, audit.BreakUnauthenticated)
		if !errors.Is(reported, ErrUnauthenticated) {
			t.Fatalf("reported %v", reported)
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
	if _, err := db.AuditLog(AuditOptions{Signer: testSigner, RecordKey: testRecordKey}); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "start that earlier version once") {
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

// A segment in the last release's format carries no authenticators: with a
// RecordKey, what it holds past the tip is refused, saying how to go on,
// never indexed (nor signed over as a trail's first event). Found by a
// review: a fresh trail took a forged record of that format, first head
// and all.
func TestAPreviousFormatSegmentPastTheTipIsRefused(t *testing.T) {
	for _, before := range []int{0, 3} {
		dir := t.TempDir()
		mk, _ := vault.GenerateMasterKey()
		d, err := start(t, dir, mk, AuditOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for range before {
			if err := d.log.Append(context.Background(), benchEvent(0)); err != nil {
				t.Fatal(err)
			}
		}
		st, _ := d.log.Head(context.Background())
		d.stop()
		dr, err := audit.NewDraft(&audit.Event{Type: audit.TypeRequestApproved, Actor: &audit.Actor{Subject: "ciso", Kind: audit.KindUser}, Decision: "approved"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		prev := st.Last.Hash
		if prev == "" {
			prev = audit.GenesisHash
		}
		line, _, err := dr.Seal(st.Last.Seq+1, prev)
		if err != nil {
			t.Fatal(err)
		}
		const epoch = 9
		old := binary.BigEndian.AppendUint64([]byte(segMagicV1), epoch)
		var h [segHeaderV1]byte
		binary.BigEndian.PutUint32(h[0:4], uint32(len(line)))
		binary.BigEndian.PutUint64(h[4:12], st.Last.Seq+1)
		binary.BigEndian.PutUint32(h[12:16], recordCRCV1(epoch, st.Last.Seq+1, line))
		old = append(append(old, h[:]...), line...)
		old = append(old, make([]byte, 4096)...)
		if err := os.WriteFile(filepath.Join(dir, SegmentFileName), old, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := start(t, dir, mk, AuditOptions{}); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "start the previous version once") {
			t.Fatalf("before=%d: start = %v", before, err)
		}
	}
}

// A segment a development build wrote (records with their commit, no
// authenticator) is refused, not read as torn and emptied.
func TestADevelopmentFormatSegmentIsRefused(t *testing.T) {
	raw := append(binary.BigEndian.AppendUint64([]byte(segMagicDev), 2), make([]byte, 4096)...)
	raw[16] = 1 // something after the header
	if _, _, _, _, err := parseSegmentFile(raw, nil); err == nil || !strings.Contains(err.Error(), "development build") {
		t.Fatalf("parse: %v", err)
	}
}

// An unsigned retention anchor is refused: past the last signed head, a
// writer without keys could name any hash in it and have the next head
// signed over that (found by a review); at the head, naming its real hash,
// it stands in for signed events the writer deleted, which the high-water
// mark takes as pruned (found by a black-box red team).
func TestAnUnsignedAnchorIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  uint64
		real bool // the hash of the event at seq
	}{{"past the head", 9, false}, {"at the head, its real hash", 5, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, mk := newDeployment(t, 5)
			tamperFile(t, dir, func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketAudit)
				hash := strings.Repeat("ab", 32)
				if tc.real {
					line, err := recordLine(b.Get(u64(tc.seq)))
					if err != nil {
						return err
					}
					hash = audit.StoredHash(line)
				}
				for s := uint64(1); s <= 5; s++ {
					if err := b.Delete(u64(s)); err != nil {
						return err
					}
				}
				return put(tx, bucketAuditMeta, keyAuditAnchor, &audit.Anchor{Seq: tc.seq, Hash: hash, Before: time.Now().UTC(), Time: time.Now().UTC()})
			})
			if _, err := start(t, dir, mk, AuditOptions{}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "not signed") {
				t.Fatalf("start = %v", err)
			}
		})
	}
}

// Every error that means the trail was changed by something other than
// pamctl Is ErrTampered, however it is wrapped; others are not.
func TestTamperErrorsAreErrTampered(t *testing.T) {
	be := &audit.BreakError{Seq: 7, Expected: "a", Found: "b"}
	for _, err := range []error{
		ErrUnauthenticated, ErrHeadMissing, ErrBelowHighWater,
		fmt.Errorf("store: audit: %w: seq 9", ErrUnauthenticated),
		headMissing(&DB{}, audit.Link{Seq: 3}),
		&highWaterError{be: be},
		fmt.Errorf("signing: %w", &highWaterError{be: be}),
		fmt.Errorf("refusing: %w (%w)", be, ErrBelowHighWater),
	} {
		if !errors.Is(err, ErrTampered) {
			t.Errorf("%v: not ErrTampered", err)
		}
	}
	for _, err := range []error{errors.New("disk full"), be, ErrRecordForged, context.DeadlineExceeded} {
		if errors.Is(err, ErrTampered) {
			t.Errorf("%v: ErrTampered, but it says nothing of who changed the trail", err)
		}
	}
	if !errors.Is(ErrHeadMissing, ErrHeadMissing) || errors.Is(ErrHeadMissing, ErrBelowHighWater) {
		t.Error("the sentinels must still be told apart")
	}
}
