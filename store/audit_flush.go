package store

import (
	"errors"
	"math/bits"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// The segment's fdatasync is the one blocking system call on a durable
// call's path, and under load the way Go issues blocking calls costs more
// than the call's own CPU. A goroutine in a system call keeps its
// processor (P) only for a few tens of microseconds: the runtime's monitor
// then hands the P to another thread so other goroutines run (a thread
// wake), and when the flush returns, its thread finds no free P, puts the
// goroutine on the global run queue and parks (a second switch). A busy
// scheduler looks at that queue once every 61 of its rounds, so the
// commit's leader, and with it every append of the commit, waits up to a
// millisecond or two before it can release them.
//
// The flush is issued as a raw system call instead: the goroutine keeps
// its P and thread throughout and goes on at once. Measured against the
// runtime's call (docs/performance.md, fourteenth round): at stream c=32
// 20–75 µs less CPU a stream and 0.5–1.4 ms less added total time, at
// chat c=32 17–35 µs less CPU a call. The price is that the P runs
// nothing else during the flush (the other Ps do), and that a garbage
// collection's stop-the-world waits for a flush in progress. That is a
// good trade only while flushes are short next to what the handoff costs,
// so the raw call is used only
//   - with at least two Ps: with one, the whole process would stop for
//     every flush;
//   - while the disk flushes fast: when every one of the last slowWindow
//     raw flushes took fastFlush or longer, its flushes take milliseconds
//     (a spinning disk, a network volume) and would keep a P idle most of
//     the time. The fastest flush of a window is the disk's own time; the
//     others also waited for a CPU once done (under load, behind other
//     runnable threads) or queued behind the index's commits (a start's
//     first commits grow the database). In the bench at c=32 each window
//     of 32 held 2 to 13 flushes over 1 ms, its fastest 96–241 µs; an
//     average (1/32 weight) turned raw flushes off within seconds of
//     every run (docs/performance.md, fourteenth round); and
//   - while no flush stalls: one over stallFlush (a stalled disk, during
//     which a collection would freeze every goroutine with it) turns raw
//     flushes off at once. Not 20 ms: under the bench's load a flush of
//     the fast disk took that long now and then (a CPU's wait again), and
//     turned raw flushes off for a minute.
//
// Turned off, the runtime's blocking call is used for rawCooldown, then
// the raw call is tried again, its window starting empty.
const (
	fastFlush   = time.Millisecond
	stallFlush  = 100 * time.Millisecond
	rawCooldown = time.Minute
	slowWindow  = 32 // the raw flushes judged: the latest ones (bits of a uint32)
)

// flushPolicy decides how each flush of one segment is issued. Its hooks
// are the real calls outside tests.
type flushPolicy struct {
	rawOffUntil atomic.Int64  // raw flushes are off before it: nanoseconds on the monotonic clock since epoch
	slow        atomic.Uint32 // one bit per raw flush of the last slowWindow, the latest lowest: 1 if it was slow; empty after each cool-down

	epoch    time.Time              // when the policy was made; durations from it are monotonic
	procs    func() int             // runtime.GOMAXPROCS(0)
	now      func() time.Time       // time.Now
	raw      func(fd uintptr) error // fdatasync as a raw system call; nil where there is none (audit_flush_other.go)
	blocking func(fd uintptr) error // fdatasync as the runtime issues it
}

func newFlushPolicy() *flushPolicy {
	return &flushPolicy{
		epoch:    time.Now(),
		procs:    func() int { return runtime.GOMAXPROCS(0) },
		now:      time.Now,
		raw:      rawFlush,
		blocking: func(fd uintptr) error { return retryEINTR(func() error { return blockingFlush(fd) }) },
	}
}

// retryEINTR calls f again while a signal interrupted it (the runtime
// signals threads to preempt them; some file systems let that cut a flush
// short): a failed flush stops the log, an interrupted one must not.
func retryEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// flush makes what was written to fd durable (data, not metadata).
func (p *flushPolicy) flush(fd uintptr) error {
	if p.raw == nil || p.procs() < 2 {
		return p.blocking(fd)
	}
	start := p.now()
	if int64(start.Sub(p.epoch)) < p.rawOffUntil.Load() {
		return p.blocking(fd)
	}
	err := p.raw(fd)
	end := p.now()
	d := end.Sub(start)
	w := p.slow.Load() << 1
	if d >= fastFlush {
		w |= 1
	}
	p.slow.Store(w) // flushes of one segment are not concurrent
	if d > stallFlush || bits.OnesCount32(w) == slowWindow {
		p.rawOffUntil.Store(int64(end.Add(rawCooldown).Sub(p.epoch)))
		p.slow.Store(0)
	}
	return err
}
