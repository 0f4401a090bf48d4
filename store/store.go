// Package store persists pamctl's state in one bbolt file inside the data
// directory. It implements the small storage interfaces declared by the
// packages that own the data (broker, broker/vault, broker/token,
// broker/audit); nothing outside cmd/ imports it.
//
// Schema (bbolt buckets; every value is a versioned record, see record.go;
// requests, sessions and proxies records are sealed, see record_auth.go):
//
//	meta         "version"            -> uint64 big-endian schema version
//	             "probe"              -> time of the last write probe (RFC 3339), see Probe
//	requests     request id           -> broker.Request
//	req_*        request indexes, see request_index.go (schema 2)
//	sessions     session id ("ses_…") -> broker.SessionRecord (ended ones kept 24 h)
//	keys         kid                  -> token.SealedKey
//	vault        entry name           -> vault.Entry (secret sealed under the master key)
//	audit        seq, uint64 BE       -> audit.Event
//	audit_meta   "head", "anchor"     -> chain head and retention anchor
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/safefile"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout version this build reads and writes. A file
// written by a newer pamctl is refused rather than misread (an older build
// would write requests without their index entries); an older file is
// migrated when opened.
//
//	1  the buckets above without the request indexes
//	2  request indexes (req_*), rebuilt from the records on upgrade
const SchemaVersion uint64 = 2

// FileName is the name of the database file inside the data directory.
const FileName = "pamctl.db"

var (
	bucketMeta      = []byte("meta")
	bucketRequests  = []byte("requests")
	bucketSessions  = []byte("sessions")
	bucketKeys      = []byte("keys")
	bucketVault     = []byte("vault")
	bucketAudit     = []byte("audit")
	bucketAuditMeta = []byte("audit_meta")

	allBuckets = append([][]byte{bucketMeta, bucketRequests, bucketSessions, bucketKeys, bucketVault, bucketAudit, bucketAuditMeta}, requestIndexes...)

	keyVersion = []byte("version")
	keyProbe   = []byte("probe")
)

var (
	// ErrLocked means another process holds the database file.
	ErrLocked = errors.New("store: database is locked by another process")
	// ErrSchemaTooNew means the file was written by a newer pamctl.
	ErrSchemaTooNew = errors.New("store: database was written by a newer pamctl")
	// ErrNotFound is returned when a keyed record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrDamaged means the database file is corrupt or truncated.
	ErrDamaged = errors.New("store: database file is damaged")
	// ErrKeysMissing means the file holds a deployment's data but no
	// signing key record: the keys were deleted, not never created.
	ErrKeysMissing = errors.New("store: the signing keys are missing")
)

