package store

import (
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
// rawFlush issues the flush as a raw system call instead: the goroutine
// keeps its P and thread throughout and goes on at once. Measured at
// stream c=32 (docs/performance.md, thirteenth round): 30–45 µs less CPU a
// stream and 1.5–3 ms less added total time. The price is that the P runs
// nothing else during the flush (the other Ps do), and that a garbage
// collection's stop-the-world waits for a flush in progress. So the raw
// call is used only
//   - with at least two Ps: with one, the whole process would stop for
//     every flush; and
//   - while flushes are fast: one that takes longer than slowFlush (a
//     stalled or saturated disk, during which a collection would freeze
//     every goroutine with it) turns raw flushes off for rawCooldown, and
//     the runtime's blocking call is used meanwhile.
const (
	slowFlush   = 10 * time.Millisecond
	rawCooldown = time.Minute
)

// flushPolicy decides how each flush of one segment is issued. Its hooks
// are the real calls outside tests.
type flushPolicy struct {
	rawOffUntil atomic.Int64 // unix nanoseconds; raw flushes are off before it

	procs    func() int             // runtime.GOMAXPROCS(0)
	now      func() time.Time       // time.Now
	raw      func(fd uintptr) error // fdatasync as a raw system call
	blocking func(fd uintptr) error // fdatasync as the runtime issues it
}

func newFlushPolicy() *flushPolicy {
	return &flushPolicy{
		procs: func() int { return runtime.GOMAXPROCS(0) },
		now:   time.Now,
		raw: func(fd uintptr) error {
			if _, _, e := syscall.RawSyscall(syscall.SYS_FDATASYNC, fd, 0, 0); e != 0 {
				return e
			}
			return nil
		},
		blocking: func(fd uintptr) error { return syscall.Fdatasync(int(fd)) },
	}
}

// flush makes what was written to fd durable (data, not metadata).
func (p *flushPolicy) flush(fd uintptr) error {
	if p.procs() < 2 || p.now().UnixNano() < p.rawOffUntil.Load() {
		return p.blocking(fd)
	}
	start := p.now()
	err := p.raw(fd)
	end := p.now()
	if end.Sub(start) > slowFlush {
		p.rawOffUntil.Store(end.Add(rawCooldown).UnixNano())
	}
	return err
}
