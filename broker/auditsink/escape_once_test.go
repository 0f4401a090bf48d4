package auditsink_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit/logtest"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/safetext"
)

// A collector's answer is data in the status (`audit sinks -o json` and
// the API give it exactly, a U+202E as itself), bounded, and escaped once
// where a person reads it: the server log (text and JSON) shows \u202e,
// never \\u202e (an escape escaped again, which reads as the six
// characters a collector typed), and nor does a view that escapes the
// status (Escape, as the CLI's table does).
func TestCollectorAnswerIsRawInTheStatusAndEscapedOnceWhereRead(t *testing.T) {
	const answer = "field \u202eevil\u202c refused\x1b[2J"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			tr := newTrail(t, 1000)
			coll := newCollector(t)
			coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(answer + strings.Repeat("z", 4<<10)))
			})
			var logged logtest.Buffer
			var h slog.Handler = slog.NewTextHandler(&logged, nil)
			if format == "json" {
				h = slog.NewJSONHandler(safetext.JSONWriter(&logged), nil)
			}
			m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db, Logger: slog.New(h),
				Sinks: []auditsink.SinkConfig{{Type: "http", URL: coll.url(), Timeout: 5 * time.Second}},
				Poll:  50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			tr.add(t, 1, "x")
			waitFor(t, "the 400 in the status", func() bool { return strings.Contains(m.Status()[0].LastError, "400") })
			s := m.Status()[0]
			if !strings.Contains(s.LastError, answer) || len(s.LastError) > 1100 {
				t.Errorf("the status does not hold the collector's answer as it is, bounded (%d bytes): %q", len(s.LastError), s.LastError)
			}
			b, _ := json.Marshal(s)
			var back auditsink.Status
			if err := json.Unmarshal(b, &back); err != nil || back.LastError != s.LastError {
				t.Errorf("the status as JSON does not give the answer exactly: %v %q", err, back.LastError)
			}
			if shown := safetext.Escape(s.LastError); !strings.Contains(shown, `field \u202eevil\u202c refused\x1b[2J`) || strings.Contains(shown, `\\u202e`) {
				t.Errorf("the status escaped once for a person: %s", shown)
			}
			waitFor(t, "the failure in the log", func() bool { return strings.Contains(logged.String(), "delivery failed") })
			log := logged.String()
			if !strings.Contains(log, `\u202eevil\u202c`) || strings.Contains(log, `\\u202e`) || strings.ContainsAny(log, "\u202e\x1b") {
				t.Errorf("the log does not show the answer's U+202E escaped once:\n%s", log)
			}
		})
	}
}

// A stored cursor's name, as store errors show it (ShownName), is bounded
// and raw: those errors are escaped where they are printed.
func TestShownNameIsRawAndBounded(t *testing.T) {
	if got := auditsink.ShownName("file:/var/log/a\u202eb.jsonl"); got != "file:/var/log/a\u202eb.jsonl" {
		t.Errorf("ShownName escaped the name: %q", got)
	}
	if got := auditsink.ShownName(strings.Repeat("n", 1000)); len(got) > 320 {
		t.Errorf("ShownName is not bounded: %d bytes", len(got))
	}
}
