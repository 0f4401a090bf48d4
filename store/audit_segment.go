package store

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
)

// The audit segment is the durable audit trail's write-ahead file,
// SegmentFileName next to the database. A durable append is acknowledged
// once its record is in the segment and the segment is fdatasynced: one
// device flush, shared by every append of a group commit, where a bbolt
// commit needs two (pages, then meta). The bbolt audit bucket stays the
// index every reader uses: an indexer goroutine copies each synced group
// into it right after (its own fsyncs off the caller's path), readers wait
// until it holds everything acknowledged before they read (catchUp), and
// at start every record the bucket lacks is indexed from the segment, so a
// crash between the two loses nothing. Once the bucket holds every record
// the segment is emptied (at start, on Close, after Prune, and by the
// first group written after it passes segmentTruncateAt).
//
// The file starts with a header (magic, epoch) and is preallocated with
// written zeros (see segment): records overwrite it in place, so the one
// fdatasync per group flushes data only. A record is
//
//	len     uint32 BE   length of line
//	seq     uint64 BE   the event's seq
//	commit  uint64 BE   file offset of the first record of its commit
//	auth    16 bytes    the event's authenticator (audit_auth.go; zeros without a key)
//	crc     uint32 BE   CRC-32C of the epoch, the header before it and line
//	line                the sealed event line (what the bucket stores)
//
// At start the records of the header's epoch are read up to the first one
// that does not verify, when it belongs to the last commit: a torn write
// (never acknowledged: its fdatasync did not return; after a power loss
// valid records of that commit may follow it), zeros, or a record of an
// older epoch left by emptying. Anything else that does not read back — a
// bad record followed by a valid one of a later commit, a gap in seqs, a
// record whose seq the bucket holds with other bytes, a line that does not
// chain from the bucket's tip — is damage, and the log refuses to open
// rather than index it. Files of the format before commit offsets
// (segMagicV1) are read at start with the rule that was theirs.
const SegmentFileName = "audit.seg"

const (
	// segHeader is a record's header: length uint32, seq uint64, the
	// file offset of its commit's first record uint64, the event's
	// authenticator (authLen bytes, zeros without a RecordKey), CRC-32C
	// uint32.
	segHeader   = 40
	segHeaderV1 = 16 // before the commit's offset (segMagicV1 files)
	// segMaxLine bounds one record: far above any sealed event (the trail
	// cuts prompts at 16 KiB), so a larger length is damage or a torn
	// length field, never an event.
	segMaxLine = 16 << 20
	// segmentTruncateAt is the size past which the next group empties the
	// segment first (once the bucket holds all of it).
	segmentTruncateAt = 4 << 20
	// segMaxFile bounds what start reads: segmentTruncateAt plus one
	// group of maxAsyncBatch events is far below it.
	segMaxFile = 1 << 30
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// ErrSegmentDamaged means the audit segment holds bytes that are not a torn
// final write: edited, truncated in the middle, or from another trail.
var ErrSegmentDamaged = errors.New("store: audit segment is damaged")

// segment is the open segment file: a header (segMagic, then the epoch,
// uint64 BE) and records from segFileHeader on. The file is preallocated
// with written zeros and records overwrite it in place, so an fdatasync
// flushes data only (no size or extent change for the journal). Emptying
// it writes a new epoch into the header: records of older epochs no longer
// verify (the epoch is in every record's checksum), so what follows the
// last current record reads as the end, whatever it holds.
type segment struct {
	f      *os.File
	path   string
	epoch  uint64
	pos    int64  // where the next record goes
	alloc  int64  // bytes preallocated (written) in the file
	buf    []byte // records of the batch not yet written (leader only), up to segChunk
	limit  int64  // empty past this position (segmentTruncateAt)
	noSync bool   // the database skips fsync (Options.NoSync: tests)
	rc     syscall.RawConn
	flush  *flushPolicy // how each fdatasync is issued (audit_flush.go)
	v1     bool         // a segMagicV1 file, read at start; reset rewrites it
	mac    *authMAC     // records' authenticators under AuditOptions.RecordKey (nil without); the appender's (under tipMu)

	writeFault func(off int64, n int) error // tests: fail a write (nil: none)
}

const (
	segFileHeader = 16
	segMagic      = "pamctls3"
	// segMagicV1 files (the last release's: records without their commit
	// or authenticator) are read at start; what they hold past the tip
	// cannot be authenticated, so a log with a RecordKey refuses it
	// (walkSegment). The segment is rewritten in the current format when
	// it is emptied.
	segMagicV1 = "pamctlsg"
	// segMagicDev files were written by development builds between the
	// two (records with their commit, no authenticator): refused.
	segMagicDev = "pamctls2"
	// segPrealloc is how much of a new file is written with zeros ahead;
	// past it the file grows by segGrow at a time (one full fsync each),
	// up to about segmentTruncateAt, and is then reused.
	segPrealloc = 256 << 10
	segGrow     = 1 << 20
	// segChunk bounds the buffer of a batch's records: a larger batch
	// (a thousand streams ending at once) is written in chunks of about
	// this size, then synced once, so the buffer never grows past it.
	segChunk = 64 << 10
)

// segRecord is one record read back at start, or handed to the indexer.
type segRecord struct {
	seq  uint64
	line []byte
	rec  []byte // the stored record around line (indexer only)
	prev string // chain link before it (indexer only)
	hash string
	d    *audit.Draft // the sealed draft (indexer only; nil at recovery)
	// authed: written, or read back with its authenticator checked (a
	// current-format record under the log's RecordKey); what recovery
	// meets without one past the tip is refused.
	authed bool
	mac    [authLen]byte // the authenticator, when written here (indexer)
}

func recordCRC(epoch uint64, head []byte, line []byte) uint32 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], epoch)
	return crc32.Update(crc32.Update(crc32.Update(0, crc32c, b[:]), crc32c, head), crc32c, line)
}

