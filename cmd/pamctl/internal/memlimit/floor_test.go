package memlimit

import (
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestDecideFloor(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured int64
		gogc       string
		limit      int64
		want       FloorChoice
		err        string
	}{
		{"default", 0, "", 0, FloorChoice{Bytes: DefaultFloor, Source: "default"}, ""},
		{"configured", 128 << 20, "", 0, FloorChoice{Bytes: 128 << 20, Source: "memory_floor"}, ""},
		{"none", -1, "", 0, FloorChoice{Source: "none"}, ""},
		{"GOGC wins", 128 << 20, "200", 0, FloorChoice{Source: "GOGC"}, ""},
		{"GOGC=off wins", 0, "off", 0, FloorChoice{Source: "GOGC"}, ""},
		// A limit of 100 MiB (a 111 MiB container) keeps the floor at 50.
		{"half the limit", 0, "", 40 << 20, FloorChoice{Bytes: 20 << 20, Source: "default", Capped: true}, ""},
		{"a 100 MiB limit", 0, "", 100 << 20, FloorChoice{Bytes: DefaultFloor, Source: "default"}, ""},
		{"below half the limit", 0, "", 256 << 20, FloorChoice{Bytes: DefaultFloor, Source: "default"}, ""},
		{"configured past the limit", 1 << 30, "", 512 << 20, FloorChoice{Bytes: 256 << 20, Source: "memory_floor", Capped: true}, ""},
		{"too small", 1 << 20, "", 0, FloorChoice{}, "memory_floor 1048576: want bytes from 4194304"},
		{"too large", MaxFloor + 1, "", 0, FloorChoice{}, "memory_floor 68719476737"},
		{"negative", -2, "", 0, FloorChoice{}, "memory_floor -2"},
		{"invalid even with GOGC", -2, "100", 0, FloorChoice{}, "memory_floor -2"},
	} {
		got, err := DecideFloor(tc.configured, tc.gogc, tc.limit)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v", tc.name, got, err, tc.want)
		}
	}
}

// goal is the runtime's heap goal for a GOGC (runtime/mgcpacer.go).
func goal(p int, live, stacks, globals uint64) uint64 {
	return max(live+(live+stacks+globals)*uint64(p)/100, heapMinimum*uint64(p)/100)
}

// TestPercent: the goal Percent leads to is the floor (to within a
// percent's rounding) while the live heap is small, and GOGC=100's own
// goal once that is past the floor. It never lowers GOGC below 100.
func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		floor, live, stacks, globals uint64
		want                         int
	}{
		{64 * mib, 0, 0, 0, 1600},                       // idle: the heap minimum decides
		{64 * mib, 2 * mib, 0, 1 << 10, 1600},           // still the heap minimum
		{64 * mib, 8 * mib, 512 << 10, 0, 658},          // (64-8)/8.5
		{64 * mib, 31 * mib, 1 * mib, 0, 103},           // just under
		{64 * mib, 32 * mib, 0, 0, 100},                 // 2 × live reaches the floor
		{64 * mib, 48 * mib, 27 * mib, 0, 100},          // a thousand open streams
		{4 * mib, 1 * mib, 0, 0, 100},                   // the runtime's own minimum
		{1 << 36, 1, 0, 0, 1 << 36 * 100 / heapMinimum}, // large floor, tiny heap
	} {
		if got := Percent(tc.floor, tc.live, tc.stacks, tc.globals); got != tc.want {
			t.Errorf("Percent(%d, %d, %d, %d) = %d, want %d", tc.floor, tc.live, tc.stacks, tc.globals, got, tc.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		floor := uint64(MinFloor + r.Int64N(MaxFloor-MinFloor))
		live := r.Uint64N(floor)
		stacks, globals := r.Uint64N(64*mib), r.Uint64N(8*mib)
		p := Percent(floor, live, stacks, globals)
		g, g100 := goal(p, live, stacks, globals), goal(100, live, stacks, globals)
		if p < 100 {
			t.Fatalf("Percent(%d, %d, %d, %d) = %d < 100", floor, live, stacks, globals, p)
		}
		if g100 >= floor {
			if p != 100 {
				t.Fatalf("Percent(%d, %d, %d, %d) = %d: GOGC=100's goal %d is past the floor", floor, live, stacks, globals, p, g100)
			}
			continue
		}
		// Rounding down a percent costs at most one percent of the roots.
		if g > floor || floor-g > (live+stacks+globals)/100+heapMinimum/100+1 {
			t.Fatalf("Percent(%d, %d, %d, %d) = %d: goal %d, floor %d", floor, live, stacks, globals, p, g, floor)
		}
	}
}

func readGC(t *testing.T) (gogc, goal uint64) {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// TestFloorRuns: the runtime's heap goal follows the floor after each
// collection, and GOGC comes back when it stops.
func TestFloorRuns(t *testing.T) {
	if p := debug.SetGCPercent(100); p != 100 {
		defer debug.SetGCPercent(p)
	}
	runtime.GC()
	if gogc, g := readGC(t); gogc != 100 || g > 16<<20 {
		t.Fatalf("before: GOGC %d, goal %d", gogc, g)
	}
	const floor = 48 << 20
	f := StartFloor(floor)
	defer f.Stop()
	// Started: the goal is the floor at once, from the last collection.
	if gogc, g := readGC(t); gogc <= 100 || g < floor*98/100 || g > floor {
		t.Fatalf("started: GOGC %d, goal %d, want about %d", gogc, g, floor)
	}
	// A live heap past half the floor: after the next collection (and
	// its finalizers), GOGC is 100 again.
	big := make([]byte, 40<<20)
	for i := range big {
		big[i] = 1
	}
	waitGC(t, func(gogc, g uint64) bool { return gogc == 100 && g >= 80<<20 })
	runtime.KeepAlive(big)
	big = nil
	// Garbage again: the floor is back.
	waitGC(t, func(gogc, g uint64) bool { return gogc > 100 && g >= floor*98/100 && g <= floor })
	f.Stop()
	f.Stop() // twice is fine
	if gogc, _ := readGC(t); gogc != 100 {
		t.Fatalf("stopped: GOGC %d", gogc)
	}
	runtime.GC()
	time.Sleep(10 * time.Millisecond) // a finalizer of the stopped floor must not tune
	runtime.GC()
	if gogc, g := readGC(t); gogc != 100 || g > 16<<20 {
		t.Fatalf("stopped: GOGC %d, goal %d", gogc, g)
	}
}

// waitGC collects until ok holds: the floor tunes from the finalizer
// goroutine, after the collection.
func waitGC(t *testing.T, ok func(gogc, goal uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		gogc, g := readGC(t)
		if ok(gogc, g) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d, goal %d", gogc, g)
		}
	}
}
