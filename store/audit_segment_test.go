package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// crashedTrail leaves in a new directory the state of a durable log killed
// after acknowledging n events that its indexer had not stored yet (the
// indexer is held): a bucket without them, a segment with them. It returns
// the directory and the acknowledged events.
func crashedTrail(t *testing.T, before, n int) (string, []audit.Event) {
	t.Helper()
	ctx := context.Background()
	src := t.TempDir()
	hold := make(chan struct{})
	var held sync.Once
	opts := AuditOptions{Signer: testSigner}
	db, l := openAudit(t, src, true, opts)
	appendN(t, l, before)
	if err := l.catchUp(); err != nil {
		t.Fatal(err)
	}
	l.opts.indexHook = func() { <-hold }
	t.Cleanup(func() { held.Do(func() { close(hold) }) })
	var acked []audit.Event
	for i := range n {
		e := benchEvent(before + i)
		if err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, *e)
	}
	// Nothing writes the database now (the indexer waits): copy both files
	// as a crash would leave them.
	dst := t.TempDir()
	copyDataFiles(t, src, dst)
	_ = db
	return dst, acked
}

// readSegment returns the segment file of dir, its epoch, its valid
// records and where they end.
func readSegment(t *testing.T, dir string) (raw []byte, epoch uint64, recs []segRecord, end int) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, SegmentFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < segFileHeader || string(raw[:8]) != segMagic {
		t.Fatalf("no segment header: % x", raw[:min(len(raw), 16)])
	}
	epoch, _, recs, good, err := parseSegmentFile(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw, epoch, recs, segFileHeader + int(good)
}

// segmentFile is a segment file of epoch holding recs, each written by a
// commit of its own, zero-padded.
func segmentFile(epoch uint64, recs []segRecord) []byte {
	b := fileHeader(epoch)
	for _, r := range recs {
		b = appendRecord(b, epoch, r.seq, uint64(len(b)), nil, r.line)
	}
	return append(b, make([]byte, 4096)...)
}

