package auditsink_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// A writer of the data dir without the master key who strips every mac
// and sets each cursor to the trail's end passes as an upgrade (pamctl
// keeps no record they could not remove that cursors were authenticated);
// what it must not do is pass quietly: the sink reports it until the next
// start, on /readyz and in its status.
func TestStrippedCursorAuthenticatorsAreReported(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	tr.add(t, 10, "x")
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	name := sinks[0].ID()
	m := tr.startKeyed(t, sinks, auditsink.AnchorConfig{})
	waitFor(t, "10 delivered", func() bool { return m.Status()[0].Cursor.Seq == 10 })
	m.Close()
	tr.add(t, 5, "evil")
	st, _ := tr.log.Head(context.Background())
	tr.saveCursor(t, name, auditsink.Cursor{Seq: st.Last.Seq}) // mac stripped
	m = tr.startKeyed(t, sinks, auditsink.AnchorConfig{})
	waitFor(t, "the stripped cursor noted", func() bool { return m.Status()[0].CursorNote != "" })
	if err := m.Status()[0].Problem(time.Now(), time.Hour); err == nil || !strings.Contains(err.Error(), "stripped the authenticators") {
		t.Fatalf("readiness: %v", err)
	}
}

// An upgrade on etcd (Leader set, not leading at first): each shipper
// reloads on its own when the election is won, and the first one to
// re-seal its legacy cursor must not make the others' legacy cursors
// "missing while others have one" (review).
func TestLegacyUpgradeUnderALeaderRejectsNoCursor(t *testing.T) {
	tr := newTrail(t, 1000)
	c1, c2 := newCollector(t), newCollector(t)
	tr.add(t, 10, "x")
	sinks := []auditsink.SinkConfig{{Type: "http", URL: c1.url()}, {Type: "http", URL: c2.url()}}
	for _, s := range sinks {
		tr.saveCursor(t, s.ID(), auditsink.Cursor{Seq: 10})
	}
	var leads atomic.Bool
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db, Sinks: sinks, CursorKey: cursorKey,
		Leader: leads.Load, Poll: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, "standby", func() bool { return m.Status()[0].Standby && m.Status()[1].Standby })
	leads.Store(true) // the election is won
	time.Sleep(500 * time.Millisecond)
	for _, s := range m.Status() {
		t.Logf("%s: cursor=%d err=%q note=%q", s.Name, s.Cursor.Seq, s.CursorError, s.CursorNote)
		if s.CursorError != "" {
			t.Errorf("sink %s: legacy cursor rejected during the upgrade: %s", s.Name, s.CursorError)
		}
	}
	if a, b := c1.got.count(), c2.got.count(); a != 0 || b != 0 {
		t.Errorf("collectors got %d and %d events again, want none", a, b)
	}
}

// A replica that comes to lead reads the trail's status, then the shared
// cursor; the old leader's step still in flight may save a cursor between
// the two reads, covering events appended after the first: it is not past
// the end, and must not be rejected (review).
type racingCursors struct {
	auditsink.CursorStore
	tr    *trail
	t     *testing.T
	armed atomic.Bool
	name  string
	leads *atomic.Bool
}

func (r *racingCursors) SinkCursors(ctx context.Context) (map[string]auditsink.Cursor, error) {
	if r.leads.Load() && r.armed.CompareAndSwap(true, false) {
		r.tr.add(r.t, 3, "late")
		st, _ := r.tr.log.Head(ctx)
		r.CursorStore.SaveSinkCursor(ctx, r.name, auditsink.SealCursor(cursorKey, r.name, auditsink.Cursor{Seq: st.Last.Seq, Updated: time.Now()}))
	}
	return r.CursorStore.SinkCursors(ctx)
}

func TestNewLeaderReadsTheTrailAfterTheCursor(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	tr.add(t, 10, "x")
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	name := sinks[0].ID()
	tr.saveCursor(t, name, auditsink.SealCursor(cursorKey, name, auditsink.Cursor{Seq: 10}))
	var leads atomic.Bool
	rc := &racingCursors{CursorStore: tr.db, tr: tr, t: t, name: name, leads: &leads}
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: rc, Sinks: sinks, CursorKey: cursorKey,
		Leader: leads.Load, Poll: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, "standby", func() bool { return m.Status()[0].Standby })
	// The old leader's last step is still in flight; this replica wins
	// the election: its step reads the trail, then (reload) the cursor the
	// old leader saved in between.
	rc.armed.Store(true)
	leads.Store(true)
	time.Sleep(500 * time.Millisecond)
	s := m.Status()[0]
	t.Logf("status: cursor=%d err=%q got=%d", s.Cursor.Seq, s.CursorError, coll.got.count())
	if s.CursorError != "" {
		t.Errorf("a legitimately saved cursor was rejected: %s", s.CursorError)
	}
}

// A replica that comes to lead again checks the stored cursor again; when
// it is the one already rejected (the sink was down, so no delivery saved
// a new one), the trail is not told again: the election of a replica whose
// lease flaps would otherwise add an audit.cursor event per sink each time.
func TestRejectedCursorIsReportedOncePerReplica(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	tr.add(t, 10, "x")
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	name := sinks[0].ID()
	tr.saveCursor(t, name, auditsink.SealCursor(cursorKey, name, auditsink.Cursor{Seq: 99}))
	var leads atomic.Bool
	var told atomic.Int32
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db, Sinks: sinks, CursorKey: cursorKey,
		Leader: leads.Load, OnCursor: func(string, auditsink.CursorCheck) { told.Add(1) },
		Poll: 20 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for range 4 {
		leads.Store(true)
		waitFor(t, "the cursor rejected", func() bool { return !m.Status()[0].Standby && m.Status()[0].CursorError != "" })
		leads.Store(false)
		waitFor(t, "standby", func() bool { return m.Status()[0].Standby })
	}
	if n := told.Load(); n != 1 {
		t.Fatalf("OnCursor was told %d times of the same rejected cursor, want once", n)
	}
	// Another forged cursor is news.
	tr.saveCursor(t, name, auditsink.SealCursor(cursorKey, name, auditsink.Cursor{Seq: 98}))
	leads.Store(true)
	waitFor(t, "the second cursor rejected", func() bool { return told.Load() == 2 })
}
