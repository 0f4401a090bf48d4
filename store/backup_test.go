package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// snapshotOf copies db into memory, checking the declared size.
func snapshotOf(t *testing.T, db *DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	var declared int64
	n, err := db.Snapshot(context.Background(), func(size int64) (io.Writer, error) { declared = size; return &buf, nil })
	if err != nil || n != declared || int64(buf.Len()) != n {
		t.Fatalf("snapshot: n=%d declared=%d len=%d err=%v", n, declared, buf.Len(), err)
	}
	return buf.Bytes()
}

// CheckBackup accepts a whole copy and refuses a truncated one, garbage,
// an empty file and a newer schema, without writing to any of them.
func TestCheckBackup(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, filepath.Join(dir, "data"))
	if err := db.Probe(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	full := snapshotOf(t, db)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.db", full)
	info, err := CheckBackup(good)
	if err != nil || info.Schema != SchemaVersion || info.Bytes != int64(len(full)) {
		t.Fatalf("good copy: %+v %v", info, err)
	}
	if after, _ := os.ReadFile(good); !bytes.Equal(full, after) {
		t.Fatal("CheckBackup wrote to the copy")
	}
	for name, b := range map[string][]byte{
		"truncated": full[:len(full)-4096],
		"garbage":   bytes.Repeat([]byte("x"), len(full)),
		"empty":     {},
	} {
		if _, err := CheckBackup(write(name+".db", b)); !errors.Is(err, ErrBadBackup) {
			t.Errorf("%s: %v", name, err)
		}
	}

	newer := openTest(t, filepath.Join(dir, "newer"))
	if err := newer.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, u64(SchemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckBackup(write("newer.db", snapshotOf(t, newer))); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("newer schema: %v", err)
	}
}

// A snapshot stops when its caller goes away, and an open that fails
// writes nothing.
func TestSnapshotStops(t *testing.T) {
	db := openTest(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Snapshot(ctx, func(int64) (io.Writer, error) { return io.Discard, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	refuse := errors.New("client gone")
	if _, err := db.Snapshot(context.Background(), func(int64) (io.Writer, error) { return nil, refuse }); !errors.Is(err, refuse) {
		t.Fatalf("open refused: %v", err)
	}
}
