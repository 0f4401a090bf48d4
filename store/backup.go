package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Snapshot writes a consistent copy of the whole database: one read
// transaction (bbolt Tx.WriteTo), so the server keeps serving and appending
// while it runs, and the copy holds the signing keys (with the audit
// high-water mark in their authenticated records), the vault and the audit
// trail as they were at one instant. open is called once, with the copy's
// exact size, before the first byte; its writer receives the copy.
//
// Because the high-water mark is raised only after the head it names is
// stored (see AuditLog.signHead), every consistent copy has its mark at or
// behind its own trail: a copy opens, whatever its age.
func (db *DB) Snapshot(ctx context.Context, open func(size int64) (io.Writer, error)) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if db.auditCatchUp != nil {
		if err := db.auditCatchUp(); err != nil {
			return 0, fmt.Errorf("store: snapshot: %w", err)
		}
	}
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		w, err := open(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: snapshot: %w", err)
	}
	return n, nil
}

// ctxWriter stops a long copy once ctx ends (the client went away).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// ErrBadBackup means a file is not a complete pamctl database.
var ErrBadBackup = errors.New("store: not a complete pamctl database")

// BackupInfo describes a checked copy.
type BackupInfo struct {
	Bytes    int64  // size of the file
	Schema   uint64 // its schema version
	AuditSeq uint64 // the last audit event it holds (0: none)
}

// CheckBackup opens the database file at path read-only and checks that it
// is whole (its size is what its meta page says, every page is reachable
// exactly once) and that this build can read it. It never writes to path.
func CheckBackup(path string) (BackupInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: check backup: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		return BackupInfo{}, fmt.Errorf("%w: %s: %v", ErrBadBackup, path, err)
	}
	defer b.Close()
	info := BackupInfo{Bytes: fi.Size()}
	err = b.View(func(tx *bolt.Tx) error {
		// Checked before any page is read: a truncated file would fault
		// on its missing pages.
		if want := tx.Size(); fi.Size() < want {
			return fmt.Errorf("%w: %s is %d bytes, its meta page says %d (truncated copy)", ErrBadBackup, path, fi.Size(), want)
		}
		var first error
		for err := range tx.Check() { // drained: the checker runs until it closes the channel
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadBackup, path, first)
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: %s has no meta bucket", ErrBadBackup, path)
		}
		v := meta.Get(keyVersion)
		if len(v) != 8 {
			return fmt.Errorf("%w: %s has no schema version", ErrBadBackup, path)
		}
		info.Schema = binary.BigEndian.Uint64(v)
		if info.Schema > SchemaVersion {
			return fmt.Errorf("%w (schema %d, this build reads up to %d): upgrade pamctl before restoring it", ErrSchemaTooNew, info.Schema, SchemaVersion)
		}
		if a := tx.Bucket(bucketAudit); a != nil {
			if k, _ := a.Cursor().Last(); len(k) == 8 {
				info.AuditSeq = binary.BigEndian.Uint64(k)
			}
		}
		return nil
	})
	return info, err
}
