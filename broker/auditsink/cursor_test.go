package auditsink_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

var cursorKey = []byte("0123456789abcdef0123456789abcdef")

func (tr *trail) startKeyed(t *testing.T, sinks []auditsink.SinkConfig, anchor auditsink.AnchorConfig, opts ...func(*auditsink.Options)) *auditsink.Manager {
	t.Helper()
	o := auditsink.Options{Source: tr.log, Cursors: tr.db, Sinks: sinks, Anchor: anchor, CursorKey: cursorKey,
		Poll: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	m, err := auditsink.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// cursorReports keeps what OnCursor is told about one sink.
type cursorReports struct {
	mu  sync.Mutex
	got []auditsink.CursorCheck
}

func (r *cursorReports) option(sink string) func(*auditsink.Options) {
	return func(o *auditsink.Options) {
		o.OnCursor = func(name string, c auditsink.CursorCheck) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if name == sink {
				r.got = append(r.got, c)
			}
		}
	}
}

// take returns what was told since the last take.
func (r *cursorReports) take() []auditsink.CursorCheck {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (tr *trail) saveCursor(t *testing.T, name string, c auditsink.Cursor) {
	t.Helper()
	if err := tr.db.SaveSinkCursor(context.Background(), name, c); err != nil {
		t.Fatal(err)
	}
}

// A cursor is only ever trusted inside the trail and, with a key, with
// its authenticator: whatever else a writer of the data dir stores makes
// the sink deliver again from the first retained event (duplicates, never
// a gap), and says so in its status until the next start.
func TestUntrustedCursorRestartsDeliveryVisibly(t *testing.T) {
	for _, c := range []struct {
		name string
		// cursor to store for the sink, given its name and the trail's end
		cursor func(name string, last uint64) auditsink.Cursor
		// others: a valid authenticated cursor of another sink is stored
		others bool
		want   string
	}{
		{"past the end (the red team's 1<<40)", func(string, uint64) auditsink.Cursor {
			return auditsink.Cursor{Seq: 1 << 40, HeadSeq: 1 << 40}
		}, false, "past the end of the trail"},
		{"past the end, authenticated", func(n string, _ uint64) auditsink.Cursor {
			return auditsink.SealCursor(cursorKey, n, auditsink.Cursor{Seq: 1 << 40, HeadSeq: 1 << 40})
		}, false, "past the end of the trail"},
		{"head past the last head", func(n string, last uint64) auditsink.Cursor {
			return auditsink.SealCursor(cursorKey, n, auditsink.Cursor{Seq: last, HeadSeq: last + 1})
		}, false, "past the end of the trail"},
		{"within the trail, wrong authenticator", func(n string, last uint64) auditsink.Cursor {
			c := auditsink.SealCursor([]byte("another deployment's key......."), n, auditsink.Cursor{Seq: last})
			return c
		}, false, "wrong authenticator"},
		{"another sink's authenticated cursor copied", func(_ string, last uint64) auditsink.Cursor {
			return auditsink.SealCursor(cursorKey, "other", auditsink.Cursor{Seq: last})
		}, false, "wrong authenticator"},
		{"within the trail, authenticator stripped while others have one", func(_ string, last uint64) auditsink.Cursor {
			return auditsink.Cursor{Seq: last}
		}, true, "no authenticator"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newTrail(t, 5)
			coll := newCollector(t)
			tr.add(t, 10, "x")
			sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
			name := sinks[0].ID()
			tr.saveCursor(t, name, c.cursor(name, 10))
			if c.others {
				tr.saveCursor(t, "other", auditsink.SealCursor(cursorKey, "other", auditsink.Cursor{Seq: 3}))
			}
			var told cursorReports // what serve is told to record
			m := tr.startKeyed(t, sinks, auditsink.AnchorConfig{}, told.option(name))
			waitFor(t, "all 10 events delivered again", func() bool { return coll.got.count() >= 10 })
			if got := told.take(); len(got) != 1 || !got[0].Rejected || got[0].Legacy || !strings.Contains(got[0].Problem, c.want) {
				t.Errorf("OnCursor was told %+v, want once that %s was rejected: %s", got, name, c.want)
			}
			coll.got.exactlyInOrder(t, "http", 10)
			st := m.Status()[0]
			if !strings.Contains(st.CursorError, c.want) || !strings.Contains(st.CursorError, "first retained event") {
				t.Errorf("status cursor error %q, want it to say %q and what happens", st.CursorError, c.want)
			}
			if err := st.Problem(time.Now(), time.Hour); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("readiness problem: %v", err)
			}
			waitFor(t, "lag 0 and an authenticated cursor", func() bool {
				st := m.Status()[0]
				return st.Lag == 0 && st.Cursor.Seq == 10 && st.Cursor.MAC != ""
			})
			stored, _ := tr.db.SinkCursors(context.Background())
			if got := stored[name]; got.Seq != 10 || got != auditsink.SealCursor(cursorKey, name, got) {
				t.Errorf("stored cursor after the redelivery: %+v", got)
			}
		})
	}
}

