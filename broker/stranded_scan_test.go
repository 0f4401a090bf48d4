package broker

import (
	"testing"
	"time"
)

// The sweep's look for stranded held calls is due at the first tick, then
// every strandedEvery, and at the next tick after a failure: one marked
// while a look runs too (review B: the look's end cleared it, so those
// calls waited up to 30 s).
func TestStrandedScanPacing(t *testing.T) {
	var st strandedScan
	t0 := time.Unix(1_000_000, 0)
	marks, due := st.begin(t0)
	if !due {
		t.Fatal("the first look is not due")
	}
	st.end(t0, false, marks)
	if _, due := st.begin(t0.Add(2 * time.Second)); due {
		t.Fatal("a look is due 2 s after a clean one")
	}
	if _, due := st.begin(t0.Add(strandedEvery)); !due {
		t.Fatal("no look is due strandedEvery after the last")
	}

	// A failure marked while a look runs.
	t1 := t0.Add(strandedEvery)
	marks, _ = st.begin(t1)
	st.mark()
	st.end(t1, false, marks)
	if _, due := st.begin(t1.Add(2 * time.Second)); !due {
		t.Fatal("a failure marked during a look waits for the next period")
	}

	// The look's own failure.
	t2 := t1.Add(2 * time.Second)
	marks, _ = st.begin(t2)
	st.end(t2, true, marks)
	if _, due := st.begin(t2.Add(2 * time.Second)); !due {
		t.Fatal("a failed look is not retried at the next tick")
	}
	marks, _ = st.begin(t2.Add(2 * time.Second))
	st.end(t2.Add(2*time.Second), false, marks)
	if _, due := st.begin(t2.Add(4 * time.Second)); due {
		t.Fatal("a look is due right after a clean one")
	}
}
