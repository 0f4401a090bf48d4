package auditsink_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// A holder of the master key deletes the last half hour (every event
// after the anchored heads of the last 30 minutes) and signs a retention
// anchor dated now that claims "older than now-1h": every rule of
// implausiblePrune holds, and verify --anchors reports the heads as pruned.
// A head at seq s < anchor.Seq was signed when the trail ended at s, so
// event s+1 <= anchor.Seq came after it and cannot be older than Before.
func TestAnchorsRefuseAPruneOfRecentHeads(t *testing.T) {
	now := time.Now()
	heads := []audit.SignedHead{
		{Seq: 100, Hash: strings.Repeat("a", 64), Time: now.Add(-30 * time.Minute)},
		{Seq: 200, Hash: strings.Repeat("b", 64), Time: now.Add(-10 * time.Minute)},
		{Seq: 300, Hash: strings.Repeat("c", 64), Time: now.Add(-1 * time.Minute)},
	}
	// forged: cut at the last anchored head (its hash is public), one event kept after it
	st := audit.Status{Last: audit.Link{Seq: 301},
		Anchor: &audit.Anchor{Seq: 300, Hash: strings.Repeat("c", 64), Before: now.Add(-time.Hour), Time: now}}
	retained := func(fn func(uint64, string) bool) error { fn(301, strings.Repeat("d", 64)); return nil }
	rep, err := auditsink.CheckAnchors(heads, st, retained)
	if err == nil || !strings.Contains(err.Error(), "with later events still to come") {
		t.Errorf("the last half hour was deleted and verify --anchors says %d matched, %d pruned", rep.Matched, rep.Pruned)
	}
}
