package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// A sink whose stored cursor was rejected, and the events it got as
// stand-ins, show on /metrics (the red team saw lag 0 and failing 0 for a
// sink blinded by a forged cursor).
func TestSinkCursorRejectedAndOversizeMetrics(t *testing.T) {
	m := New(Options{Sinks: func() []auditsink.Status {
		return []auditsink.Status{
			{Name: "siem", Type: "http", Lag: 40, CursorError: "stored cursor … is past the end of the trail", Oversize: 2, RecentStandIns: 12},
			{Name: "ok", Type: "syslog"},
		}
	}})
	want := `
# HELP pamctl_audit_sink_cursor_rejected 1 when the sink's stored cursor was not trusted at start (past the end of the trail, or a missing or wrong authenticator) and delivery restarted at the first retained event.
# TYPE pamctl_audit_sink_cursor_rejected gauge
pamctl_audit_sink_cursor_rejected{sink="ok",type="syslog"} 0
pamctl_audit_sink_cursor_rejected{sink="siem",type="http"} 1
# HELP pamctl_audit_sink_oversize_events_total Events sent to the sink as an audit.oversize stand-in because they were too large for it, or the collector refused them alone.
# TYPE pamctl_audit_sink_oversize_events_total counter
pamctl_audit_sink_oversize_events_total{sink="ok",type="syslog"} 0
pamctl_audit_sink_oversize_events_total{sink="siem",type="http"} 2
# HELP pamctl_audit_sink_recent_stand_ins Stand-ins among the last 20 events sent to the sink; 10 or more makes the sink degraded in /readyz: the SIEM gets little event content.
# TYPE pamctl_audit_sink_recent_stand_ins gauge
pamctl_audit_sink_recent_stand_ins{sink="ok",type="syslog"} 0
pamctl_audit_sink_recent_stand_ins{sink="siem",type="http"} 12
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "pamctl_audit_sink_cursor_rejected", "pamctl_audit_sink_oversize_events_total", "pamctl_audit_sink_recent_stand_ins"); err != nil {
		t.Fatal(err)
	}
}
