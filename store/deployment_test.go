package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

// emptyBucket deletes every record of bucket name.
func emptyBucket(tx *bolt.Tx, name []byte) error {
	if string(name) == string(bucketAudit) {
		// The events' authenticators go with them.
		if err := tx.DeleteBucket(bucketAuditAuth); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
	}
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return err
	}
	_, err := tx.CreateBucket(name)
	return err
}

// rewriteTrail replaces the events with n fabricated ones chained from
// genesis, as the red team's bbolt editor did: no key is needed for that.
func rewriteTrail(tx *bolt.Tx, n int) error {
	if err := emptyBucket(tx, bucketAudit); err != nil {
		return err
	}
	b := tx.Bucket(bucketAudit)
	prev := audit.GenesisHash
	for i := 1; i <= n; i++ {
		e := benchEvent(i)
		e.Prompt = "fabricated"
		d, err := audit.NewDraft(e, auditT0)
		if err != nil {
			return err
		}
		line, hash, err := d.Seal(uint64(i), prev)
		if err != nil {
			return err
		}
		if err := b.Put(u64(uint64(i)), wrapLine(line)); err != nil {
			return err
		}
		prev = hash
	}
	return nil
}

// TestStartRefusesATrailWhoseKeysWereDeleted is the red team's attack and
// its variants: with write access to pamctl.db and no master key, delete
// the key records (and whatever else would give it away) so the server
// mints a new key and signs what the file now says. Each must be refused
// as "the signing keys are missing"; the old keyring minted a key whenever
// the keys bucket was empty.
func TestStartRefusesATrailWhoseKeysWereDeleted(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(tx *bolt.Tx) error
		// what the error names as the left-over data
		holds string
	}{
		{"forged events, key and head deleted", func(tx *bolt.Tx) error {
			if err := rewriteTrail(tx, 5); err != nil {
				return err
			}
			return tx.Bucket(bucketAuditMeta).Delete(keyAuditHead)
		}, `bucket "audit"`},
		{"key and head deleted, events kept", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAuditMeta).Delete(keyAuditHead)
		}, `bucket "audit"`},
		{"whole trail deleted, a request kept", func(tx *bolt.Tx) error {
			if err := emptyBucket(tx, bucketAudit); err != nil {
				return err
			}
			if err := emptyBucket(tx, bucketAuditMeta); err != nil {
				return err
			}
			return tx.Bucket(bucketRequests).Put([]byte("req_1"), []byte(`{"v":1,"d":{}}`))
		}, `bucket "requests"`},
		{"events deleted, retention anchor kept", func(tx *bolt.Tx) error {
			if err := emptyBucket(tx, bucketAudit); err != nil {
				return err
			}
			return tx.Bucket(bucketAuditMeta).Delete(keyAuditHead)
		}, `bucket "audit_meta"`},
		{"only a vault entry kept", func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketAudit, bucketAuditMeta} {
				if err := emptyBucket(tx, b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketVault).Put([]byte("openai"), []byte(`{"v":1,"d":{}}`))
		}, `bucket "vault"`},
		{"only counters kept", func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketAudit, bucketAuditMeta} {
				if err := emptyBucket(tx, b); err != nil {
					return err
				}
			}
			b, err := tx.CreateBucketIfNotExists(bucketCounters)
			if err != nil {
				return err
			}
			return b.Put([]byte("grant"), []byte(`{}`))
		}, `bucket "counters"`},
		{"a bucket this build does not know", func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketAudit, bucketAuditMeta} {
				if err := emptyBucket(tx, b); err != nil {
					return err
				}
			}
			b, err := tx.CreateBucket([]byte("future"))
			if err != nil {
				return err
			}
			return b.Put([]byte("x"), []byte("y"))
		}, `bucket "future"`},
		{"an unknown meta record", func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketAudit, bucketAuditMeta} {
				if err := emptyBucket(tx, b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put([]byte("other"), []byte("x"))
		}, `meta record "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, mk := newDeployment(t, 12)
			if tc.holds == `bucket "audit_meta"` {
				d, err := start(t, dir, mk, AuditOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.log.Prune(ctx, time.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				d.stop()
			}
			tamperFile(t, dir, func(tx *bolt.Tx) error {
				if err := emptyBucket(tx, bucketKeys); err != nil {
					return err
				}
				return tc.edit(tx)
			})
			_, err := start(t, dir, mk, AuditOptions{})
			want := "store: the signing keys are missing from " + filepath.Join(dir, FileName) + " (it still holds records in " + tc.holds + ")"
			if strings.HasPrefix(tc.holds, "meta") {
				want = "store: the signing keys are missing from " + filepath.Join(dir, FileName) + " (it still holds " + tc.holds + ")"
			}
			if err == nil || !errors.Is(err, ErrKeysMissing) || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), "Restore it from a backup") {
				t.Fatalf("start = %v\nwant it to contain %s", err, want)
			}
			// Nothing was written: the next start is refused the same way.
			if _, err := start(t, dir, mk, AuditOptions{}); !errors.Is(err, ErrKeysMissing) {
				t.Fatalf("second start = %v", err)
			}
		})
	}
}

// TestNewDataFileStillStarts: a new file, and one that crashed between the
// vault's master check and the first key, mint their first key.
func TestNewDataFileStillStarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk, _ := vault.GenerateMasterKey()
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Open(ctx, db, mk, nil); err != nil { // writes the master check
		t.Fatal(err)
	}
	db.Close()
	d, err := start(t, dir, mk, AuditOptions{})
	if err != nil {
		t.Fatalf("a file with only the schema version and the master check: %v", err)
	}
	if ks, err := d.db.Keys(ctx); err != nil || len(ks) != 1 {
		t.Fatalf("keys = %d, %v", len(ks), err)
	}
}

// TestFirstEventCommitsWithASignedHead: the first event of a signing log
// and its signed head are one commit, and the high-water mark is raised
// before Append returns. The old log signed the first head in the
// background, so a trail could be stopped (or edited) with events and no
// head, and a writer of the file could pass off "no head" as that window.
func TestFirstEventCommitsWithASignedHead(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []audit.SyncMode{audit.SyncDurable, audit.SyncAsync} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			mk, _ := vault.GenerateMasterKey()
			d, err := start(t, dir, mk, AuditOptions{Sync: mode, HeadEvery: 1 << 30, HeadInterval: time.Hour,
				newTicker: func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }})
			if err != nil {
				t.Fatal(err)
			}
			e := benchEvent(1)
			if err := d.log.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
			if mode == audit.SyncAsync {
				deadline := time.Now().Add(10 * time.Second)
				for {
					if st, _ := d.log.Head(ctx); st.Last.Seq == 1 || time.Now().After(deadline) {
						break
					}
					time.Sleep(time.Millisecond)
				}
				// the mark is raised after the async commit
				for _, _, ok := d.keys.HighWater(); !ok && time.Now().Before(deadline); _, _, ok = d.keys.HighWater() {
					time.Sleep(time.Millisecond)
				}
			}
			st, err := d.log.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Head == nil || st.Head.Seq != 1 || st.Head.Hash != st.Last.Hash {
				t.Fatalf("after the first append: head %+v, last %+v", st.Head, st.Last)
			}
			if seq, hash, ok := d.keys.HighWater(); !ok || seq != 1 || hash != st.Last.Hash {
				t.Fatalf("high-water mark %d %s %v", seq, hash, ok)
			}
		})
	}
}

// TestStartRefusesEventsWithoutAHead: with the first head committed with
// the first event, events without a head mean the head was deleted. Here
// the key carries no high-water mark (the trail was written unsigned), the
// case the old code signed over.
func TestStartRefusesEventsWithoutAHead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk, _ := vault.GenerateMasterKey()
	d, err := start(t, dir, mk, AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.log.Close()
	d.log = nil
	l, err := d.db.AuditLog(AuditOptions{}) // unsigned
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 4)
	l.Close()
	d.stop()

	_, err = start(t, dir, mk, AuditOptions{})
	want := "store: audit trail has events but no signed head: " + filepath.Join(dir, FileName) + " holds events through seq 4 and no signed head"
	if !errors.Is(err, ErrHeadMissing) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("start = %v\nwant   %s…", err, want)
	}
	// Inspect opens it for verify, which reports the missing head, and
	// still never signs one.
	d, err = start(t, dir, mk, AuditOptions{Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.log.SignHead(ctx); !errors.Is(err, ErrHeadMissing) {
		t.Fatalf("SignHead = %v", err)
	}
	_, err = d.verify()
	wantBreak(t, err, 1, audit.BreakHead)
}

// TestOpenRefusesATruncatedFile cuts a real database at many offsets. Each
// open either refuses with a *DamagedError naming the file, or (a cut in
// space bbolt allocated but never used) starts normally; no panic or fault
// escapes. The old Open mapped the missing pages and faulted on reading one.
func TestOpenRefusesATruncatedFile(t *testing.T) {
	dir, mk := newDeployment(t, 3000)
	path := filepath.Join(dir, FileName)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	need, cause := metaSize(f)
	f.Close()
	if cause != "" || need > int64(len(orig)) || need < 64<<10 {
		t.Fatalf("metaSize = %d %q for a %d-byte file", need, cause, len(orig))
	}
	offsets := []int64{1, 100, 4095, 4096, 4097, 8191, 8192, 8193, 3 * 4096, need / 3, need / 2, need - 4096 - 7, need - 1}
	for _, off := range offsets {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			cut := t.TempDir()
			if err := os.WriteFile(filepath.Join(cut, FileName), orig[:off], 0o600); err != nil {
				t.Fatal(err)
			}
			err := startNoPanic(t, cut, mk)
			var de *DamagedError
			if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
				t.Fatalf("start on a file cut at %d of %d: %v", off, need, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, filepath.Join(cut, FileName)+" is damaged (") || !strings.HasSuffix(msg, "): restore it from a backup") {
				t.Fatalf("message %q", msg)
			}
			// the file is left as it was, for forensics
			if fi, err := os.Stat(filepath.Join(cut, FileName)); err != nil || fi.Size() != off {
				t.Fatalf("file changed: %v %v", fi.Size(), err)
			}
		})
	}
}

// TestOpenSurvivesCorruptPages overwrites pages of a real database with
// garbage: bbolt trusts page contents and may panic or fault reading them.
// Startup and a full verify must return an error (or succeed, where the
// page was free) and never crash.
func TestOpenSurvivesCorruptPages(t *testing.T) {
	dir, mk := newDeployment(t, 3000)
	path := filepath.Join(dir, FileName)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The pages in use, in the file's own page size (a new file's is
	// 16 KiB, and bbolt grows it past what it uses).
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	used, cause := metaSize(f)
	f.Close()
	if cause != "" {
		t.Fatal(cause)
	}
	page := int64(binary.LittleEndian.Uint32(orig[16+8:]))
	if page != pageSize {
		t.Fatalf("page size %d, want %d", page, pageSize)
	}
	pages := used / page
	for _, p := range []int64{0, 1, 2, 3, 4, pages / 4, pages / 2, pages - 2, pages - 1} {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			buf := append([]byte(nil), orig...)
			for i := p * page; i < (p+1)*page && i < int64(len(buf)); i++ {
				buf[i] = 0xA5
			}
			cut := t.TempDir()
			if err := os.WriteFile(filepath.Join(cut, FileName), buf, 0o600); err != nil {
				t.Fatal(err)
			}
			_ = startNoPanic(t, cut, mk) // any outcome but a crash
		})
	}
}

// startNoPanic starts a deployment on dir and verifies its trail, failing
// the test if a panic escapes; it returns the first error.
func startNoPanic(t *testing.T, dir string, mk vault.MasterKey) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic escaped: %v", r)
		}
	}()
	ctx := context.Background()
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		return err
	}
	defer db.Close()
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		return err
	}
	kr, err := token.LoadKeyring(ctx, db, v.Sealer(), time.Hour, nil)
	if err != nil {
		return err
	}
	l, err := db.AuditLog(AuditOptions{Signer: kr, Inspect: true})
	if err != nil {
		return err
	}
	defer l.Close()
	_, err = l.Verify(ctx, audit.KeyFunc(kr.AnyPublicKey))
	return err
}

// markLagging is a HighWater whose mark was never raised (a crash between
// storing the first head and raising the mark).
type markLagging struct {
	*token.Keyring
	raised chan uint64
}

func (m markLagging) RaiseHighWater(ctx context.Context, kid string, seq uint64, hash string) error {
	m.raised <- seq
	return m.Keyring.RaiseHighWater(ctx, kid, seq, hash)
}

// TestOpenCatchesUpALaggingMark: a stored head above the key's mark (the
// mark write was lost to a crash) raises the mark when the trail opens,
// so deleting the trail afterwards is caught.
func TestOpenCatchesUpALaggingMark(t *testing.T) {
	dir := t.TempDir()
	mk, _ := vault.GenerateMasterKey()
	d, err := start(t, dir, mk, AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.log.Close()
	d.log = nil
	// A signer without HighWater: heads are stored, the mark is not raised.
	l, err := d.db.AuditLog(AuditOptions{Signer: audit.HeadSigner(signOnly{d.keys})})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3)
	l.Close()
	if _, _, ok := d.keys.HighWater(); ok {
		t.Fatal("setup: the mark was raised")
	}
	raised := make(chan uint64, 4)
	if l, err = d.db.AuditLog(AuditOptions{Signer: markLagging{d.keys, raised}}); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-raised:
		if seq != 3 {
			t.Fatalf("mark raised to %d", seq)
		}
	default:
		t.Fatal("opening did not raise the lagging mark")
	}
	l.Close()
	d.stop()
	tamperFile(t, dir, func(tx *bolt.Tx) error {
		if err := emptyBucket(tx, bucketAudit); err != nil {
			return err
		}
		return emptyBucket(tx, bucketAuditMeta)
	})
	if _, err := start(t, dir, mk, AuditOptions{}); !errors.Is(err, ErrBelowHighWater) {
		t.Fatalf("start on an emptied trail = %v", err)
	}
}

// signOnly hides the keyring's HighWater methods.
type signOnly struct{ kr *token.Keyring }

func (s signOnly) SignHead(msg []byte) (string, []byte, error) { return s.kr.SignHead(msg) }

// TestOpenRefusesALostDatabase: a database file that is gone or empty
// beside a written audit segment was lost, not never made; opening it
// would start a new trail and new keys without a word. A data dir whose
// segment was never written (the first start died early) opens fresh.
func TestOpenRefusesALostDatabase(t *testing.T) {
	dir, _ := newDeployment(t, 10)
	path := filepath.Join(dir, FileName)
	seg := filepath.Join(dir, SegmentFileName)
	if b, err := os.ReadFile(seg); err != nil || !strings.HasPrefix(string(b), segMagic) {
		t.Fatalf("the deployment's segment: %v %q", err, b)
	}
	for _, tc := range []struct {
		name string
		lose func()
		want string
	}{
		{"truncated to nothing", func() { os.Truncate(path, 0) }, "it is empty"},
		{"deleted", func() { os.Remove(path) }, "it is missing"},
	} {
		tc.lose()
		_, err := Open(dir, Options{NoSync: true})
		var de *DamagedError
		if !errors.As(err, &de) || de.Path != path || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "move audit.seg away") {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, err := os.Stat(seg); err != nil {
			t.Fatalf("%s: the segment was touched: %v", tc.name, err)
		}
	}
	// Moved away on purpose: a new deployment starts.
	if err := os.Rename(seg, seg+".old"); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatalf("after moving the segment away: %v", err)
	}
	db.Close()

	// A segment created but never written (empty, or zeros) and an empty
	// database: the first start died before either held anything.
	for _, segBytes := range [][]byte{nil, make([]byte, 16)} {
		fresh := t.TempDir()
		os.WriteFile(filepath.Join(fresh, FileName), nil, 0o600)
		os.WriteFile(filepath.Join(fresh, SegmentFileName), segBytes, 0o600)
		db, err := Open(fresh, Options{NoSync: true})
		if err != nil {
			t.Fatalf("segment of %d zero bytes: %v", len(segBytes), err)
		}
		db.Close()
	}
}

// TestOpenDuringAnotherFirstStart: checkNotLost reads before the lock is
// taken, so another process may complete the first start of the same data
// dir (database created, then the segment written) between its two reads.
// That is not a lost database: the start goes on (and meets the lock, or
// the database). Read database-first, this start saw "missing", then a
// written segment, and refused the data dir as lost.
func TestOpenDuringAnotherFirstStart(t *testing.T) {
	done, _ := newDeployment(t, 1) // what the other process leaves
	dir := t.TempDir()
	betweenLostChecks = func() { copyDataFiles(t, done, dir) }
	defer func() { betweenLostChecks = nil }()
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatalf("a first start beside another: %v", err)
	}
	db.Close()
}

// TestOpenWithAnUnreadableSegment: checkNotLost cannot read a segment it
// cannot open (a symlink loop, no permission), but a database that is
// there is not lost: Open goes on, and the audit log (or verify, in
// Inspect mode) reports the segment. A missing database beside it is
// still refused.
func TestOpenWithAnUnreadableSegment(t *testing.T) {
	dir, _ := newDeployment(t, 1)
	seg := filepath.Join(dir, SegmentFileName)
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(seg, seg); err != nil { // ELOOP on open
		t.Fatal(err)
	}
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatalf("a database beside an unreadable segment: %v", err)
	}
	db.Close()
	if err := os.Remove(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{NoSync: true}); err == nil {
		t.Fatal("a missing database beside an unreadable segment opened as new")
	}
}

// TestAuditLogRefusesAReplacedDatabase: a start that failed after bbolt
// created a fresh pamctl.db (the segment was unreadable at that moment)
// leaves a valid, empty database beside a segment that has held events;
// the next start must not begin a new trail over it. The first start of a
// new deployment, and a restart of a real one, still open.
func TestAuditLogRefusesAReplacedDatabase(t *testing.T) {
	dir, mk := newDeployment(t, 10)
	d, err := start(t, dir, mk, AuditOptions{}) // a restart: the segment's epoch moves past 1
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	d.stop()
	path, seg := filepath.Join(dir, FileName), filepath.Join(dir, SegmentFileName)
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(seg, seg+".away"); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, Options{NoSync: true}) // the failed start: a fresh file is made
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Rename(seg+".away", seg); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.AuditLog(AuditOptions{})
	db.Close()
	var de *DamagedError
	if !errors.As(err, &de) || de.Path != path || !strings.Contains(err.Error(), "holds no audit event") || !strings.Contains(err.Error(), "move audit.seg away") {
		t.Fatalf("an empty database beside a used segment: %v", err)
	}
	// The real database back in place opens.
	if err := os.Rename(path+".old", path); err != nil {
		t.Fatal(err)
	}
	d, err = start(t, dir, mk, AuditOptions{})
	if err != nil {
		t.Fatalf("the real database: %v", err)
	}
	if rep, err := d.verify(); err != nil || rep.Events != 10 {
		t.Fatalf("the real trail: %+v %v", rep, err)
	}
	d.stop()
}
