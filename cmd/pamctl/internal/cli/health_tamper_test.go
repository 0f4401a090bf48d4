package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
)

// okLog is an audit log whose appends succeed.
type okLog struct{ auditLog }

func (okLog) Append(context.Context, *audit.Event) error { return nil }

// A tampered trail keeps the audit check failing: before, an append that
// succeeded cleared it and the next head-signing attempt set it again,
// so /readyz flapped. Other failures still clear with the next append.
func TestAuditReadinessStaysFailingOnATamperedTrail(t *testing.T) {
	for _, tc := range []struct {
		err       error
		stillFail bool
	}{
		{fmt.Errorf("etcdstore: audit: refusing to sign a new head: %w: event seq 6", store.ErrUnauthenticated), true},
		{fmt.Errorf("refusing: %w", store.ErrBelowHighWater), true},
		{errors.New("etcdstore: audit: store head: context deadline exceeded"), false},
	} {
		a := &App{health: newHealth(slog.New(slog.DiscardHandler))}
		a.health.registerAll(t.TempDir())
		w := newWatchedAudit(okLog{}, a.health)
		a.auditFailed(tc.err)
		if ready, _ := a.health.Report(); ready {
			t.Fatalf("%v: ready", tc.err)
		}
		if err := w.Append(context.Background(), &audit.Event{Type: audit.TypeAuditRead}); err != nil {
			t.Fatal(err)
		}
		ready, lines := a.health.Report()
		if ready == tc.stillFail {
			t.Fatalf("%v: after an append that succeeded ready = %v, want %v (%q)", tc.err, ready, !tc.stillFail, lines)
		}
		if tc.stillFail && (len(lines) != 1 || !strings.Contains(lines[0], "until pamctl restarts")) {
			t.Fatalf("%v: /readyz says %q", tc.err, lines)
		}
	}
}

// A failure after the sticky one does not hide it: the reminders still
// name the tampering, with the latest error beside it.
func TestStickyFailureKeepsItsError(t *testing.T) {
	var buf strings.Builder
	h := newHealth(slog.New(slog.NewTextHandler(&buf, nil)))
	clock := time.Unix(1_000_000, 0)
	h.now = func() time.Time { return clock }
	tampered := fmt.Errorf("refusing: %w: event seq 6", store.ErrUnauthenticated)
	h.FailSticky(checkAudit, tampered, tamperedTrailHint)
	h.Fail(checkAudit, errors.New("etcd: request timed out"))
	clock = clock.Add(remindEvery)
	buf.Reset()
	h.Fail(checkAudit, errors.New("etcd: request timed out"))
	out := buf.String()
	if !strings.Contains(out, "still failing") || !strings.Contains(out, "event seq 6") || !strings.Contains(out, "latest=") {
		t.Fatalf("reminder after a later failure: %q, want the tampering error and the latest one", out)
	}
}
