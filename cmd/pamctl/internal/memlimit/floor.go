package memlimit

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultFloor is the heap goal the collector keeps at least when
// memory_floor is 0. A proxy's live heap under load is a few MiB, so with
// GOGC's default the collector ran every few MiB of garbage: about 20
// times a second at concurrency 32, a tenth of the process's CPU
// (docs/performance.md). With a floor it runs when the heap reaches
// DefaultFloor instead; once the live heap is past half of it (a thousand
// open streams), GOGC applies unchanged. 16 and 32 MiB measured the same
// at concurrency 32; 64 MiB cost a serial caller more than it saved (a
// heap cycling through more memory than the caches hold).
const DefaultFloor = 32 << 20

// MinFloor is the smallest memory_floor: the runtime's own minimum heap
// goal, below which a floor changes nothing.
const MinFloor = heapMinimum

// MaxFloor bounds memory_floor, a guard against a value meant as a limit.
const MaxFloor = 64 << 30

// FloorChoice is the floor serve keeps and where it came from.
type FloorChoice struct {
	Bytes  int64  // 0: none, GOGC alone
	Source string // "memory_floor", "default", "GOGC", "none"
	Capped bool   // lowered to half the memory limit
}

// DecideFloor picks the heap floor. configured is memory_floor: bytes, 0
// for DefaultFloor, -1 for none. GOGC in the environment (gogcEnv) wins:
// whoever set it chose the collector's pace. With a soft memory limit the
// floor is at most half of it, so the collector never works against the
// limit just to keep a floor.
func DecideFloor(configured int64, gogcEnv string, limit int64) (FloorChoice, error) {
	if err := CheckFloor(configured); err != nil {
		return FloorChoice{}, err
	}
	if gogcEnv != "" {
		return FloorChoice{Source: "GOGC"}, nil
	}
	c := FloorChoice{Bytes: configured, Source: "memory_floor"}
	switch configured {
	case -1:
		return FloorChoice{Source: "none"}, nil
	case 0:
		c = FloorChoice{Bytes: DefaultFloor, Source: "default"}
	}
	if limit > 0 && c.Bytes > limit/2 {
		c.Bytes, c.Capped = limit/2, true
	}
	return c, nil
}

// CheckFloor validates memory_floor.
func CheckFloor(configured int64) error {
	if configured == 0 || configured == -1 || configured >= MinFloor && configured <= MaxFloor {
		return nil
	}
	return fmt.Errorf("memory_floor %d: want bytes from %d (4 MiB) to %d (64 GiB), 0 for the default (32 MiB), or -1 for none", configured, int64(MinFloor), int64(MaxFloor))
}

// heapMinimum is the runtime's smallest heap goal at GOGC=100; it scales
// with GOGC (runtime/mgcpacer.go: heapMinimum = 4 MiB × GOGC/100).
const heapMinimum = 4 << 20

// Percent is the GOGC that makes the collector's next heap goal floor:
// the runtime aims at live + (live + stacks + globals) × GOGC/100, and at
// least 4 MiB × GOGC/100, so GOGC is at most floor / 4 MiB × 100 (a larger
// one would lift the goal past the floor). It is never below 100, so a
// floor only ever spaces collections out.
func Percent(floor, live, stacks, globals uint64) int {
	roots := live + stacks + globals
	if floor <= live+roots {
		return 100
	}
	p := floor * 100 / heapMinimum
	if roots > 0 {
		p = min(p, (floor-live)*100/roots)
	}
	return int(max(min(p, math.MaxInt32), 100))
}

// Floor keeps the collector's heap goal at least a given size: after each
// collection it sets GOGC from what the collection found live.
type Floor struct {
	floor uint64
	prev  int // GOGC before Start, restored by Stop

	mu      sync.Mutex
	stopped bool
	percent int
	samples []metrics.Sample
}

// StartFloor starts keeping the heap goal at least floor bytes, from the
// next collection on. Stop it to restore GOGC.
func StartFloor(floor int64) *Floor {
	f := &Floor{floor: uint64(floor), samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	f.prev = 100
	if gogc[0].Value.Kind() == metrics.KindUint64 {
		f.prev = int(gogc[0].Value.Uint64())
	}
	f.percent = f.prev
	f.tune()
	f.arm()
	return f
}

// gcSentinel is garbage as soon as it is made: its finalizer runs after
// the next collection and makes the next one. The pointer keeps it out of
// the tiny allocator, whose objects' finalizers may never run.
type gcSentinel struct{ f *Floor }

func (f *Floor) arm() {
	runtime.SetFinalizer(&gcSentinel{f}, func(s *gcSentinel) {
		if s.f.tune() {
			s.f.arm()
		}
	})
}

// tune sets GOGC for the next goal; false once stopped.
func (f *Floor) tune() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.samples)
	var v [3]uint64
	for i, s := range f.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	if p := max(Percent(f.floor, v[0], v[1], v[2]), f.prev); p != f.percent {
		debug.SetGCPercent(p)
		f.percent = p
	}
	return true
}

// Stop stops tuning and restores GOGC as it was before StartFloor.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	debug.SetGCPercent(f.prev)
}
