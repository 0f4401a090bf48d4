package auditsink_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// Replicas on etcd share the trail and the cursors: only the one that
// leads delivers, so a sink gets each event once, not once per replica; a
// replica that comes to lead resumes from the cursor the other one left,
// and one that stands by reports the shared cursor and is not "stalled".
func TestOnlyTheLeadingReplicaDelivers(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	var aLeads, bLeads atomic.Bool
	aLeads.Store(true)
	replica := func(leads *atomic.Bool) *auditsink.Manager {
		m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db, Sinks: sinks,
			Leader: leads.Load, Poll: 20 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := replica(&aLeads), replica(&bLeads)

	tr.add(t, 10, "x")
	waitFor(t, "10 events from the leader", func() bool { return a.Status()[0].Cursor.Seq == 10 })
	waitFor(t, "the standby shows the shared cursor", func() bool { st := b.Status()[0]; return st.Standby && st.Cursor.Seq == 10 })
	if st := b.Status()[0]; st.Stalled(time.Now().Add(time.Hour), time.Minute) != nil || st.Lag != 0 {
		t.Fatalf("standby status %+v", st)
	}

	// Failover: b leads, a stands by; b resumes at 10.
	aLeads.Store(false)
	time.Sleep(100 * time.Millisecond) // a's step in flight ends
	bLeads.Store(true)
	tr.add(t, 5, "y")
	waitFor(t, "15 events from the new leader", func() bool { return b.Status()[0].Cursor.Seq == 15 })
	time.Sleep(150 * time.Millisecond)
	if st := a.Status()[0]; !st.Standby || st.Cursor.Seq != 15 {
		t.Fatalf("the old leader's status %+v", st)
	}
	coll.got.mu.Lock()
	if len(coll.got.seqs) != 15 {
		t.Fatalf("the collector got %d events, want 15 (once each): %v", len(coll.got.seqs), coll.got.seqs)
	}
	for i, s := range coll.got.seqs {
		if s != uint64(i+1) {
			t.Fatalf("gap, duplicate or reorder: %v", coll.got.seqs)
		}
	}
	coll.got.mu.Unlock()

	// A cursor written while a replica stood by is checked when it comes
	// to lead, as one read at start is: a forged one is not followed.
	bLeads.Store(false)
	time.Sleep(100 * time.Millisecond)
	if err := tr.db.SaveSinkCursor(context.Background(), sinks[0].ID(), auditsink.Cursor{Seq: 1 << 40, HeadSeq: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	aLeads.Store(true)
	waitFor(t, "the forged cursor refused by the new leader", func() bool { return a.Status()[0].CursorError != "" })
	waitFor(t, "delivery restarted from the first event", func() bool { return a.Status()[0].Cursor.Seq == 15 && coll.got.count() == 30 })
}
