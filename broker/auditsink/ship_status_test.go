package auditsink

import (
	"strings"
	"testing"
	"time"
)

// Stalled flags a sink with events waiting and no delivery within the
// budget, counted from its start when it never delivered; a sink that keeps
// up, or is behind but delivering, is not stalled.
func TestStatusStalled(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	budget := 5 * time.Minute
	for _, c := range []struct {
		name    string
		st      Status
		now     time.Time
		stalled bool
	}{
		{"caught up, idle for hours", Status{Name: "s", Lag: 0, Since: t0, LastDeliveryAt: t0}, t0.Add(3 * time.Hour), false},
		{"behind, delivered recently", Status{Name: "s", Lag: 900, Since: t0, LastDeliveryAt: t0.Add(2 * time.Hour)}, t0.Add(2*time.Hour + time.Minute), false},
		{"behind, nothing delivered past the budget", Status{Name: "s", Lag: 3, Since: t0, LastDeliveryAt: t0.Add(time.Minute), LastError: "dial tcp: connection refused"}, t0.Add(time.Hour), true},
		{"never delivered, started recently", Status{Name: "s", Lag: 50, Since: t0}, t0.Add(time.Minute), false},
		{"never delivered, past the budget", Status{Name: "s", Lag: 50, Since: t0}, t0.Add(6 * time.Minute), true},
		{"a delivery before this start does not count", Status{Name: "s", Lag: 5, Since: t0, LastDeliveryAt: t0.Add(-time.Hour)}, t0.Add(time.Minute), false},
	} {
		err := c.st.Stalled(c.now, budget)
		if (err != nil) != c.stalled {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "behind") || (c.st.LastError != "" && !strings.Contains(err.Error(), c.st.LastError))) {
			t.Errorf("%s: message %q", c.name, err)
		}
	}
}
