package main

import (
	"strings"
	"testing"
	"time"
)

// The per-round figures pair each round of a target with the same round
// of bare: a drift that moves both alike cancels out, and the range says
// how far one round's difference strays.
func TestRoundFiguresArePaired(t *testing.T) {
	ms := func(v ...float64) *samples {
		s := &samples{n: len(v), elapsed: time.Second}
		for _, x := range v {
			d := time.Duration(x * float64(time.Millisecond))
			s.total, s.ttfb = append(s.total, d), append(s.ttfb, d/2)
		}
		return s
	}
	// The machine slows down round by round; pamctl stays 1 ms behind
	// bare in every round but one, where it is 3 ms behind.
	bare := &cell{rounds: []*samples{ms(10, 10, 10), ms(20, 20, 20), ms(30, 30, 30)}}
	c := &cell{rounds: []*samples{ms(11, 11, 11), ms(23, 23, 23), ms(31, 31, 31)}}
	got := roundDeltas(c, bare, totalOf)
	if !strings.Contains(got, "median +1.00 ms") || !strings.Contains(got, "+1.00 ms to +3.00 ms over 3 rounds") {
		t.Fatalf("roundDeltas: %q", got)
	}
	if got := roundDeltas(c, bare, ttfbOf); !strings.Contains(got, "median +0.50 ms") {
		t.Fatalf("roundDeltas of ttfb: %q", got)
	}
	c.rounds[1].elapsed = 2 * time.Second // half the rate in round 2
	if got := roundRatios(c, bare); !strings.Contains(got, "median 100%, 50% to 100% over 3 rounds") {
		t.Fatalf("roundRatios: %q", got)
	}
	if got := roundDeltas(&cell{rounds: c.rounds[:1]}, bare, totalOf); got != "" {
		t.Fatalf("one round: %q", got)
	}
}