// Events acknowledged but not yet in the bucket when the process died are
// indexed from the segment at the next start; the segment is then emptied
// and the trail verifies.
func TestAuditSegmentRecoversAcknowledgedEvents(t *testing.T) {
	for _, before := range []int{0, 3} { // 0: the first head comes from the segment
		t.Run(fmt.Sprint("before=", before), func(t *testing.T) {
			dir, acked := crashedTrail(t, before, 7)
			if _, _, recs, _ := readSegment(t, dir); len(recs) != before+7 {
				t.Fatalf("the crashed segment holds %d records, want %d", len(recs), before+7)
			}
			_, l := openAudit(t, dir, true, AuditOptions{Signer: testSigner})
			if _, _, recs, _ := readSegment(t, dir); len(recs) != 0 {
				t.Errorf("the segment still holds %d records once indexed", len(recs))
			}
			ctx := context.Background()
			for _, e := range acked {
				got, err := l.Get(ctx, e.Seq)
				if err != nil || got.Hash != e.Hash {
					t.Fatalf("seq %d: %v, hash %q want %q", e.Seq, err, got.Hash, e.Hash)
				}
			}
			appendN(t, l, 1)
			if _, err := l.SignHead(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := l.Verify(ctx, testKeys)
			if err != nil || rep.Events != uint64(before+7+1) || !rep.Signed {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
		})
	}
}

// A record cut short at the end of the segment (a write the kill
// interrupted, never acknowledged) is dropped; every complete one is kept.
func TestAuditSegmentTornTail(t *testing.T) {
	for _, tail := range []string{"header", "body", "older-epoch", "badsum"} {
		t.Run(tail, func(t *testing.T) {
			dir, acked := crashedTrail(t, 2, 4)
			path := filepath.Join(dir, SegmentFileName)
			raw, epoch, _, end := readSegment(t, dir)
			next := acked[len(acked)-1].Seq + 1
			var torn []byte
			switch tail {
			case "header":
				torn = []byte{0, 0, 1}
			case "body":
				torn = appendRecord(nil, epoch, next, uint64(end), nil, []byte(`{"seq":7,"type":"proxy.call"`))
				torn = torn[:len(torn)-5]
			case "older-epoch":
				torn = appendRecord(nil, epoch-1, next, uint64(end), nil, []byte(`{"seq":7}`))
			case "badsum":
				torn = appendRecord(nil, epoch, next, uint64(end), nil, []byte(`{"seq":7}`))
				torn[len(torn)-2] ^= 1
			}
			copy(raw[end:], torn)
			os.WriteFile(path, raw, 0o600)
			_, l := openAudit(t, dir, true, AuditOptions{Signer: testSigner})
			st, err := l.Head(context.Background())
			if err != nil || st.Last.Seq != acked[len(acked)-1].Seq || st.Last.Hash != acked[len(acked)-1].Hash {
				t.Fatalf("Head = %+v, %v; want the last acknowledged event %d", st, err, acked[len(acked)-1].Seq)
			}
			if rep, err := l.Verify(context.Background(), testKeys); err != nil {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
		})
	}
}

// A segment that does not read back as written is refused, not indexed
// and not silently dropped.
func TestAuditSegmentDamageIsRefused(t *testing.T) {
	cases := map[string]func(t *testing.T, raw []byte, acked []audit.Event) []byte{
		"a flipped byte before the last record": func(t *testing.T, raw []byte, _ []audit.Event) []byte {
			raw[segFileHeader+segHeader+40] ^= 1
			return raw
		},
		"a record removed from the middle": func(t *testing.T, raw []byte, _ []audit.Event) []byte {
			epoch := binary.BigEndian.Uint64(raw[8:16])
			recs, _, err := parseSegment(raw[segFileHeader:], epoch, nil)
			if err != nil {
				t.Fatal(err)
			}
			return segmentFile(epoch, append(recs[:1:1], recs[2:]...))
		},
		"an edited event with a recomputed checksum": func(t *testing.T, raw []byte, _ []audit.Event) []byte {
			epoch := binary.BigEndian.Uint64(raw[8:16])
			recs, _, _ := parseSegment(raw[segFileHeader:], epoch, nil)
			recs[1].line = bytes.Replace(recs[1].line, []byte("ada@example.com"), []byte("eve@example.com"), 1)
			return segmentFile(epoch, recs)
		},
		"records of another trail": func(t *testing.T, raw []byte, acked []audit.Event) []byte {
			other, _ := crashedTrail(t, 2, 4)
			raw, _ = os.ReadFile(filepath.Join(other, SegmentFileName))
			return raw
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir, acked := crashedTrail(t, 2, 4)
			path := filepath.Join(dir, SegmentFileName)
			raw, _ := os.ReadFile(path)
			os.WriteFile(path, damage(t, raw, acked), 0o600)
			db, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, err = db.AuditLog(AuditOptions{Signer: testSigner})
			if !errors.Is(err, ErrSegmentDamaged) || !strings.Contains(err.Error(), "pamctl audit verify") {
				t.Fatalf("open = %v, want ErrSegmentDamaged with what to do", err)
			}
			// audit verify opens an Inspect log: it starts, shows the
			// bucket's trail and reports the segment.
			var reported error
			l, err := db.AuditLog(AuditOptions{Signer: testSigner, Inspect: true, OnError: func(err error) { reported = err }})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if !errors.Is(reported, ErrSegmentDamaged) {
				t.Errorf("Inspect reported %v", reported)
			}
		})
	}
}

// An acknowledged event the bucket holds is rewritten in the segment: the
// two disagree, and the log refuses to choose.
func TestAuditSegmentDisagreesWithTheBucket(t *testing.T) {
	dir, acked := crashedTrail(t, 2, 3)
	db, l := openAudit(t, dir, true, AuditOptions{Signer: testSigner}) // indexes and empties it
	closeAudit(t, db, l)
	// Put back a record for seq 3 with other bytes that chain the same way.
	d, err := audit.NewDraft(benchEvent(99), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	line, _, err := d.Seal(3, acked[0].PrevHash)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, SegmentFileName), segmentFile(9, []segRecord{{seq: 3, line: line}}), 0o600)
	db2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, err := db2.AuditLog(AuditOptions{Signer: testSigner}); !errors.Is(err, ErrSegmentDamaged) {
		t.Fatalf("open = %v, want ErrSegmentDamaged", err)
	}
}

// A backup taken while the indexer lags still holds every event
// acknowledged before it started: Snapshot waits for the index.
func TestAuditSnapshotHoldsAcknowledgedEvents(t *testing.T) {
	ctx := context.Background()
	db, l := openAudit(t, t.TempDir(), true, AuditOptions{Signer: testSigner})
	appendN(t, l, 2)
	if err := l.catchUp(); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	l.opts.indexHook = func() { <-hold }
	e := benchEvent(5)
	if err := l.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := db.Snapshot(ctx, func(int64) (io.Writer, error) { return &buf, nil })
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Snapshot returned (%v) before the acknowledged event was indexed", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(path, buf.Bytes(), 0o600)
	info, err := CheckBackup(path)
	if err != nil || info.AuditSeq != e.Seq {
		t.Fatalf("backup holds audit seq %d (%v), want %d", info.AuditSeq, err, e.Seq)
	}
}

// segmentCrashChild appends durably from many goroutines and prints each
// acknowledged event as "seq hash" until it is killed.
func segmentCrashChild(dir string) {
	db, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	l, err := db.AuditLog(AuditOptions{Signer: testSigner})
	if err != nil {
		fmt.Println("audit:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY")
	out.Flush()
	for w := range 16 {
		go func() {
			for i := 0; ; i++ {
				e := benchEvent(w*1_000_000 + i)
				if err := l.Append(context.Background(), e); err != nil {
					fmt.Println("append:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %s\n", e.Seq, e.Hash)
				out.Flush() // acknowledged: the parent may count it
				mu.Unlock()
			}
		}()
	}
	select {}
}

// A process killed with SIGKILL in the middle of durable appends loses no
// acknowledged event: after a restart every event it reported is stored
// with its hash, and the chain verifies.
func TestAuditSegmentKillMidAppend(t *testing.T) {
	if dir := os.Getenv("PAMCTL_SEGMENT_CRASH_CHILD"); dir != "" {
		segmentCrashChild(dir)
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	for round := range 3 {
		child := exec.Command(os.Args[0], "-test.run=^TestAuditSegmentKillMidAppend$")
		child.Env = append(os.Environ(), "PAMCTL_SEGMENT_CRASH_CHILD="+dir)
		stdout, _ := child.StdoutPipe()
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(stdout)
		if line, err := r.ReadString('\n'); err != nil || line != "READY\n" {
			child.Process.Kill()
			child.Wait()
			t.Fatalf("child: %q %v", line, err)
		}
		acked := map[uint64]string{}
		var mu sync.Mutex
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				f := strings.Fields(line)
				if len(f) != 2 {
					continue
				}
				seq, err := strconv.ParseUint(f[0], 10, 64)
				if err != nil {
					continue
				}
				mu.Lock()
				acked[seq] = f[1]
				mu.Unlock()
			}
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= 300 || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		child.Process.Signal(syscall.SIGKILL)
		child.Wait()
		<-readDone
		if len(acked) < 50 {
			t.Fatalf("round %d: only %d events acknowledged before the kill", round, len(acked))
		}
		db, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		l, err := db.AuditLog(AuditOptions{Signer: testSigner})
		if err != nil {
			db.Close()
			t.Fatalf("round %d: reopen after the kill: %v", round, err)
		}
		ctx := context.Background()
		for seq, hash := range acked {
			e, err := l.Get(ctx, seq)
			if err != nil || e.Hash != hash {
				t.Fatalf("round %d: acknowledged seq %d lost (%v, hash %q want %q)", round, seq, err, e.Hash, hash)
			}
		}
		if _, err := l.SignHead(ctx); err != nil {
			t.Fatal(err)
		}
		if rep, err := l.Verify(ctx, testKeys); err != nil {
			t.Fatalf("round %d: Verify = %+v, %v", round, rep, err)
		}
		l.Close()
		db.Close()
	}
}

// Under sustained appends the segment is emptied once it passes its
// limit: it stays bounded, and every event is kept.
func TestAuditSegmentStaysBoundedUnderLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, l := openAudit(t, dir, false, AuditOptions{Signer: testSigner})
	const limit = 16 << 10
	l.tipMu.Lock()
	l.seg.limit = limit
	l.tipMu.Unlock()
	var wg sync.WaitGroup
	var maxSize int64
	var mu sync.Mutex
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := l.Append(ctx, benchEvent(w*100+i)); err != nil {
					t.Error(err)
					return
				}
				l.tipMu.Lock()
				pos := l.seg.pos
				l.tipMu.Unlock()
				mu.Lock()
				maxSize = max(maxSize, pos)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// One group of at most 8 events (~1.2 KiB each) may pass the limit.
	if maxSize > limit+16<<10 {
		t.Errorf("segment grew to %d bytes with a limit of %d", maxSize, limit)
	}
	if _, err := l.SignHead(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.Verify(ctx, testKeys); err != nil || rep.Events != 400 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// A second audit log of one database would share the first one's segment
// (and empty it under it): refused until the first is closed.
func TestAuditOneLogPerDatabase(t *testing.T) {
	db, l := openAudit(t, t.TempDir(), false, AuditOptions{})
	if _, err := db.AuditLog(AuditOptions{}); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Fatalf("second AuditLog = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := db.AuditLog(AuditOptions{})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	l2.Close()
}

// A reader makes the indexer commit at once, but only what the reader
// needs: appends acknowledged while that commit runs wait for the next
// window (or reader), not for a commit right after it. Under steady load a
// reader used to turn the indexer into one commit after another of
// whatever arrived during the last (a bbolt commit, two flushes, each).
// And a new trail's first start asks nothing of the indexer: it used to
// kick the head signer, whose catch-up committed the first appends early.
func TestAuditIndexerGathersAgainAfterAReader(t *testing.T) {
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	var commits atomic.Int32
	opts := AuditOptions{Signer: testSigner, indexGather: time.Hour, indexHook: func() {
		if commits.Add(1) == 1 {
			close(entered)
			<-release // the first commit runs while more appends arrive
		}
	}, newTicker: func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }}
	_, l := openAudit(t, t.TempDir(), true, opts)
	if err := l.Append(ctx, benchEvent(0)); err != nil {
		t.Fatal(err)
	}
	read := make(chan int)
	go func() {
		n := 0
		if err := l.Range(ctx, 1, func(audit.Event) bool { n++; return true }); err != nil {
			t.Error(err)
		}
		read <- n
	}()
	<-entered
	const more = 20
	for i := 1; i <= more; i++ {
		if err := l.Append(ctx, benchEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if n := <-read; n != 1 {
		t.Fatalf("the reader read %d events, want the 1 acknowledged before it came", n)
	}
	time.Sleep(100 * time.Millisecond) // an eager indexer commits the rest meanwhile
	if n := commits.Load(); n != 1 {
		t.Fatalf("%d index commits without a reader for them, want 1 (the next window is an hour away)", n)
	}
	n := 0
	if err := l.Range(ctx, 1, func(audit.Event) bool { n++; return true }); err != nil || n != more+1 {
		t.Fatalf("the next reader read %d events (%v), want %d", n, err, more+1)
	}
	if n := commits.Load(); n != 2 {
		t.Fatalf("%d index commits, want 2", n)
	}
}

// The indexer gathers: appends acknowledged one after another (each its
// own segment group) reach the bucket in one commit, and a reader does not
// wait for the gathering window (an hour here) but is served at once.
func TestAuditIndexerGathersAndReadersDoNotWait(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	commits := 0
	opts := AuditOptions{Signer: testSigner, indexGather: time.Hour, indexHook: func() {
		mu.Lock()
		commits++
		mu.Unlock()
	}, newTicker: func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }} // no head signing (a reader) meanwhile
	_, l := openAudit(t, t.TempDir(), true, opts)
	const n = 100
	for i := range n {
		if err := l.Append(ctx, benchEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	if err := l.Range(ctx, 1, func(audit.Event) bool { got++; return true }); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("read %d events, want %d", got, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if commits != 1 {
		t.Fatalf("%d index commits for %d appends, want 1 (gathered until the reader came)", commits, n)
	}
}

// The indexer is woken when its queue starts and when it turns full, not
// at every append: a queue that reaches indexGatherMax is committed at
// once, without a reader and long before the gathering window (an hour
// here) ends.
func TestAuditIndexerCommitsAFullQueueAtOnce(t *testing.T) {
	ctx := context.Background()
	committed := make(chan struct{}, 8)
	opts := AuditOptions{Signer: testSigner, indexGather: time.Hour, indexHook: func() {
		committed <- struct{}{}
	}, newTicker: func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }}
	_, l := openAudit(t, t.TempDir(), false, opts)
	for i := range indexGatherMax - 1 {
		if err := l.Append(ctx, benchEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-committed:
		t.Fatal("the indexer committed a queue short of indexGatherMax within its window")
	case <-time.After(50 * time.Millisecond):
	}
	if err := l.Append(ctx, benchEvent(indexGatherMax)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("a full index queue waited for its gathering window")
	}
}

// copyDataFiles copies the database and the audit segment of data dir src
// into dst.
func copyDataFiles(t *testing.T, src, dst string) {
	t.Helper()
	for _, name := range []string{FileName, SegmentFileName} {
		raw, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAuditSegmentChunkedGeneration: a batch larger than segChunk (a
// thousand streams ending at once) is written in chunks and synced once;
// every record lands in order, the batch buffer stays bounded, and the
// trail verifies. A write that fails mid-batch fails every append of the
// batch, and the tip does not move.
func TestAuditSegmentChunkedGeneration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, l := openAudit(t, dir, true, AuditOptions{Signer: testSigner})
	appendN(t, l, 2)
	if err := l.catchUp(); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	l.opts.indexHook = func() { <-hold }
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	t.Cleanup(release)
	gen := func(n int) []*pendingAppend {
		var out []*pendingAppend
		for i := range n {
			e := benchEvent(i)
			e.Response = strings.Repeat("r", 1500)
			d, err := audit.NewDraft(e, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, &pendingAppend{d: d})
		}
		return out
	}
	big := gen(200) // about 400 KiB of records: several chunks
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l.writeGeneration(big)
	runtime.ReadMemStats(&after)
	for i, p := range big {
		if p.err != nil || p.at.seq != uint64(3+i) {
			t.Fatalf("append %d: seq %d, %v", i, p.at.seq, p.err)
		}
	}
	if cap(l.seg.buf) > 2*segChunk {
		t.Errorf("the batch buffer kept %d bytes (bound %d)", cap(l.seg.buf), 2*segChunk)
	}
	_, _, recs, _ := readSegment(t, dir)
	if len(recs) != 202 {
		t.Fatalf("segment holds %d records, want 202", len(recs))
	}
	sealedBytes := uint64(0)
	for i, r := range recs {
		if r.seq != uint64(1+i) {
			t.Fatalf("record %d has seq %d", i, r.seq)
		}
		if i >= 2 {
			sealedBytes += uint64(len(r.line) + 64)
		}
	}
	// What the batch allocated: each sealed record (kept for the
	// indexer, rounded up to its size class), the batch's bookkeeping and
	// the chunk buffer come to under twice the records and a few chunks;
	// a buffer of the whole batch, grown by doubling, to several times it.
	if got, bound := after.TotalAlloc-before.TotalAlloc, 2*sealedBytes+4*segChunk; got > bound {
		t.Errorf("writing the batch allocated %d bytes, over %d: its buffer grew with the batch", got, bound)
	}
	release()
	if err := l.catchUp(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SignHead(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.Verify(ctx, testKeys); err != nil || rep.Events != 202 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}

	// A write failing mid-batch: every append of the batch fails.
	tip := l.tip
	l.seg.f.Close()
	failed := gen(100)
	l.writeGeneration(failed)
	for i, p := range failed {
		if p.err == nil || p.at != (sealed{}) {
			t.Fatalf("append %d of a failed batch: %+v, %v", i, p.at, p.err)
		}
	}
	if l.tip != tip {
		t.Errorf("the tip moved past a failed batch: %+v -> %+v", tip, l.tip)
	}
}

// bigBatch is n pending appends of ~2 KiB events: a batch of several
// segChunk chunks.
func bigBatch(t *testing.T, n int, tag string) []*pendingAppend {
	t.Helper()
	var out []*pendingAppend
	for i := range n {
		e := benchEvent(i)
		e.Response = strings.Repeat("r", 1500)
		e.Prompt = tag + e.Prompt[len(tag):]
		d, err := audit.NewDraft(e, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &pendingAppend{d: d})
	}
	return out
}

// crashCopy copies the database and the segment as a crash leaves them.
func crashCopy(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	copyDataFiles(t, from, to)
	return to
}

// TestAuditSegmentFailedChunkedBatch: a batch whose second chunk fails to
// be written (disk full, EIO) fails every append of it, and none of its
// records is read back: not after a crash (its first record's header is
// written last, so the chunks already out do not parse), not past the end
// of the next, shorter batch (they are cleared), whether clearing works
// or not (then the segment is not used again).
func TestAuditSegmentFailedChunkedBatch(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		clearFail bool
	}{{"cleared", false}, {"clearing fails", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, l := openAudit(t, dir, true, AuditOptions{Signer: testSigner})
			appendN(t, l, 2)
			if err := l.catchUp(); err != nil {
				t.Fatal(err)
			}
			first := l.seg.pos
			writes := 0
			l.seg.writeFault = func(off int64, n int) error {
				if writes++; writes >= 2 && (tc.clearFail || off > first) {
					return errors.New("injected: no space left on device")
				}
				return nil
			}
			// A failing clear uses WriteAt directly: make the file
			// read-only for it by swapping the descriptor.
			var rw *os.File
			if tc.clearFail {
				l.opts.sealHook = func(*audit.Draft) error {
					if writes >= 1 && rw == nil {
						rw = l.seg.f
						ro, err := os.Open(rw.Name())
						if err != nil {
							t.Fatal(err)
						}
						l.seg.f = ro
					}
					return nil
				}
			}
			failed := bigBatch(t, 100, "F")
			l.writeGeneration(failed)
			l.opts.sealHook, l.seg.writeFault = nil, nil
			if rw != nil {
				l.seg.f.Close()
				l.seg.f = rw
			}
			for i, p := range failed {
				if p.err == nil {
					t.Fatalf("append %d of the failed batch succeeded", i)
				}
			}
			if _, _, recs, _ := readSegment(t, dir); len(recs) != 2 {
				t.Errorf("after the failed batch the segment reads %d records, want the 2 acknowledged", len(recs))
			}
			// The process dies now: the failed batch is not in the trail.
			_, l2 := openAudit(t, crashCopy(t, dir), true, AuditOptions{Signer: testSigner})
			if rep, err := l2.Verify(ctx, testKeys); err != nil || rep.Events != 2 {
				t.Fatalf("after a crash: Verify = %+v, %v; want the 2 acknowledged events", rep, err)
			}
			// A shorter batch next, then a crash: it starts and holds 7.
			ok := bigBatch(t, 5, "S")
			l.writeGeneration(ok)
			if tc.clearFail {
				if ok[0].err == nil || l.segErr == nil {
					t.Fatalf("the segment was used again after clearing failed: %v", ok[0].err)
				}
				return
			}
			for i, p := range ok {
				if p.err != nil {
					t.Fatalf("append %d: %v", i, p.err)
				}
			}
			_, l3 := openAudit(t, crashCopy(t, dir), true, AuditOptions{Signer: testSigner})
			if rep, err := l3.Verify(ctx, testKeys); err != nil || rep.Events != 7 {
				t.Fatalf("after a shorter batch and a crash: Verify = %+v, %v; want 7 events", rep, err)
			}
		})
	}
}
