package store

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The raw flush is used only with two Ps or more, while most of the
// latest raw flushes are fast and none stalls; turned off, it is tried
// again after rawCooldown with an empty window. Errors come back from either path.
func TestFlushPolicy(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	procs := 2
	var calls []string
	rawTakes := 200 * time.Microsecond
	errRaw, errBlocking := errors.New("raw failed"), errors.New("blocking failed")
	var failRaw, failBlocking bool
	p := newFlushPolicy()
	p.epoch = clock
	p.procs = func() int { return procs }
	p.now = func() time.Time { return clock }
	p.raw = func(uintptr) error {
		calls = append(calls, "raw")
		clock = clock.Add(rawTakes)
		if failRaw {
			return errRaw
		}
		return nil
	}
	p.blocking = func(uintptr) error {
		calls = append(calls, "blocking")
		clock = clock.Add(time.Millisecond)
		if failBlocking {
			return errBlocking
		}
		return nil
	}
	step := func(want string) {
		t.Helper()
		calls = calls[:0]
		if err := p.flush(3); err != nil {
			t.Fatalf("flush: %v", err)
		}
		if len(calls) != 1 || calls[0] != want {
			t.Fatalf("flush went %v, want %s", calls, want)
		}
	}
	steps := func(n int, want string) {
		t.Helper()
		for range n {
			step(want)
		}
	}
	steps(50, "raw")
	procs = 1 // a container limited to one CPU
	step("blocking")
	procs = 4
	step("raw")

	// A fast disk's flushes that waited for a CPU or queued behind the
	// index's commits are outliers: a start's (9 of its first 35 flushes
	// took about 6 ms in the bench, which turned an average of 1/32 weight
	// off), a 13 ms one under load, and a window where all but one flush
	// took fastFlush or longer, do not turn it off.
	for i := range 35 {
		rawTakes = 200 * time.Microsecond
		if i%4 == 1 {
			rawTakes = 6 * time.Millisecond
		}
		step("raw")
	}
	rawTakes = 13 * time.Millisecond
	step("raw")
	for i := range 10 * slowWindow {
		rawTakes = fastFlush // as long as the bound is slow
		if i%slowWindow == 7 {
			rawTakes = fastFlush - time.Microsecond
		}
		step("raw")
	}
	rawTakes = 200 * time.Microsecond
	step("raw") // the window holds one fast flush

	// A disk whose flushes take milliseconds turns it off once the whole
	// window is slow, for rawCooldown; then it is tried again, the window
	// starting empty.
	rawTakes = 3 * time.Millisecond
	untilOff := func() int {
		t.Helper()
		for n := 0; n < 200; n++ {
			calls = calls[:0]
			if err := p.flush(3); err != nil {
				t.Fatal(err)
			}
			if calls[0] != "raw" {
				return n
			}
		}
		t.Fatalf("flushes of %v never turned raw flushes off", rawTakes)
		return 0
	}
	if n := untilOff(); n != slowWindow {
		t.Fatalf("3 ms flushes went raw %d times before it turned off, want %d", n, slowWindow)
	}
	clock = clock.Add(rawCooldown - 2*time.Millisecond)
	step("blocking")
	clock = clock.Add(time.Millisecond)
	rawTakes = fastFlush // still slow: the bound is
	if n := untilOff(); n != slowWindow {
		t.Fatalf("after the cool-down flushes of %v went raw %d times, want %d", fastFlush, n, slowWindow)
	}
	clock = clock.Add(rawCooldown)
	rawTakes = 200 * time.Microsecond // fast again: raw, and it stays so
	steps(100, "raw")

	// One stall turns it off at once, however fast the others; a flush
	// as long as the bound is not one, nor one of 50 ms (a fast disk's
	// flush under load, when its thread waited long for a CPU).
	rawTakes = 50 * time.Millisecond
	step("raw")
	rawTakes = stallFlush
	step("raw")
	rawTakes = 200 * time.Microsecond
	steps(100, "raw")
	rawTakes = stallFlush + time.Microsecond
	step("raw")
	rawTakes = 200 * time.Microsecond
	step("blocking")
	clock = clock.Add(rawCooldown)
	steps(10, "raw")

	failRaw = true
	if err := p.flush(3); !errors.Is(err, errRaw) {
		t.Fatalf("a failed raw flush returned %v", err)
	}
	procs, failBlocking = 1, true
	if err := p.flush(3); !errors.Is(err, errBlocking) {
		t.Fatalf("a failed blocking flush returned %v", err)
	}
}

// Both real calls flush a file, and fail on a descriptor that is not one;
// a segment whose file is closed reports its flush failed.
func TestFlushCallsAndErrors(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("record")); err != nil {
		t.Fatal(err)
	}
	p := newFlushPolicy()
	for name, call := range map[string]func(uintptr) error{"raw": p.raw, "blocking": p.blocking} {
		if call == nil {
			continue // no raw flush on macOS and Windows
		}
		if err := call(f.Fd()); err != nil {
			t.Errorf("%s flush: %v", name, err)
		}
		if err := call(1 << 20); !errors.Is(err, errBadFD) {
			t.Errorf("%s flush of a bad descriptor: %v, want %v", name, err, errBadFD)
		}
	}

	s, _, err := openSegment(t.TempDir(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	flushed := 0
	real := s.flush.raw
	if real == nil { // macOS, Windows: the flush the segment's policy would make
		real = s.flush.blocking
	}
	s.flush.raw = func(fd uintptr) error { flushed++; return real(fd) }
	s.flush.procs = func() int { return 2 } // whatever this machine has
	if _, err := s.write([]byte("a record's bytes")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if flushed != 1 {
		t.Fatalf("a segment write made %d flushes through its policy, want 1", flushed)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err == nil {
		t.Fatal("a closed segment's sync succeeded")
	}
}

// A flush a signal interrupted is issued again; any other error returns.
func TestFlushRetriesWhenInterrupted(t *testing.T) {
	n := 0
	if err := retryEINTR(func() error {
		if n++; n < 3 {
			return syscall.EINTR
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("after EINTR twice: %v, %d calls", err, n)
	}
	n = 0
	if err := retryEINTR(func() error { n++; return syscall.EIO }); !errors.Is(err, syscall.EIO) || n != 1 {
		t.Fatalf("EIO: %v, %d calls", err, n)
	}
}

// Where the OS has no raw flush (macOS: F_FULLFSYNC through the runtime),
// every flush is the blocking one, with any number of Ps.
func TestFlushPolicyWithoutRaw(t *testing.T) {
	p := newFlushPolicy()
	p.procs = func() int { return 8 }
	p.raw = nil
	blocking := 0
	p.blocking = func(uintptr) error { blocking++; return nil }
	for range 3 {
		if err := p.flush(3); err != nil {
			t.Fatal(err)
		}
	}
	if blocking != 3 {
		t.Fatalf("%d of 3 flushes were blocking, want all", blocking)
	}
}