// appendRecord appends the record of seq, written by the commit whose
// first record is at file offset commit, with the event's authenticator
// mac (zeros when nil).
func appendRecord(b []byte, epoch, seq, commit uint64, mac []byte, line []byte) []byte {
	var h [segHeader]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(line)))
	binary.BigEndian.PutUint64(h[4:12], seq)
	binary.BigEndian.PutUint64(h[12:20], commit)
	copy(h[20:36], mac)
	binary.BigEndian.PutUint32(h[36:40], recordCRC(epoch, h[:36], line))
	b = append(b, h[:]...)
	return append(b, line...)
}

func recordCRCV1(epoch, seq uint64, line []byte) uint32 {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], epoch)
	binary.BigEndian.PutUint64(b[8:16], seq)
	return crc32.Update(crc32.Update(0, crc32c, b[:]), crc32c, line)
}

func fileHeader(epoch uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(segMagic), epoch)
}

// openSegment opens (creating) the segment in dir and reads its records.
// What follows the last record of the current epoch (a torn write, zeros,
// older epochs' records) is the end; damage is ErrSegmentDamaged.
func openSegment(dir string, noSync bool, key []byte) (*segment, []segRecord, error) {
	path := filepath.Join(dir, SegmentFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("store: audit segment: %w", err)
	}
	s := &segment{f: f, path: path, limit: segmentTruncateAt, noSync: noSync, mac: newAuthMAC(key), flush: newFlushPolicy()}
	fail := func(err error) (*segment, []segRecord, error) {
		f.Close()
		return nil, nil, err
	}
	if s.rc, err = f.SyscallConn(); err != nil {
		return fail(fmt.Errorf("store: audit segment: %w", err))
	}
	damaged := func(why string) (*segment, []segRecord, error) {
		return fail(fmt.Errorf("%w: %s: %s. Its events may be missing from the trail: keep the file for inspection, run `pamctl audit verify`, and move it away (or restore from a backup) to start", ErrSegmentDamaged, path, why))
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > segMaxFile {
		return damaged(fmt.Sprintf("%d bytes, more than a segment ever holds (%d)", fi.Size(), int64(segMaxFile)))
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		return fail(fmt.Errorf("store: audit segment: read: %w", err))
	}
	if len(raw) < segFileHeader && allZero(raw) {
		// New (or created but never written): start epoch 1.
		s.epoch = 1
		if err := s.prepare(0); err != nil {
			return fail(err)
		}
		return s, nil, nil
	}
	epoch, v1, recs, good, err := parseSegmentFile(raw, key)
	if err != nil {
		return damaged(err.Error())
	}
	s.epoch, s.v1 = epoch, v1
	s.pos = segFileHeader + good
	if err := s.prepare(int64(len(raw))); err != nil {
		return fail(err)
	}
	return s, recs, nil
}

// readSegmentFile reads the segment in dir without creating or changing it:
// its epoch (0 when there is none yet) and records, or ErrSegmentDamaged.
func readSegmentFile(dir string, key []byte) (epoch uint64, recs []segRecord, err error) {
	path := filepath.Join(dir, SegmentFileName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("store: audit segment: %w", err)
	}
	defer f.Close()
	damaged := func(why string) (uint64, []segRecord, error) {
		return 0, nil, fmt.Errorf("%w: %s: %s. Its events may be missing from the trail shown here: keep the file for inspection; pamctl serve refuses to start until it is moved away (or the data dir restored from a backup)", ErrSegmentDamaged, path, why)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > segMaxFile {
		return damaged(fmt.Sprintf("%d bytes, more than a segment ever holds (%d)", fi.Size(), int64(segMaxFile)))
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		return 0, nil, fmt.Errorf("store: audit segment: read: %w", err)
	}
	if len(raw) < segFileHeader && allZero(raw) {
		return 0, nil, nil
	}
	if epoch, _, recs, _, err = parseSegmentFile(raw, key); err != nil {
		return damaged(err.Error())
	}
	return epoch, recs, nil
}

// parseSegmentFile reads a whole segment file (at least its header): its
// epoch, whether it is in the format before records named their commit,
// its records and the length of them.
func parseSegmentFile(raw []byte, key []byte) (epoch uint64, v1 bool, recs []segRecord, good int64, err error) {
	if len(raw) < segFileHeader {
		return 0, false, nil, 0, errors.New("it does not start with a segment header")
	}
	switch string(raw[:8]) {
	case segMagic:
	case segMagicV1:
		v1 = true
	case segMagicDev:
		return 0, false, nil, 0, errors.New("it is in the format of a development build of pamctl (records without authenticators), which this version does not read; if its events are in the trail (`pamctl audit verify` with that build), move it away")
	default:
		return 0, false, nil, 0, errors.New("it does not start with a segment header")
	}
	epoch = binary.BigEndian.Uint64(raw[8:16])
	if v1 {
		recs, good, err = parseSegmentV1(raw[segFileHeader:], epoch)
	} else {
		recs, good, err = parseSegment(raw[segFileHeader:], epoch, key)
	}
	return epoch, v1, recs, good, err
}

// prepare makes sure the file is written (zeros) up to segPrealloc and
// holds the header of s.epoch; size is the file's current size.
func (s *segment) prepare(size int64) error {
	if size < segFileHeader {
		if _, err := s.f.WriteAt(fileHeader(s.epoch), 0); err != nil {
			return fmt.Errorf("store: audit segment: write header: %w", err)
		}
		size = segFileHeader
		s.pos = segFileHeader
	}
	s.alloc = size
	if size < segPrealloc {
		if err := s.zeroTo(segPrealloc); err != nil {
			return err
		}
		if !s.noSync {
			if err := s.f.Sync(); err != nil { // the new size and extents
				return fmt.Errorf("store: audit segment: fsync: %w", err)
			}
		}
	}
	return nil
}

// zeroTo writes zeros from s.alloc to end, so later records overwrite
// written blocks in place.
func (s *segment) zeroTo(end int64) error {
	if err := s.writeZeros(s.alloc, end); err != nil {
		return fmt.Errorf("store: audit segment: preallocate: %w", err)
	}
	s.alloc = end
	return nil
}

// writeZeros writes zeros over [from, end), 64 KiB at a time.
func (s *segment) writeZeros(from, end int64) error {
	if end <= from {
		return nil
	}
	zero := make([]byte, min(64<<10, end-from))
	for off := from; off < end; off += int64(len(zero)) {
		if _, err := s.f.WriteAt(zero[:min(int64(len(zero)), end-off)], off); err != nil {
			return err
		}
	}
	return nil
}

// parseSegment reads records of epoch from raw (the file after its
// header); good is the length of its valid records. A record that does not
// verify ends them when it belongs to the last commit, which a crash (or
// a power loss, which may keep any of the commit's pages and lose others)
// interrupted before its fdatasync returned: no record of this epoch
// follows it, or only records of that same commit (their commit offset is
// at or before it). A record of a later commit after it is damage: a
// later commit is written only once the earlier one is durable.
func parseSegment(raw []byte, epoch uint64, key []byte) (recs []segRecord, good int64, err error) {
	// What the scans past a bad record may checksum: every record once,
	// and then some. A file made so that a plausible header starts at
	// every byte would otherwise cost a checksum of up to segMaxLine at
	// each.
	budget := 2*len(raw) + segMaxLine
	off := 0
	for off < len(raw) {
		seq, line, ok := recordAt(raw, off, epoch, key)
		if !ok {
			// Every valid record after it must be of the same commit.
			for from := off + 1; ; {
				at, lseq, commit, n, found := nextRecord(raw, from, epoch, key, &budget)
				if budget < 0 {
					return nil, 0, fmt.Errorf("past byte %d it holds what no pamctl wrote: more would-be record headers than the file has room for records", segFileHeader+off)
				}
				if !found {
					return recs, int64(off), nil
				}
				if commit > uint64(segFileHeader+off) {
					return nil, 0, fmt.Errorf("the record at byte %d does not verify and one of a later commit follows it (seq %d at byte %d)", segFileHeader+off, lseq, segFileHeader+at)
				}
				from = at + segHeader + n
			}
		}
		if len(recs) > 0 && seq != recs[len(recs)-1].seq+1 {
			return nil, 0, fmt.Errorf("the record at byte %d has seq %d after seq %d", segFileHeader+off, seq, recs[len(recs)-1].seq)
		}
		recs = append(recs, segRecord{seq: seq, line: bytes.Clone(line), authed: key != nil})
		off += segHeader + len(line)
	}
	return recs, int64(off), nil
}

// recordAt reads the record of epoch at raw[off:] (raw is the file after
// its header), if one verifies there.
func recordAt(raw []byte, off int, epoch uint64, key []byte) (seq uint64, line []byte, ok bool) {
	rest := raw[off:]
	if len(rest) < segHeader {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint32(rest[0:4]))
	if n == 0 || n > segMaxLine || len(rest) < segHeader+n {
		return 0, nil, false
	}
	seq = binary.BigEndian.Uint64(rest[4:12])
	commit := binary.BigEndian.Uint64(rest[12:20])
	if commit < segFileHeader || commit > uint64(segFileHeader+off) {
		return 0, nil, false
	}
	line = rest[segHeader : segHeader+n]
	if recordCRC(epoch, rest[:36], line) != binary.BigEndian.Uint32(rest[36:40]) {
		return 0, nil, false
	}
	if key != nil && !hmac.Equal(rest[20:36], newAuthMAC(key).of(seq, audit.StoredHash(line))) {
		return 0, nil, false // not written by this deployment
	}
	return seq, line, true
}

// nextRecord finds the first record of epoch that verifies at or after
// raw[from:], whatever lies before it (a damaged length field does not
// hide the records after it), and the length of its line. It stops once
// budget (bytes it may checksum) runs out.
func nextRecord(raw []byte, from int, epoch uint64, key []byte, budget *int) (at int, seq, commit uint64, n int, ok bool) {
	for i := from; i+segHeader <= len(raw) && *budget >= 0; i++ {
		if raw[i] > segMaxLine>>24 || raw[i]|raw[i+1]|raw[i+2]|raw[i+3] == 0 {
			continue // no record is that long, nor 0 long (zeros ahead)
		}
		n := int(binary.BigEndian.Uint32(raw[i : i+4]))
		commit := binary.BigEndian.Uint64(raw[i+12 : i+20])
		if n > segMaxLine || i+segHeader+n > len(raw) || commit < segFileHeader || commit > uint64(segFileHeader+i) {
			continue // recordAt would refuse it unread
		}
		*budget -= n // what recordAt checksums
		if seq, line, ok := recordAt(raw, i, epoch, key); ok {
			return i, seq, binary.BigEndian.Uint64(raw[i+12 : i+20]), len(line), true
		}
	}
	return 0, 0, 0, 0, false
}

// parseSegmentV1 is parseSegment for segMagicV1 files, whose records do
// not name their commit: a record that does not verify ends them unless
// a valid one follows it.
func parseSegmentV1(raw []byte, epoch uint64) (recs []segRecord, good int64, err error) {
	off := 0
	for off < len(raw) {
		rest := raw[off:]
		if len(rest) < segHeaderV1 {
			return recs, int64(off), nil
		}
		n := int(binary.BigEndian.Uint32(rest[0:4]))
		seq := binary.BigEndian.Uint64(rest[4:12])
		if n == 0 || n > segMaxLine || len(rest) < segHeaderV1+n ||
			recordCRCV1(epoch, seq, rest[segHeaderV1:segHeaderV1+n]) != binary.BigEndian.Uint32(rest[12:16]) {
			if n > 0 && n <= segMaxLine && len(rest) >= segHeaderV1+n && validAtV1(rest[segHeaderV1+n:], epoch) {
				return nil, 0, fmt.Errorf("the record at byte %d (seq %d) fails its checksum and a valid one follows", segFileHeader+off, seq)
			}
			return recs, int64(off), nil
		}
		if len(recs) > 0 && seq != recs[len(recs)-1].seq+1 {
			return nil, 0, fmt.Errorf("the record at byte %d has seq %d after seq %d", segFileHeader+off, seq, recs[len(recs)-1].seq)
		}
		recs = append(recs, segRecord{seq: seq, line: bytes.Clone(rest[segHeaderV1 : segHeaderV1+n])})
		off += segHeaderV1 + n
	}
	return recs, int64(off), nil
}

// validAtV1 reports whether b starts with a record of epoch (V1).
func validAtV1(b []byte, epoch uint64) bool {
	if len(b) < segHeaderV1 {
		return false
	}
	n := int(binary.BigEndian.Uint32(b[0:4]))
	if n == 0 || n > segMaxLine || len(b) < segHeaderV1+n {
		return false
	}
	return recordCRCV1(epoch, binary.BigEndian.Uint64(b[4:12]), b[segHeaderV1:segHeaderV1+n]) == binary.BigEndian.Uint32(b[12:16])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// record appends the record of seq to b, written by the commit whose
// first record goes at commit.
// The record carries the authenticator of the event (hash is its hash),
// also kept in mac for the indexer.
func (s *segment) record(b []byte, seq uint64, commit int64, hash string, line []byte, mac *[authLen]byte) []byte {
	if s.mac == nil {
		return appendRecord(b, s.epoch, seq, uint64(commit), nil, line)
	}
	copy(mac[:], s.mac.of(seq, hash))
	return appendRecord(b, s.epoch, seq, uint64(commit), mac[:], line)
}

// write writes b at the end of the records and fdatasyncs. A failed write
// leaves pos where it was (the next write overwrites the partial record);
// a failed sync leaves the file's state unknown and the caller must stop
// using it.
func (s *segment) write(b []byte) (synced bool, err error) {
	grew, err := s.writeAt(b, s.pos)
	if err != nil {
		return true, err
	}
	return s.commit(s.pos+int64(len(b)), grew)
}

// writeAt writes b at off, at or past pos (records not yet committed),
// zeroing ahead first when b reaches past the preallocated part; grew
// reports that it did (the file's size changed).
func (s *segment) writeAt(b []byte, off int64) (grew bool, err error) {
	end := off + int64(len(b))
	if end > s.alloc {
		// Past the preallocated part: zeros ahead, then one full fsync
		// at the commit (the size changes).
		if err := s.zeroTo(max(end, s.alloc+segGrow)); err != nil {
			return false, err
		}
		grew = true
	}
	if s.writeFault != nil {
		if err := s.writeFault(off, len(b)); err != nil {
			return grew, fmt.Errorf("store: audit segment: write: %w", err)
		}
	}
	if _, err := s.f.WriteAt(b, off); err != nil {
		return grew, fmt.Errorf("store: audit segment: write: %w", err)
	}
	return grew, nil
}

// discard zeroes what a failed batch may have written from pos up to end,
// and syncs, so that no record of it is read back: not after a crash, and
// not past the end of the next, shorter batch (records that follow a bad
// one are taken for damage).
func (s *segment) discard(end int64) error {
	end = min(end, s.alloc)
	if end <= s.pos {
		return nil
	}
	if err := s.writeZeros(s.pos, end); err != nil {
		return fmt.Errorf("store: audit segment: clear a failed write: %w", err)
	}
	return s.sync()
}

// commit makes what writeAt wrote up to end durable (a full fsync when the
// file grew, else an fdatasync) and the end of the records. A failed sync
// leaves the file's state unknown: synced is false and the caller must
// stop using it.
func (s *segment) commit(end int64, grew bool) (synced bool, err error) {
	if grew && !s.noSync {
		if err := s.f.Sync(); err != nil {
			return false, fmt.Errorf("store: audit segment: fsync: %w", err)
		}
	} else if err := s.sync(); err != nil {
		return false, err
	}
	s.pos = end
	return true, nil
}

// reset empties the segment: a new epoch in the header, synced.
func (s *segment) reset() error {
	if s.pos == segFileHeader && !s.v1 {
		return nil
	}
	if _, err := s.f.WriteAt(fileHeader(s.epoch+1), 0); err != nil {
		return fmt.Errorf("store: audit segment: write header: %w", err)
	}
	if err := s.sync(); err != nil {
		return err
	}
	s.epoch++
	s.pos, s.v1 = segFileHeader, false
	return nil
}

func (s *segment) sync() error {
	if s.noSync {
		return nil
	}
	var err error
	if cerr := s.rc.Control(func(fd uintptr) { err = s.flush.flush(fd) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: audit segment: fdatasync: %w", err)
	}
	return nil
}

func (s *segment) close() error { return s.f.Close() }

// recoverSegment indexes the records of the segment the bucket lacks, in
// one transaction, after checking that those it has match byte for byte
// and that the new ones chain from the bucket's tip.
func (l *AuditLog) recoverSegment(recs []segRecord) error {
	if len(recs) == 0 {
		return nil
	}
	var first *audit.SignedHead
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		first, _, err = l.walkSegment(tx, recs, true)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: audit: index the segment: %w", err)
	}
	return l.raiseFirst(first)
}

// walkSegment checks recs against the bucket in tx: those it holds must
// match byte for byte (or be pruned since), the others chain from its
// tip. With index it stores those (tx is writable), with the trail's
// first head when the trail begins there; pending are their seqs.
func (l *AuditLog) walkSegment(tx *bolt.Tx, recs []segRecord, index bool) (first *audit.SignedHead, pending []uint64, err error) {
	tip, err := readTip(tx)
	if err != nil {
		return nil, nil, err
	}
	b := tx.Bucket(bucketAudit)
	// The trail's first head is signed with its first event; a trail
	// that had events keeps its head (or lost it: open refuses that).
	fresh := tip.Seq == 0
	var v *audit.Verifier
	for _, r := range recs {
		if r.seq <= tip.Seq {
			var stored []byte
			if b != nil {
				stored = b.Get(u64(r.seq))
			}
			if stored == nil {
				a, err := readAnchor(tx)
				if err != nil {
					return nil, nil, err
				}
				if a != nil && r.seq <= a.Seq {
					continue // pruned since
				}
				return nil, nil, fmt.Errorf("%w: it holds seq %d, which %s does not", ErrSegmentDamaged, r.seq, l.db.path())
			}
			line, err := recordLine(stored)
			if err != nil {
				return nil, nil, err
			}
			if !bytes.Equal(line, r.line) {
				return nil, nil, fmt.Errorf("%w: its seq %d differs from the one stored in %s: one of them was edited. Run `pamctl audit verify`", ErrSegmentDamaged, r.seq, l.db.path())
			}
			continue
		}
		if index && l.opts.RecordKey != nil && !r.authed {
			return nil, nil, fmt.Errorf("%w: %s holds event seq %d, not yet in %s, in the previous release's format, which carries no authenticator: pamctl cannot tell it from one a writer of the data dir added. If this deployment was upgraded right after a crash, and your sinks or off-host anchors show the same events, start the previous version once on this data dir and stop it cleanly (its events are then in the trail under a signed head), then start this version", ErrUnauthenticated, filepath.Join(l.db.dir, SegmentFileName), r.seq, l.db.path())
		}
		if v == nil {
			v = audit.NewRangeVerifier(tip, nil)
		}
		if err := v.Add(r.line); err != nil {
			return nil, nil, fmt.Errorf("%w: seq %d does not chain from the trail's last event (seq %d): %w", ErrSegmentDamaged, r.seq, tip.Seq, err)
		}
		hash := audit.StoredHash(r.line)
		pending = append(pending, r.seq)
		if index {
			if err := b.Put(u64(r.seq), wrapLine(r.line)); err != nil {
				return nil, nil, fmt.Errorf("store: audit put: %w", err)
			}
			if r.authed {
				if err := l.putAuth(tx, r.seq, hash); err != nil {
					return nil, nil, err
				}
			}
			if fresh {
				var out sealed
				if err := l.firstHead(tx, r.seq, hash, &out); err != nil {
					return nil, nil, err
				}
				if out.head != nil {
					first = out.head
				}
			}
		}
		tip = audit.Link{Seq: r.seq, Hash: hash}
	}
	return first, pending, nil
}

// indexer copies synced records into the bucket.
type indexer struct {
	mu      sync.Mutex
	cond    sync.Cond
	queue   []segRecord
	indexed uint64 // the bucket holds every record through this seq
	err     error  // sticky: the bucket could not be written
	want    uint64 // the last seq a reader in catchUp needs: commit what is queued until indexed
	kick    chan struct{}
}

// The indexer gathers synced records for up to indexGather, or until
// indexGatherMax are queued or a reader waits, before one bucket commit
// takes them all. The records are durable in the segment already; each
// bucket commit costs two fdatasyncs and a B+tree write, and committed
// per group (as it was) it took 8-10 % of the proxy's CPU under load and
// queued its flushes ahead of the next group's fdatasync on the same
// device (docs/performance.md).
const (
	indexGather    = 20 * time.Millisecond
	indexGatherMax = 1024
)

// indexLoop runs the indexer until Close, draining its queue first.
func (l *AuditLog) indexLoop() {
	defer l.loops.Done()
	ix := &l.ix
	var batch []segRecord
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	for {
		stopping := false
		ix.mu.Lock()
		queued := len(ix.queue) > 0
		ix.mu.Unlock()
		if queued {
			// Records came while the last commit ran: their window
			// starts now (their kick may have been taken already).
			stopping = l.gatherIndex(gather)
		} else {
			select {
			case <-ix.kick:
				stopping = l.gatherIndex(gather)
			case <-l.stop:
				stopping = true
			}
		}
		// Commit what is queued, and again only while a reader waits,
		// the queue is full or the log closes: under steady appends a
		// commit that a reader asked for must not turn into one commit
		// after another of what arrived during the last.
		for {
			ix.mu.Lock()
			batch, ix.queue = ix.queue, batch[:0]
			failed := ix.err != nil
			ix.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			if failed {
				continue // keep draining; catchUp reports the error
			}
			err := l.indexBatch(batch)
			ix.mu.Lock()
			if err != nil {
				ix.err = fmt.Errorf("store: audit: index %d events (seq %d-%d, safe in %s and indexed at the next start): %w",
					len(batch), batch[0].seq, batch[len(batch)-1].seq, l.seg.path, err)
			} else {
				ix.indexed = batch[len(batch)-1].seq
			}
			ix.cond.Broadcast()
			again := stopping || ix.err != nil || ix.urgent()
			ix.mu.Unlock()
			if err != nil {
				l.opts.OnError(err)
			}
			clear(batch)
			if !again {
				break
			}
		}
		if stopping {
			return
		}
	}
}

// urgent reports whether what is queued must be committed without
// gathering: the queue is full, or a reader waits for more than is indexed.
// ix.mu is held.
func (ix *indexer) urgent() bool {
	return len(ix.queue) >= indexGatherMax || ix.indexed < ix.want
}

// gatherIndex waits until the queue is worth a commit: indexGatherMax
// records, a reader waiting, indexGather past the first record, or Close
// (then it reports true).
func (l *AuditLog) gatherIndex(gather *time.Timer) (stopping bool) {
	ix := &l.ix
	gather.Reset(l.opts.indexGather)
	defer gather.Stop()
	for {
		ix.mu.Lock()
		ready := ix.urgent()
		ix.mu.Unlock()
		if ready {
			return false
		}
		select {
		case <-ix.kick: // more records, or a reader: look again
		case <-gather.C:
			return false
		case <-l.stop:
			return true
		}
	}
}

// indexBatch stores synced records in one transaction and publishes them.
func (l *AuditLog) indexBatch(batch []segRecord) error {
	if l.opts.indexHook != nil {
		l.opts.indexHook()
	}
	var first *audit.SignedHead
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		first = nil
		b := tx.Bucket(bucketAudit)
		b.FillPercent = 1
		auth, err := l.authBucket(tx)
		if err != nil {
			return err
		}
		for i := range batch {
			r := &batch[i]
			if err := b.Put(u64(r.seq), r.rec); err != nil {
				return fmt.Errorf("store: audit put: %w", err)
			}
			if auth != nil { // then the appender put the MAC in r.mac
				if err := putMAC(auth, r.seq, r.mac[:]); err != nil {
					return err
				}
			}
			var out sealed
			if err := l.firstHead(tx, r.seq, r.hash, &out); err != nil {
				return err
			}
			if out.head != nil {
				first = out.head
			}
			e := r.d.Event(r.seq, r.prev, r.hash)
			tx.OnCommit(func() { l.committed(e) })
		}
		return nil
	})
	if err != nil {
		return err
	}
	// bbolt copied the records into its pages: their drafts' buffers go
	// to the next events.
	for i := range batch {
		if d := batch[i].d; d != nil {
			d.Release()
		}
		batch[i].rec, batch[i].line = nil, nil
	}
	if err := l.raiseFirst(first); err != nil {
		l.opts.OnError(err) // the head is stored; the next start raises the mark
	}
	return nil
}

// enqueueIndex hands records the segment holds to the indexer. It wakes
// the indexer only when the queue starts (the indexer then opens its
// gathering window) or turns full: a kick per group woke the indexer's
// goroutine for nothing during its window, a futex wake on the
// appender's path at every durable append (docs/performance.md).
func (l *AuditLog) enqueueIndex(recs []segRecord) {
	l.ix.mu.Lock()
	was := len(l.ix.queue)
	l.ix.queue = append(l.ix.queue, recs...)
	kick := was == 0 || was < indexGatherMax && len(l.ix.queue) >= indexGatherMax
	l.ix.mu.Unlock()
	if !kick {
		return
	}
	select {
	case l.ix.kick <- struct{}{}:
	default:
	}
}

// catchUp waits until the bucket holds every event acknowledged so far
// (durable mode with a segment; otherwise it returns at once).
func (l *AuditLog) catchUp() error {
	if l.seg == nil {
		return nil
	}
	target := l.written.Load()
	ix := &l.ix
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.indexed < target && ix.err == nil {
		ix.want = max(ix.want, target) // the indexer commits without gathering
		select {
		case ix.kick <- struct{}{}:
		default:
		}
	}
	for ix.indexed < target && ix.err == nil {
		ix.cond.Wait()
	}
	return ix.err
}

// truncateIndexedLocked empties the segment if the bucket holds all of it;
// tipMu is held.
func (l *AuditLog) truncateIndexedLocked() {
	l.ix.mu.Lock()
	done := l.ix.err == nil && l.ix.indexed >= l.written.Load()
	l.ix.mu.Unlock()
	if !done || l.segErr != nil {
		return
	}
	if err := l.seg.reset(); err != nil {
		l.segErr = err
		l.opts.OnError(err)
	}
}

// writeGeneration seals gen after the segment's tip, writes it as one
// batch of records with one fdatasync, and hands it to the indexer.
func (l *AuditLog) writeGeneration(gen []*pendingAppend) {
	l.tipMu.Lock()
	if l.segErr != nil {
		for _, p := range gen {
			p.err = fmt.Errorf("store: audit: the segment failed earlier (%w); restart pamctl", l.segErr)
		}
		l.tipMu.Unlock()
		return
	}
	if err := l.indexErr(); err != nil {
		for _, p := range gen {
			p.err = err
		}
		l.tipMu.Unlock()
		return
	}
	if l.seg.pos >= l.seg.limit {
		// Empty the segment once the bucket holds all of it: this group
		// waits for one index commit, once per segmentTruncateAt bytes.
		if err := l.catchUp(); err == nil {
			l.truncateIndexedLocked()
		}
	}
	tip := l.tip
	buf := l.seg.buf[:0]
	off, grew := l.seg.pos, false // where buf goes; whether a write grew the file
	// A batch written in chunks goes out with its first record's header
	// zeroed, written last: until then nothing of the batch parses (a
	// record of length 0 ends the records), so a batch that fails, or a
	// crash before it is whole, leaves no record a restart would index.
	var firstHeader [segHeader]byte
	var werr error
	recs := make([]segRecord, 0, len(gen))
	var ok []*pendingAppend
	for i, p := range gen {
		if len(buf) >= segChunk {
			// Write what is ready; the batch is synced once, at the end.
			if off == l.seg.pos {
				copy(firstHeader[:], buf)
				clear(buf[:segHeader])
			}
			g, err := l.seg.writeAt(buf, off)
			grew = grew || g
			if err != nil {
				werr = err
				for _, q := range gen[i:] {
					q.err = err
				}
				break
			}
			off += int64(len(buf))
			buf = buf[:0]
		}
		if l.opts.sealHook != nil {
			if p.err = l.opts.sealHook(p.d); p.err != nil {
				continue
			}
		}
		seq := tip.Seq + 1
		rec, line, hash, err := p.d.SealWrapped(seq, tip.Hash, recordPrefix, recordSuffix)
		if err != nil {
			p.err = err
			continue
		}
		p.at = sealed{seq: seq, prev: tip.Hash, hash: hash}
		r := segRecord{seq: seq, line: line, rec: rec, prev: tip.Hash, hash: hash, d: p.d, authed: l.seg.mac != nil}
		buf = l.seg.record(buf, seq, l.seg.pos, hash, line, &r.mac)
		recs = append(recs, r)
		ok = append(ok, p)
		tip = audit.Link{Seq: seq, Hash: hash}
	}
	if len(recs) == 0 {
		l.tipMu.Unlock()
		return
	}
	if cap(buf) <= 2*segChunk {
		l.seg.buf = buf
	} else {
		l.seg.buf = nil // one huge event does not pin its buffer
	}
	synced, err := true, werr
	if err == nil {
		var g bool
		if g, err = l.seg.writeAt(buf, off); err == nil && off > l.seg.pos {
			_, err = l.seg.writeAt(firstHeader[:], l.seg.pos)
		}
		if err == nil {
			synced, err = l.seg.commit(off+int64(len(buf)), grew || g)
		}
	}
	if err != nil {
		if !synced {
			l.segErr = err
		} else if derr := l.seg.discard(off + int64(len(buf))); derr != nil {
			// Records of the failed batch may remain past pos, where
			// the next batch, shorter, would leave them after its own.
			l.segErr = fmt.Errorf("%w (and clearing the failed batch: %w)", err, derr)
		}
		for _, p := range ok {
			p.err, p.at = err, sealed{}
		}
		l.tipMu.Unlock()
		l.opts.OnError(err)
		return
	}
	l.tip = tip
	l.written.Store(tip.Seq)
	l.tipMu.Unlock()
	l.enqueueIndex(recs)
	if l.opts.OnBatch != nil {
		l.opts.OnBatch(len(recs))
	}
}

func (l *AuditLog) indexErr() error {
	l.ix.mu.Lock()
	defer l.ix.mu.Unlock()
	return l.ix.err
}
