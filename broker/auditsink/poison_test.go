package auditsink_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// An agent that can put text in an event (a prompt) the collector refuses
// (HTTP 400 or 422: a parser, a field mapping or a validating gateway in
// front of it) cannot stall the sink on that event and keep everything it
// does next out of the SIEM: the batch is split down to the refused event,
// which is sent as its audit.oversize stand-in (bounded, pamctl's own
// text, naming the event and how to read it); the events around it are
// delivered in order.
func TestCollectorRefusingOneEventDoesNotStallTheSink(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusUnprocessableEntity} {
		tr := newTrail(t, 1000)
		coll := newCollector(t)
		var mu sync.Mutex
		var got received
		coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if bytes.Contains(body, []byte("POISON")) {
				http.Error(w, `{"error":"cannot parse event"}`, code)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			sc := bufio.NewScanner(bytes.NewReader(body))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				got.line(t, sc.Bytes())
			}
			w.WriteHeader(http.StatusNoContent)
		})
		tr.add(t, 10, "fine")
		tr.add(t, 1, "POISON")
		tr.add(t, 10, "fine")
		m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url(), BatchMax: 40}}, auditsink.AnchorConfig{})
		waitFor(t, "21 events acknowledged", func() bool { return m.Status()[0].Cursor.Seq == 21 })
		mu.Lock()
		want := uint64(1)
		for _, line := range got.raw {
			var si standIn
			if err := json.Unmarshal([]byte(line), &si); err != nil || si.Seq < want {
				continue
			}
			if si.Seq != want {
				t.Fatalf("%d: got seq %d, want %d", code, si.Seq, want)
			}
			want++
			if (si.Seq == 11) != (si.Type == auditsink.TypeOversize) {
				t.Errorf("%d: seq %d: %s", code, si.Seq, line)
			}
			if si.Seq == 11 && (!strings.Contains(si.Reason, "refused") || !strings.Contains(si.Reason, "pamctl audit show 11") || strings.Contains(line, "POISON")) {
				t.Errorf("%d: stand-in: %s", code, line)
			}
		}
		mu.Unlock()
		if want != 22 {
			t.Errorf("%d: received up to seq %d", code, want-1)
		}
		if st := m.Status()[0]; st.Oversize != 1 {
			t.Errorf("%d: status %+v", code, st)
		}
		m.Close()
	}
}

// A collector that refuses every body (a wrong format or index) is a
// configuration problem: an error, retried, not every event turned into a
// stand-in.
func TestCollectorRefusingEverythingIsAnError(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"text":"Incorrect index","code":7}`, http.StatusBadRequest)
	})
	tr.add(t, 5, "x")
	m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}, auditsink.AnchorConfig{})
	waitFor(t, "the error", func() bool { return strings.Contains(m.Status()[0].LastError, "400") })
	time.Sleep(200 * time.Millisecond)
	if st := m.Status()[0]; st.Cursor.Seq != 0 || st.Oversize != 0 {
		t.Fatalf("status: %+v", st)
	}
}

// A collector that takes pamctl's stand-ins but refuses what events hold
// (a field mapping every event breaks, say) would turn the whole trail
// into stand-ins, and an agent could make most of its own events ones the
// sink cannot take, while the sink looks healthy. Ten stand-ins among the
// last twenty events make the sink a Problem (readiness shows it
// degraded, the log has an error). An event taken whole now and then (an
// agent's padding call, the operator's own audit.read) does not clear it;
// twenty whole ones in a row do.
func TestStandInsAmongRecentEventsAreAProblem(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	coll.setHandler(refusePoison)
	tr.add(t, 9, "POISON")
	tr.add(t, 1, "fine")
	m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url(), BatchMax: 4}}, auditsink.AnchorConfig{})
	waitFor(t, "10 events acknowledged", func() bool { return m.Status()[0].Cursor.Seq == 10 })
	st := m.Status()[0]
	if st.RecentStandIns != 9 || st.Oversize != 9 {
		t.Fatalf("after 9 stand-ins and 1 whole: %+v", st)
	}
	if err := st.Problem(time.Now(), time.Hour); err != nil {
		t.Fatalf("9 of 10 is no problem yet: %v", err)
	}

	tr.add(t, 1, "POISON") // 9 bad, 1 good, 1 bad: a run of 1, but 10 of 11
	waitFor(t, "the alarm", func() bool { return m.Status()[0].RecentStandIns == auditsink.StandInAlarm })
	tr.add(t, 1, "fine") // the operator's audit.read
	waitFor(t, "12 acknowledged", func() bool { return m.Status()[0].Cursor.Seq == 12 })
	err := m.Status()[0].Problem(time.Now(), time.Hour)
	if err == nil || !strings.Contains(err.Error(), "10 of the last 20 events went as audit.oversize stand-ins") || !strings.Contains(err.Error(), "field mappings") {
		t.Fatalf("problem after one whole event: %v", err)
	}
	if b, _ := json.Marshal(m.Status()[0]); !bytes.Contains(b, []byte(`"recent_stand_ins":10`)) {
		t.Errorf("status JSON: %s", b)
	}

	tr.add(t, auditsink.StandInWindow, "fine")
	waitFor(t, "the window cleared", func() bool { return m.Status()[0].RecentStandIns == 0 })
	if err := m.Status()[0].Problem(time.Now(), time.Hour); err != nil {
		t.Fatalf("after twenty events taken whole: %v", err)
	}
}

// refusePoison is a collector that refuses (400) every body holding an
// event whose prompt is POISON, as a field mapping those events break
// would, and takes everything else (stand-ins too).
func refusePoison(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if bytes.Contains(body, []byte("POISON")) {
		http.Error(w, `{"error":"mapper_parsing_exception"}`, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
