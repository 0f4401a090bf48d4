package store

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// unsyncedCommit appends to dir's crashed segment one commit of three
// records (each spanning pages) that a power loss interrupted, and
// returns the file and where each record starts.
func unsyncedCommit(t *testing.T, dir string, acked []audit.Event) (raw []byte, offs []int) {
	t.Helper()
	raw, epoch, _, end := readSegment(t, dir)
	link := audit.Link{Seq: acked[len(acked)-1].Seq, Hash: acked[len(acked)-1].Hash}
	var batch []byte
	for i := range 3 {
		e := benchEvent(100 + i)
		e.Response = strings.Repeat("r", 3000)
		d, err := audit.NewDraft(e, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		line, hash, err := d.Seal(link.Seq+1, link.Hash)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, end+len(batch))
		batch = appendRecord(batch, epoch, link.Seq+1, uint64(end), nil, line)
		link = audit.Link{Seq: link.Seq + 1, Hash: hash}
	}
	if len(raw) < end+len(batch) {
		raw = append(raw, make([]byte, end+len(batch)-len(raw))...)
	}
	copy(raw[end:], batch)
	return raw, offs
}

// A power loss during a commit may keep some of its pages and lose
// others, in any order: a record of that commit that does not verify,
// followed by valid records of the same commit, is its torn end (none of
// it was acknowledged: its fdatasync never returned), and start keeps
// every acknowledged event. Found by a red team: start refused the
// segment as damaged, and pamctl did not start after a power loss.
func TestAuditSegmentPowerLossInsideACommitIsATornEnd(t *testing.T) {
	for _, lost := range []int{0, 1} { // the commit's first record, or its second
		t.Run([]string{"first record lost", "middle record lost"}[lost], func(t *testing.T) {
			dir, acked := crashedTrail(t, 2, 3) // seq 1-5 acknowledged, 3-5 only in the segment
			raw, offs := unsyncedCommit(t, dir, acked)
			clear(raw[offs[lost]+segHeader+100 : offs[lost]+segHeader+1100]) // a page of it stayed zeros
			if err := os.WriteFile(filepath.Join(dir, SegmentFileName), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			_, l := openAudit(t, dir, true, AuditOptions{Signer: testSigner})
			for _, e := range acked {
				if got, err := l.Get(context.Background(), e.Seq); err != nil || got.Hash != e.Hash {
					t.Fatalf("acknowledged seq %d: %v", e.Seq, err)
				}
			}
			if rep, err := l.Verify(context.Background(), testKeys); err != nil || rep.Last < acked[len(acked)-1].Seq {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
		})
	}
}

// A record of a commit that returned, followed by a record of a later
// commit, is damage however it was damaged, its length field included:
// refused, not read as the end. Found by a red team: a length set to 0 or
// past the limit dropped the acknowledged records after it without a word.
func TestAuditSegmentDamagedLengthBeforeALaterCommitIsRefused(t *testing.T) {
	for name, length := range map[string]uint32{"zero length": 0, "length past the limit": segMaxLine + 1, "a shorter length": 40} {
		t.Run(name, func(t *testing.T) {
			dir, _ := crashedTrail(t, 2, 3) // records 1-5, each its own commit; the bucket holds 1-2
			raw, _, recs, _ := readSegment(t, dir)
			off := segFileHeader
			for _, r := range recs[:2] {
				off += segHeader + len(r.line)
			}
			binary.BigEndian.PutUint32(raw[off:off+4], length) // the record of seq 3
			if err := os.WriteFile(filepath.Join(dir, SegmentFileName), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(dir, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.AuditLog(AuditOptions{Signer: testSigner}); !errors.Is(err, ErrSegmentDamaged) || !strings.Contains(err.Error(), "later commit") {
				t.Fatalf("open = %v, want ErrSegmentDamaged", err)
			}
		})
	}
}

// A segment a previous version wrote (records without their commit's
// offset) is read at start, its events indexed, and the emptied segment
// is in the current format.
func TestAuditSegmentOfThePreviousFormatIsRead(t *testing.T) {
	dir, acked := crashedTrail(t, 2, 3)
	_, epoch, recs, _ := readSegment(t, dir)
	old := binary.BigEndian.AppendUint64([]byte(segMagicV1), epoch)
	for _, r := range recs {
		var h [segHeaderV1]byte
		binary.BigEndian.PutUint32(h[0:4], uint32(len(r.line)))
		binary.BigEndian.PutUint64(h[4:12], r.seq)
		binary.BigEndian.PutUint32(h[12:16], recordCRCV1(epoch, r.seq, r.line))
		old = append(append(old, h[:]...), r.line...)
	}
	old = append(old, make([]byte, 4096)...)
	if err := os.WriteFile(filepath.Join(dir, SegmentFileName), old, 0o600); err != nil {
		t.Fatal(err)
	}
	_, l := openAudit(t, dir, true, AuditOptions{Signer: testSigner})
	for _, e := range acked {
		if got, err := l.Get(context.Background(), e.Seq); err != nil || got.Hash != e.Hash {
			t.Fatalf("acknowledged seq %d: %v", e.Seq, err)
		}
	}
	appendN(t, l, 2)
	if err := l.catchUp(); err != nil {
		t.Fatal(err)
	}
	raw, _, got, _ := readSegment(t, dir) // fails unless the current format
	if string(raw[:8]) != segMagic || len(got) != 2 {
		t.Fatalf("after start: %q, %d records", raw[:8], len(got))
	}
}

// A damaged record of a commit of several records, followed by the valid
// rest of that commit and then by a later commit, is refused: the later
// commit shows the earlier one was durable (found by a review: only the
// first valid record after the bad one was looked at, and every later
// acknowledged record was dropped).
func TestAuditSegmentDamageInsideAnEarlierCommitIsRefused(t *testing.T) {
	dir, acked := crashedTrail(t, 2, 4) // seq 1-6 acknowledged, 3-6 only in the segment
	raw, epoch, recs, _ := readSegment(t, dir)
	// Rewrite: seq 1..2 own commits, seq 3..4 one group commit, seq 5..6 own commits.
	b := fileHeader(epoch)
	var at3 int
	for i, r := range recs {
		commit := len(b)
		if i == 3 { // seq 4 belongs to seq 3's commit
			commit = at3
		}
		if i == 2 {
			at3 = len(b)
		}
		b = appendRecord(b, epoch, r.seq, uint64(commit), nil, r.line)
	}
	b = append(b, make([]byte, len(raw)-len(b))...)
	if _, _, got, _, err := parseSegmentFile(b, nil); err != nil || len(got) != len(recs) {
		t.Fatalf("rewritten segment: %d records, %v", len(got), err)
	}
	b[at3+segHeader+10] ^= 0x20 // bit rot in seq 3 (acknowledged: seq 5, 6 were committed after it)
	if err := os.WriteFile(filepath.Join(dir, SegmentFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := db.AuditLog(AuditOptions{Signer: testSigner})
	if errors.Is(err, ErrSegmentDamaged) && strings.Contains(err.Error(), "later commit") {
		return
	}
	if err == nil {
		defer l.Close()
		var missing []uint64
		for _, e := range acked {
			if _, gerr := l.Get(context.Background(), e.Seq); gerr != nil {
				missing = append(missing, e.Seq)
			}
		}
		t.Fatalf("start opened the damaged segment without a word; acknowledged seqs now missing: %v", missing)
	}
	t.Fatalf("open = %v, want ErrSegmentDamaged", err)
}

// A segment made so that a plausible record header starts every few bytes
// (each claiming a long record) is refused as damage at once, not
// checksummed for minutes at start (found by a review).
func TestAuditSegmentOfHeadersEverywhereIsRefusedQuickly(t *testing.T) {
	raw := fileHeader(3)
	for len(raw) < 4<<20 {
		var h [segHeader]byte
		binary.BigEndian.PutUint32(h[0:4], 1<<20) // a record of 1 MiB, claimed
		binary.BigEndian.PutUint64(h[4:12], 7)
		binary.BigEndian.PutUint64(h[12:20], segFileHeader)
		raw = append(raw, h[:]...)
	}
	// Unbounded, the scan would checksum about 170 GiB here.
	if _, _, _, _, err := parseSegmentFile(raw, nil); err == nil || !strings.Contains(err.Error(), "no pamctl wrote") {
		t.Fatalf("parse: %v", err)
	}
}