// An anchor whose cursor is forged past the end still anchors the next
// head, and says why it was not trusted.
func TestForgedAnchorCursorStillAnchors(t *testing.T) {
	tr := newTrail(t, 1000)
	dir := t.TempDir()
	anchor := auditsink.AnchorConfig{File: dir + "/heads.jsonl"}
	tr.add(t, 3, "x")
	h, err := tr.log.SignHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tr.saveCursor(t, anchor.Name(), auditsink.Cursor{Seq: 1 << 40, HeadSeq: 1 << 40})
	m := tr.startKeyed(t, nil, anchor)
	waitFor(t, "the head anchored", func() bool { return m.Status()[0].Cursor.HeadSeq == h.Seq })
	if st := m.Status()[0]; !strings.Contains(st.CursorError, "past the end") {
		t.Fatalf("anchor status: %+v", st)
	}
}

// Upgrade: cursors written before cursors were authenticated (none stored
// has an authenticator) are followed when inside the trail, saved again
// authenticated, and the status says so; nothing is sent twice.
func TestLegacyCursorIsAdoptedOnce(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	tr.add(t, 10, "x")
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	name := sinks[0].ID()
	tr.saveCursor(t, name, auditsink.Cursor{Seq: 6})
	tr.saveCursor(t, "removed-sink", auditsink.Cursor{Seq: 2})
	var told cursorReports
	m := tr.startKeyed(t, sinks, auditsink.AnchorConfig{}, told.option(name))
	waitFor(t, "events 7..10", func() bool { return coll.got.count() >= 4 })
	time.Sleep(100 * time.Millisecond)
	coll.got.mu.Lock()
	seqs := append([]uint64(nil), coll.got.seqs...)
	coll.got.mu.Unlock()
	if len(seqs) != 4 || seqs[0] != 7 || seqs[3] != 10 {
		t.Fatalf("after an upgrade the sink got %v, want 7..10", seqs)
	}
	st := m.Status()[0]
	if st.CursorError != "" || !strings.Contains(st.CursorNote, "no authenticator") {
		t.Fatalf("status: %+v", st)
	}
	if got := told.take(); len(got) != 1 || !got[0].Legacy || got[0].Rejected || got[0].Problem != st.CursorNote {
		t.Fatalf("OnCursor was told %+v, want once the legacy cursor", got)
	}
	// Reported until the next start: pamctl cannot tell an upgrade from
	// authenticators stripped by a writer of the data dir.
	if err := st.Problem(time.Now(), time.Hour); err == nil || !strings.Contains(err.Error(), "expected only on the first start after upgrading") {
		t.Fatalf("an adopted unauthenticated cursor is not reported: %v", err)
	}
	m.Close()
	stored, _ := tr.db.SinkCursors(context.Background())
	if got := stored[name]; got.MAC == "" || got != auditsink.SealCursor(cursorKey, name, got) {
		t.Fatalf("cursor not saved authenticated: %+v", got)
	}
	// Adopted once: the next start follows the authenticated cursor
	// without a note.
	tr.add(t, 1, "y")
	m = tr.startKeyed(t, sinks, auditsink.AnchorConfig{}, told.option(name))
	waitFor(t, "event 11", func() bool { return coll.got.count() >= 5 })
	if st := m.Status()[0]; st.CursorNote != "" || st.CursorError != "" || st.Problem(time.Now(), time.Hour) != nil {
		t.Fatalf("second start: %+v", st)
	}
	if got := told.take(); len(got) != 0 {
		t.Fatalf("a trusted cursor was reported: %+v", got)
	}
}

