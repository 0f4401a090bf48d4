package broker

import (
	"fmt"
	"testing"
	"time"
)

// The limiter's bounds: per reviewer, in all, and the reviewers counted by
// name. Every refusal is written or counted exactly once, and a count is
// carried by its own reviewer's next event, or as others' when it could
// not be kept by name.
func TestRefusalLimiterBounds(t *testing.T) {
	var l refusalLimiter
	now := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	written, counted := 0, 0
	try := func(who, key string) bool {
		ok, own, others := l.allow(now, who, who+"/"+key)
		if ok {
			written++
			counted += own + others
		}
		return ok
	}
	// Many reviewers, a few each: the global cap binds, per reviewer.
	reviewers := 2 * MaxRefusalEventsPerMinute / MaxRefusalEventsPerReviewerPerMinute
	total := 0
	for r := range reviewers {
		for k := range MaxRefusalEventsPerReviewerPerMinute + 2 {
			try(fmt.Sprint("r", r), fmt.Sprint(k))
			total++
		}
	}
	if written != MaxRefusalEventsPerMinute {
		t.Fatalf("%d reviewers wrote %d events in a minute, want the cap %d", reviewers, written, MaxRefusalEventsPerMinute)
	}
	// The next minute, a reviewer held back entirely by the cap gets in,
	// with their own count only.
	now = now.Add(time.Minute)
	last := fmt.Sprint("r", reviewers-1)
	ok, own, others := l.allow(now, last, last+"/next")
	total++
	if !ok || own != MaxRefusalEventsPerReviewerPerMinute+2 || others != 0 {
		t.Fatalf("%s next minute: ok %v own %d others %d, want %d of their own", last, ok, own, others, MaxRefusalEventsPerReviewerPerMinute+2)
	}
	written++
	counted += own
	for r := range reviewers - 1 {
		who := fmt.Sprint("r", r)
		if try(who, "next") {
			total++
		}
	}
	if written+counted != total {
		t.Fatalf("%d refusals: %d written, %d counted", total, written, counted)
	}
	if len(l.pending) != 0 || l.others != 0 {
		t.Fatalf("counts left: %d pending, %d others", len(l.pending), l.others)
	}

	// More reviewers left out than pending keeps by name: the rest are
	// others', carried by the next event written, whoever's it is.
	now = now.Add(time.Minute)
	for i := range MaxRefusalEventsPerMinute {
		l.allow(now, "filler", fmt.Sprint("filler/", i)) // the per-reviewer cap: most are pending for filler
	}
	l.written = MaxRefusalEventsPerMinute // the global cap is reached
	for i := range maxRefusalPending + 10 {
		l.allow(now, fmt.Sprint("p", i), "k")
	}
	if len(l.pending) > maxRefusalPending {
		t.Fatalf("pending holds %d reviewers, bound %d", len(l.pending), maxRefusalPending)
	}
	if l.others != 11 { // filler took one place
		t.Fatalf("others = %d, want 11", l.others)
	}
	now = now.Add(time.Minute)
	ok, own, others = l.allow(now, "p0", "p0/again")
	if !ok || own != 1 || others != 11 {
		t.Fatalf("p0: ok %v own %d others %d, want 1 and 11", ok, own, others)
	}
	if ok, _, others := l.allow(now, "p1", "p1/again"); !ok || others != 0 {
		t.Fatalf("others carried twice: %d", others)
	}
}