// DamagedError names a database file that bbolt cannot read safely
// (truncated, or pages that fail bbolt's own checks).
type DamagedError struct {
	Path  string
	Cause string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is damaged (%s): restore it from a backup", e.Path, e.Cause)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// LockedError names the data directory that another process holds.
type LockedError struct{ Dir string }

func (e *LockedError) Error() string {
	return fmt.Sprintf("pamctl is already running against %s (stop it, or use another --data-dir)", e.Dir)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// DB is an open pamctl database.
type DB struct {
	bolt *bolt.DB
	dir  string
	// auditCatchUp, set by a durable AuditLog, waits until the audit
	// bucket holds every acknowledged event (see audit_segment.go):
	// Snapshot calls it first, so a backup holds them.
	auditCatchUp func() error
	// auditOpen is set while an AuditLog of this DB is open: a second one
	// would share (and reset) the first one's segment.
	auditOpen atomic.Bool
	// rk authenticates requests, sessions and enrollments
	// (record_auth.go); nil until SetRecordKey, and those records are
	// refused until then.
	rk atomic.Pointer[RecordKey]
}

// Options tunes Open. The zero value is right for production.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// file before failing with ErrLocked. Default 500ms.
	LockTimeout time.Duration
	// NoSync skips fsync on commit (tests and audit.sync=async only).
	NoSync bool
}

// initialMmap is the address space the database is mapped with from the
// start (not memory: pages are read in as they are touched). bbolt maps a
// new database small and remaps it each time it outgrows the map,
// doubling; a remap waits for every read transaction to end and copies
// every node the writing transaction holds out of the old map (for the
// audit bucket that is the events being indexed). Etcd maps 10 GiB; a
// database under 256 MiB is never remapped.
//
// Not on Windows: there bbolt grows the file to the size of its map
// (SetEndOfFile before CreateFileMapping), so every data dir, each
// `serve --dev` run's included, would take 256 MiB of disk at once; it
// maps as bbolt does by default (from 32 KiB, doubling), remapping as the
// database grows.
var initialMmap = initialMmapFor(runtime.GOOS)

func initialMmapFor(goos string) int {
	if goos == "windows" {
		return 0
	}
	return 256 << 20
}

// pageSize is the page size of a new database (an existing one keeps its
// own). An audit event is a few KiB: in 4 KiB pages, most leaves holding
// a new one span two pages, and bbolt allocates every multi-page node a
// commit writes afresh (one-page nodes come from its pool), so each
// indexed event left 8 KiB of garbage; 16 KiB leaves hold several events.
const pageSize = 16 << 10

// Open opens (creating if needed) the database in dir. dir is created
// private (safefile.MkdirPrivate: mode 0700, on Windows a protected DACL
// the file inherits) and the file with mode 0600.
func Open(dir string, opt Options) (*DB, error) {
	if opt.LockTimeout == 0 {
		opt.LockTimeout = 500 * time.Millisecond
	}
	if err := safefile.MkdirPrivate(dir); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := checkSize(path); err != nil {
		return nil, err
	}
	if err := checkNotLost(dir, path); err != nil {
		return nil, err
	}
	var b *bolt.DB
	err := guard(path, func() error {
		var err error
		b, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opt.LockTimeout, NoSync: opt.NoSync, InitialMmapSize: initialMmap, PageSize: pageSize})
		return err
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, &LockedError{Dir: dir}
		}
		if errors.Is(err, ErrDamaged) {
			return nil, err
		}
		if errors.Is(err, bolterr.ErrInvalid) || errors.Is(err, bolterr.ErrChecksum) || errors.Is(err, bolterr.ErrVersionMismatch) {
			return nil, &DamagedError{Path: path, Cause: err.Error()}
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db := &DB{bolt: b, dir: dir}
	if err := db.init(); err != nil {
		b.Close()
		return nil, err
	}
	return db, nil
}

// path is the database file.
func (db *DB) path() string { return filepath.Join(db.dir, FileName) }

// guard runs fn, turning a panic or a memory fault inside bbolt (which
// trusts the file's pages) into a *DamagedError instead of a crash with a
// stack trace. Faults on mapped pages are recoverable only on this
// goroutine, with SetPanicOnFault on.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Path: path, Cause: fmt.Sprint(r)}
		}
	}()
	return fn()
}

// view and update are bbolt's View and Update under guard: for the reads
// of startup, which meet every page a damaged file may have.
func (db *DB) view(fn func(tx *bolt.Tx) error) error {
	return guard(db.path(), func() error { return db.bolt.View(fn) })
}

func (db *DB) update(fn func(tx *bolt.Tx) error) error {
	return guard(db.path(), func() error { return db.bolt.Update(fn) })
}

// checkSize refuses a file shorter than its own meta pages say it is (a
// truncated copy or a disk that filled up): bbolt would map the missing
// pages and fault on the first read of one. A missing or empty file is a
// new database.
func checkSize(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil
	}
	need, cause := metaSize(f)
	if cause != "" {
		return &DamagedError{Path: path, Cause: cause}
	}
	if fi.Size() < need {
		return &DamagedError{Path: path, Cause: fmt.Sprintf("the file is %d bytes, its header says %d: it was truncated", fi.Size(), need)}
	}
	return nil
}