// Once the deployment is past the upgrade (LegacyCursorsEnded), a writer
// of the data dir who strips every cursor's authenticator and moves them
// forward is not taken for an older pamctl: the cursors are rejected,
// delivery restarts at the first retained event, and nothing is skipped.
func TestStrippedCursorsAfterTheUpgradeAreRejected(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	tr.add(t, 10, "x")
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	name := sinks[0].ID()
	tr.saveCursor(t, name, auditsink.Cursor{Seq: 9}) // no authenticator: hides 1..9
	var told cursorReports
	m := tr.startKeyed(t, sinks, auditsink.AnchorConfig{}, told.option(name), func(o *auditsink.Options) { o.LegacyCursorsEnded = true })
	waitFor(t, "events 1..10", func() bool { return coll.got.count() >= 10 })
	coll.got.mu.Lock()
	first := coll.got.seqs[0]
	coll.got.mu.Unlock()
	if first != 1 {
		t.Fatalf("delivery began at %d, want 1: the stripped cursor was followed", first)
	}
	st := m.Status()[0]
	if st.CursorError == "" || !strings.Contains(st.CursorError, "no authenticator") {
		t.Fatalf("status: %+v", st)
	}
	if got := told.take(); len(got) != 1 || !got[0].Rejected || got[0].Legacy {
		t.Fatalf("OnCursor was told %+v, want once a rejected cursor", got)
	}
}

// A deleted cursor is a new sink: it starts at the first retained event
// (duplicates, no gap).
func TestDeletedCursorStartsAtTheFirstEvent(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	tr.add(t, 5, "x")
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	m := tr.startKeyed(t, sinks, auditsink.AnchorConfig{})
	waitFor(t, "5 events", func() bool { return m.Status()[0].Cursor.Seq == 5 })
	m.Close()
	// "Deleting" the cursor: a store that no longer has it.
	tr.add(t, 2, "y")
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: forgetful{tr.db}, Sinks: sinks, CursorKey: cursorKey,
		Poll: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, "7 events again", func() bool { return coll.got.count() >= 12 })
	coll.got.mu.Lock()
	defer coll.got.mu.Unlock()
	if s := coll.got.seqs[5:]; s[0] != 1 || s[6] != 7 {
		t.Fatalf("after the cursor was deleted: %v", coll.got.seqs)
	}
}

// forgetful reads no cursors, as a store whose cursors were deleted.
type forgetful struct{ auditsink.CursorStore }

func (forgetful) SinkCursors(context.Context) (map[string]auditsink.Cursor, error) {
	return map[string]auditsink.Cursor{}, nil
}

// Without a running shipper, Lag of a forged cursor reads 0; TrustCursor
// is what `pamctl audit sinks` on a stopped data dir checks first.
func TestTrustCursorUnits(t *testing.T) {
	tr := newTrail(t, 1000)
	tr.add(t, 4, "x")
	st, _ := tr.log.Head(context.Background())
	good := auditsink.SealCursor(cursorKey, "s", auditsink.Cursor{Seq: 4, Updated: time.Now()})
	if cur, c := auditsink.TrustCursor(cursorKey, "s", good, true, st, false); c.Rejected || c.Problem != "" || cur != good {
		t.Fatalf("a sound cursor: %+v %+v", cur, c)
	}
	moved := good
	moved.Updated = moved.Updated.Add(time.Second)
	if _, c := auditsink.TrustCursor(cursorKey, "s", moved, true, st, false); !c.Rejected {
		t.Fatal("a cursor whose time was edited kept its authenticator")
	}
	if cur, c := auditsink.TrustCursor(cursorKey, "s", auditsink.Cursor{}, false, st, false); c.Rejected || cur != (auditsink.Cursor{}) {
		t.Fatalf("no cursor: %+v %+v", cur, c)
	}
	// Legacy acceptance never reaches past the end.
	if cur, c := auditsink.TrustCursor(cursorKey, "s", auditsink.Cursor{Seq: 5}, true, st, true); !c.Rejected || cur.Seq != 0 {
		t.Fatalf("a legacy cursor past the end: %+v %+v", cur, c)
	}
	// Without a key only the bound applies.
	if _, c := auditsink.TrustCursor(nil, "s", auditsink.Cursor{Seq: 1 << 40}, true, st, false); !c.Rejected {
		t.Fatal("a keyless cursor past the end was trusted")
	}
}
