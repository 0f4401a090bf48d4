package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

func TestSpoolKeepsOrderAcrossRestartsAndAcks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := s.Append(ctx, &audit.Event{Type: audit.TypeProxyCall, Details: map[string]string{"request_id": id}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetEnrollment("p1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, 1); err != nil {
		t.Fatal(err)
	}
	size := s.Size()
	if size <= 0 {
		t.Fatalf("size %d", size)
	}
	// A second process cannot open the same spool.
	if _, err := OpenSpool(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	s.Close()

	s, err = OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != size {
		t.Fatalf("size after reopen %d, want %d", s.Size(), size)
	}
	if id, _ := s.Enrollment(); id != "p1" {
		t.Fatalf("enrollment %q", id)
	}
	seq, _ := s.Append(ctx, &audit.Event{Type: audit.TypeProxyCall, Details: map[string]string{"request_id": "d"}})
	if seq != 4 {
		t.Fatalf("sequence went back to %d after a restart", seq)
	}
	evs, err := s.Pending(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, e := range evs {
		got += e.Event.Details["request_id"]
	}
	if got != "bcd" || evs[0].Seq != 2 {
		t.Fatalf("pending %q from %d", got, evs[0].Seq)
	}
	if err := s.Ack(ctx, 4); err != nil || s.Size() != 0 {
		t.Fatalf("ack all: %v, size %d", err, s.Size())
	}
	fi, err := os.Stat(filepath.Join(dir, SpoolFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("spool file mode: %v %v", err, fi)
	}
}

// Next is where a new enrollment's shipping starts: the oldest pending
// event, or the next one appended when none is, across a reopen.
func TestSpoolNextIsTheFirstUnacknowledgedSequence(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	next := func(want uint64) {
		t.Helper()
		if n, err := s.Next(); err != nil || n != want {
			t.Fatalf("next %d %v, want %d", n, err, want)
		}
	}
	next(1)
	for range 3 {
		if _, err := s.Append(ctx, &audit.Event{Type: audit.TypeProxyCall}); err != nil {
			t.Fatal(err)
		}
	}
	next(1)
	s.Ack(ctx, 2)
	next(3)
	s.Ack(ctx, 3)
	next(4)
	s.Close()
	if s, err = OpenSpool(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next(4)
}