// checkNotLost refuses a database file that is missing or empty beside an
// audit segment that was written: a database was here and is gone (deleted,
// truncated to nothing, a disk that filled up as it was created). Starting
// afresh would begin a new trail, new signing keys and an empty vault over
// the old one's remains without a word.
//
// It runs before the database's lock is taken, so another process may be
// starting the same new data dir meanwhile: the segment is read first. A
// process writes the segment only after its database holds its first
// pages, so a database found missing or empty after that was lost, whereas
// checked the other way round a racing first start looked like a loss.
func checkNotLost(dir, path string) error {
	seg, err := os.Open(filepath.Join(dir, SegmentFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		if fi, serr := os.Stat(path); serr == nil && fi.Size() > 0 {
			return nil // the database is there; the audit log reports the segment
		}
		return fmt.Errorf("store: open %s: %w", filepath.Join(dir, SegmentFileName), err)
	}
	magic := make([]byte, len(segMagic))
	_, err = io.ReadFull(seg, magic)
	seg.Close()
	if err != nil || (string(magic) != segMagic && string(magic) != segMagicV1 && string(magic) != segMagicDev) {
		return nil // created, never written: the first start did not get that far
	}
	if betweenLostChecks != nil {
		betweenLostChecks()
	}
	fi, err := os.Stat(path)
	if err == nil && fi.Size() > 0 {
		return nil
	}
	what := "it is missing"
	if err == nil {
		what = "it is empty"
	}
	return &DamagedError{Path: path, Cause: what + ", but the audit segment beside it (" + SegmentFileName +
		") shows a database was here; to start a new deployment on purpose, move " + SegmentFileName + " away too"}
}

// betweenLostChecks runs between checkNotLost's two reads (tests).
var betweenLostChecks func()

// metaSize reads bbolt's two meta pages and returns the file size the
// newer valid one records (high-water page id times page size).
func metaSize(f *os.File) (int64, string) {
	// Layout (bbolt internal/common, native byte order): a 16-byte page
	// header, then magic u32, version u32, page size u32, flags u32, root
	// bucket (16 bytes), freelist u64, pgid u64, txid u64, checksum u64
	// (FNV-64a of the meta before it).
	const hdr, magic = 16, 0xED0CDAED
	le := binary.LittleEndian
	read := func(off int64) (size, txid, pageSize int64, ok bool) {
		buf := make([]byte, hdr+64)
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, 0, 0, false
		}
		m := buf[hdr:]
		if le.Uint32(m[0:]) != magic {
			return 0, 0, 0, false
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != le.Uint64(m[56:]) {
			return 0, 0, 0, false
		}
		pageSize = int64(le.Uint32(m[8:]))
		return int64(le.Uint64(m[40:])) * pageSize, int64(le.Uint64(m[48:])), pageSize, true
	}
	s0, t0, ps, ok0 := read(0)
	var s1, t1 int64
	var ok1 bool
	if ok0 {
		s1, t1, _, ok1 = read(ps)
	} else {
		// The page size is in the damaged meta: look for the second
		// meta where bbolt does, at each page size from 1 KiB on.
		for try := int64(1 << 10); try <= 16<<20 && !ok1; try <<= 1 {
			s1, t1, _, ok1 = read(try)
		}
	}
	switch {
	case ok0 && (!ok1 || t0 >= t1):
		return s0, ""
	case ok1:
		return s1, ""
	}
	return 0, "no valid bbolt meta page"
}

func (db *DB) init() error {
	return db.update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("store: create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		var got uint64 // 0: a new file
		if v := meta.Get(keyVersion); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("store: corrupt schema version")
			}
			got = binary.BigEndian.Uint64(v)
			if got > SchemaVersion {
				return fmt.Errorf("%w (schema %d, this build reads up to %d): upgrade pamctl", ErrSchemaTooNew, got, SchemaVersion)
			}
		}
		if got == SchemaVersion {
			return nil
		}
		if err := migrate(tx, got); err != nil {
			return err
		}
		return meta.Put(keyVersion, u64(SchemaVersion))
	})
}

// migrate brings a file at schema from up to SchemaVersion inside the
// opening transaction: all or nothing.
func migrate(tx *bolt.Tx, from uint64) error {
	if from < 2 {
		if err := rebuildRequestIndexes(tx); err != nil {
			return fmt.Errorf("store: migrate schema %d to 2: %w", from, err)
		}
	}
	return nil
}

// Probe commits one small write (meta/probe = now) and so answers whether
// the store can take writes now: the disk is not full or read-only, the
// file is still writable. It is what /readyz's store check runs.
func (db *DB) Probe(ctx context.Context, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyProbe, []byte(now.UTC().Format(time.RFC3339)))
	})
	if err != nil {
		return fmt.Errorf("store: write probe: %w", err)
	}
	return nil
}

// Dir is the data directory the database lives in.
func (db *DB) Dir() string { return db.dir }

// Close flushes and closes the database file.
func (db *DB) Close() error { return db.bolt.Close() }

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Watch implements broker.Changes for a store only this process writes:
// there is nothing to follow, so it waits for ctx to end.
var _ broker.Changes = (*DB)(nil)

func (db *DB) Watch(ctx context.Context, _ func(broker.Change)) error {
	<-ctx.Done()
	return nil
}
