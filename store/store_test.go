package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

func openTest(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetRecordKey(testRecKey)
	return db
}

// testRecKey is the record key of the tests' stores (a server derives
// it from the master key).
var testRecKey = func() *RecordKey {
	rk, err := NewRecordKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return rk
}()

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	openTest(t, dir)
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}

func TestRequestRoundTripAndCAS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openTest(t, dir)
	exp := time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)
	in := &broker.Request{ID: "req_1", Kind: broker.KindAccess, Requester: broker.Identity{Subject: "alice", Issuer: "corp", Groups: []string{"ml"}},
		Scopes: []string{"model:gpt-4o"}, TTL: 30 * time.Minute, State: broker.StateApproved, ExpiresAt: &exp}
	if err := db.CreateRequest(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetRequest(ctx, "req_1")
	if err != nil || got.Requester.Subject != "alice" || got.TTL != 30*time.Minute || !got.ExpiresAt.Equal(exp) || got.Scopes[0] != "model:gpt-4o" {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if _, err := db.GetRequest(ctx, "nope"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	// A refusing update changes nothing.
	refuse := errors.New("refused")
	if _, err := db.UpdateRequest(ctx, "req_1", func(r *broker.Request) error { r.State = broker.StateRevoked; return refuse }); !errors.Is(err, refuse) {
		t.Fatal(err)
	}
	if got, _ := db.GetRequest(ctx, "req_1"); got.State != broker.StateApproved {
		t.Fatalf("refused update leaked: %s", got.State)
	}
	if _, err := db.UpdateRequest(ctx, "req_1", func(r *broker.Request) error { r.State = broker.StateRevoked; return nil }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db2 := openTest(t, dir)
	got, _ = db2.GetRequest(ctx, "req_1")
	if got.State != broker.StateRevoked {
		t.Fatalf("after reopen: %s", got.State)
	}
}

func TestVaultAndKeysRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openTest(t, dir)
	mk, _ := vault.GenerateMasterKey()
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := token.LoadKeyring(ctx, db, v.Sealer(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Set(ctx, "openai", vault.NewSecret("sk-test-123-plaintext")); err != nil {
		t.Fatal(err)
	}
	kid := kr.ActiveKID()
	db.Close()

	// Nothing in the data dir is plaintext.
	raw, _ := os.ReadFile(filepath.Join(dir, FileName))
	if bytes.Contains(raw, []byte("sk-test-123")) {
		t.Fatal("vault secret stored in clear")
	}

	db2 := openTest(t, dir)
	v2, err := vault.Open(ctx, db2, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := v2.Get(ctx, "openai"); err != nil || s.Reveal() != "sk-test-123-plaintext" {
		t.Fatalf("get after reopen: %v", err)
	}
	if kr2, err := token.LoadKeyring(ctx, db2, v2.Sealer(), time.Hour, nil); err != nil || kr2.ActiveKID() != kid {
		t.Fatalf("keyring after reopen: %v", err)
	}
	other, _ := vault.GenerateMasterKey()
	if _, err := vault.Open(ctx, db2, other, nil); !errors.Is(err, vault.ErrWrongMasterKey) {
		t.Fatalf("wrong master key: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	db.bolt.Update(func(tx *bolt.Tx) error {
		b := make([]byte, 8)
		binary.BigEndian.PutUint64(b, SchemaVersion+1)
		return tx.Bucket(bucketMeta).Put(keyVersion, b)
	})
	db.Close()
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "upgrade pamctl") {
		t.Fatalf("got %v", err)
	}
}

func TestNewerRecordRefused(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRequests).Put([]byte("req_future"), []byte(`{"v":99,"d":{"id":"req_future"}}`))
	})
	if _, err := db.GetRequest(ctx, "req_future"); !errors.Is(err, ErrSchemaTooNew) { // refused before its authenticator is looked at
		t.Fatalf("got %v", err)
	}
}

// A second process opening the same data dir fails fast with a clear error.
func TestLockedByAnotherProcess(t *testing.T) {
	if os.Getenv("PAMCTL_STORE_HOLDER") != "" {
		db, err := Open(os.Getenv("PAMCTL_STORE_HOLDER"), Options{})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		fmt.Println("holding")
		time.Sleep(30 * time.Second)
		db.Close()
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockedByAnotherProcess$")
	cmd.Env = append(os.Environ(), "PAMCTL_STORE_HOLDER="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "holding") {
		t.Fatalf("holder said %q", buf[:n])
	}
	start := time.Now()
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pamctl is already running against "+dir) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v to fail", d)
	}
}

// Concurrent requesters share commits through Batch; every write lands.
func TestConcurrentCreatesWithBatch(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	const writers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- db.CreateRequest(ctx, &broker.Request{ID: fmt.Sprintf("req_%02d_%02d", w, i), State: broker.StatePending})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	all, err := db.RequestsInState(ctx, broker.StatePending, nil)
	if err != nil || len(all) != writers*each {
		t.Fatalf("stored %d of %d: %v", len(all), writers*each, err)
	}
}

// TestPageSize: a new database has 16 KiB pages (an audit event's leaf
// fits one page), an existing one keeps the size it was made with, and a
// damaged first meta page does not hide the second, wherever the page size
// puts it: the size check reads it as bbolt does, and the file opens.
func TestPageSize(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := db.bolt.Info().PageSize; got != pageSize {
		t.Errorf("new database: page size %d, want %d", got, pageSize)
	}
	db.Close()
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, cause := metaSize(f)
	if cause != "" || want < 2*pageSize {
		t.Fatalf("metaSize = %d %q", want, cause)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	got, cause := metaSize(f)
	f.Close()
	if cause != "" || got < 2*pageSize || got > want {
		t.Errorf("meta 0 damaged: metaSize = %d %q, want meta 1's size (at most %d)", got, cause, want)
	}
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("open with meta 0 damaged: %v", err)
	}
	db.Close()

	// A database made with 4 KiB pages keeps them.
	old := t.TempDir()
	b, err := bolt.Open(filepath.Join(old, FileName), 0o600, &bolt.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	db, err = Open(old, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.bolt.Info().PageSize; got != 4096 {
		t.Errorf("existing database: page size %d, want its 4096", got)
	}
}

// A database is mapped 256 MiB from the start, but on Windows, where bbolt
// grows the file to its map (every data dir would take 256 MiB of disk at
// once): there it maps as bbolt does by default.
func TestInitialMmapPerOS(t *testing.T) {
	for goos, want := range map[string]int{"linux": 256 << 20, "darwin": 256 << 20, "freebsd": 256 << 20, "windows": 0} {
		if got := initialMmapFor(goos); got != want {
			t.Errorf("%s: initial map %d, want %d", goos, got, want)
		}
	}
}
