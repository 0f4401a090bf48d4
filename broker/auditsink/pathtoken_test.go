package auditsink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit/logtest"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// Some collectors put the ingestion token in the URL's path (Sumo Logic's
// HTTP source /receiver/v1/http/<token>, Loggly's /inputs/<token>/...).
// An unnamed sink is named after its destination, and that name is the
// metric label, the log field, the `pamctl audit sinks` row and the
// /readyz line (on the proxy port, which agents reach) when the sink is
// degraded: the token-like segments of the path are shown as "…", so the
// token appears in none of them, nor in delivery errors. Short words stay
// (/services/collector/event).
func TestPathTokenNeverShown(t *testing.T) {
	const token = "ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR"
	const uuid = "b8d9c6f8-2f4a-4d6f-9c2e-0123456789ab"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tr := newTrail(t, 1000)
	var logs logtest.Buffer
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db,
		Sinks: []auditsink.SinkConfig{
			{Type: "http", URL: srv.URL + "/receiver/v1/http/" + token},
			{Type: "http", URL: srv.URL + "/inputs/" + uuid + "/tag/http/"},
		},
		Anchor: auditsink.AnchorConfig{URL: srv.URL + "/anchor/" + token},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Poll:   50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tr.add(t, 1, "x")
	waitFor(t, "every sink failing", func() bool {
		for _, s := range m.Status() {
			if s.LastError == "" {
				return false
			}
		}
		return true
	})
	m.Close()
	var shown []string
	for _, s := range m.Status() {
		shown = append(shown, s.Name, s.Destination, s.LastError)
	}
	shown = append(shown, logs.String())
	for _, c := range []auditsink.SinkConfig{{Type: "http", URL: srv.URL + "/receiver/v1/http/" + token}} {
		shown = append(shown, c.ID(), c.Destination())
	}
	shown = append(shown, auditsink.AnchorConfig{URL: srv.URL + "/anchor/" + token}.Name())
	for _, s := range shown {
		if strings.Contains(s, token) || strings.Contains(s, uuid) || strings.Contains(s, "0123456789ab") {
			t.Errorf("a path token is shown: %.400s", s)
		}
	}
	for _, c := range []struct{ url, want string }{
		{"https://splunk:8088/services/collector/event", "http:https://splunk:8088/services/collector/event"},
		{"https://c/receiver/v1/http/" + token, "http:https://c/receiver/v1/http/…#93021cf5"},
	} {
		if got := (auditsink.SinkConfig{Type: "http", URL: c.url}).ID(); got != c.want {
			t.Errorf("ID of %s = %s, want %s", c.url, got, c.want)
		}
	}
}

// A sink whose name changes because its path token is no longer shown
// keeps its place: the cursor stored under the old name (authenticated
// under it) is taken, so the collector does not receive the trail again.
func TestPathTokenSinkKeepsItsCursor(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	url := "http://" + coll.addr + "/receiver/v1/http/ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR"
	tr.add(t, 5, "x")
	legacy := "http:" + url // the name before: the URL without user info, query and fragment
	tr.saveCursor(t, legacy, auditsink.SealCursor(cursorKey, legacy, auditsink.Cursor{Seq: 5, Updated: time.Now()}))
	var reports cursorReports
	sink := auditsink.SinkConfig{Type: "http", URL: url}
	m := tr.startKeyed(t, []auditsink.SinkConfig{sink}, auditsink.AnchorConfig{}, reports.option(sink.ID()))
	tr.add(t, 2, "y")
	waitFor(t, "7 acknowledged", func() bool { return m.Status()[0].Cursor.Seq == 7 })
	coll.got.mu.Lock()
	seqs := append([]uint64(nil), coll.got.seqs...)
	coll.got.mu.Unlock()
	if len(seqs) == 0 || seqs[0] != 6 {
		t.Errorf("the collector got %v: want the events after the stored cursor (6, 7)", seqs)
	}
	for _, c := range reports.take() {
		if c.Rejected {
			t.Errorf("the cursor was rejected: %s", c.Problem)
		}
	}
	// The old name, which holds the token, is gone from the store once the
	// cursor is stored under the new one.
	cs, err := tr.db.SinkCursors(context.Background())
	if _, ok := cs[legacy]; err != nil || ok || cs[sink.ID()].Seq != 7 || strings.Contains(fmt.Sprint(cs), "ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR") {
		t.Errorf("stored cursors after a delivery: %v %+v", err, cs)
	}
	// A forged cursor under the old name is still rejected.
	tr2 := newTrail(t, 1000)
	tr2.add(t, 5, "x")
	tr2.saveCursor(t, legacy, auditsink.Cursor{Seq: 5, Updated: time.Now(), MAC: strings.Repeat("0", 64)})
	var r2 cursorReports
	tr2.startKeyed(t, []auditsink.SinkConfig{sink}, auditsink.AnchorConfig{}, r2.option(sink.ID()))
	waitFor(t, "the forged cursor rejected", func() bool {
		for _, c := range r2.take() {
			if c.Rejected {
				return true
			}
		}
		return false
	})
}
