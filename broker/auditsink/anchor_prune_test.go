package auditsink_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// Whoever holds the master key can sign a retention anchor. One that says
// anchored history was pruned must say it as pamctl prunes: events older
// than an hour at the time of the prune, a time past, after the heads it
// covers were signed. Otherwise the events were deleted (red team: a
// forged Prune(now) emptied the trail and verify --anchors said intact).
func TestAnchorsRefuseAPruneThatIsADeletion(t *testing.T) {
	now := time.Now()
	heads := []audit.SignedHead{
		{Seq: 5, Hash: strings.Repeat("5", 64), Time: now.Add(-100 * 24 * time.Hour)},
		{Seq: 10, Hash: strings.Repeat("a", 64), Time: now.Add(-99 * 24 * time.Hour)},
	}
	retained := func(fn func(uint64, string) bool) error { fn(13, strings.Repeat("d", 64)); return nil }
	for _, c := range []struct {
		name         string
		before, time time.Time
		lateHead     bool
		recentHeads  bool // the heads signed 30 and 10 minutes ago
		want         string
	}{
		{"retention of 90 days", now.Add(-90*24*time.Hour - time.Minute), now.Add(-time.Minute), false, false, ""},
		{"retention of exactly an hour", now.Add(-time.Hour - time.Minute), now.Add(-time.Minute), false, false, ""},
		{"everything before now", now, now, false, false, "shorter than the 1h0m0s pamctl allows"},
		{"59 minutes", now.Add(-59 * time.Minute), now, false, false, "shorter than"},
		{"dated in the future", now.Add(time.Hour), now.Add(2 * time.Hour), false, false, "in the future"},
		{"pruned before a head it covers was signed", now.Add(-3 * time.Hour), now.Add(-2 * time.Hour), true, false, "deleted, not pruned"},
		// A forged anchor dated now with a one-hour cutoff: the heads of
		// the last half hour were signed before events the anchor says are
		// older than an hour (review).
		{"an hour's cutoff over heads of the last half hour", now.Add(-time.Hour), now, false, true, "with later events still to come"},
	} {
		hs := append([]audit.SignedHead(nil), heads...)
		if c.lateHead {
			hs[1].Time = now.Add(-time.Hour)
		}
		if c.recentHeads {
			hs[0].Time, hs[1].Time = now.Add(-30*time.Minute), now.Add(-10*time.Minute)
		}
		st := audit.Status{Last: audit.Link{Seq: 13}, Anchor: &audit.Anchor{Seq: 12, Hash: strings.Repeat("c", 64), Before: c.before, Time: c.time}}
		rep, err := auditsink.CheckAnchors(hs, st, retained)
		if c.want == "" {
			if err != nil || rep.Pruned != 2 {
				t.Errorf("%s: %+v, %v", c.name, rep, err)
			}
			continue
		}
		var be *audit.BreakError
		if !errors.As(err, &be) || be.Kind != auditsink.BreakOffHost || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a break saying %q", c.name, err, c.want)
		}
	}
}
