package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/audit/logtest"
)

func testHealth() (*health, *logtest.Buffer, *time.Time) {
	buf := &logtest.Buffer{}
	h := newHealth(slog.New(slog.NewTextHandler(buf, nil)))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	h.registerAll("/var/lib/pamctl")
	return h, buf, &now
}

// A flood of failures is one log line saying what to do, a reminder every
// few minutes while it lasts, and one line when it ends.
func TestHealthLogsOncePerOutage(t *testing.T) {
	h, buf, now := testHealth()
	for i := 0; i < 1000; i++ {
		h.Fail(checkNotify, errors.New("notify: webhook answered 503"))
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d log lines for 1000 failures:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "check notify.webhook") || !strings.Contains(buf.String(), "level=WARN") {
		t.Fatalf("failure log does not say what to do: %s", buf.String())
	}
	*now = now.Add(remindEvery)
	h.Fail(checkNotify, errors.New("again"))
	h.Fail(checkNotify, errors.New("again"))
	if n := strings.Count(buf.String(), "still failing"); n != 1 || !strings.Contains(buf.String(), "failures=1001") {
		t.Fatalf("reminder: %s", buf.String())
	}
	for i := 0; i < 10; i++ {
		h.OK(checkNotify)
	}
	if n := strings.Count(buf.String(), "recovered"); n != 1 {
		t.Fatalf("%d recoveries logged:\n%s", n, buf.String())
	}
	h.Fail(checkNotify, errors.New("new outage"))
	if n := strings.Count(buf.String(), "notify failing"); n != 2 {
		t.Fatalf("a new outage is logged again: %s", buf.String())
	}
}

// /readyz: 503 while a critical check (the audit trail) fails or the
// server stops; degraded background work is listed but stays ready.
func TestReadyzReflectsChecks(t *testing.T) {
	h, _, _ := testHealth()
	stopping := make(chan struct{})
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.readyz(stopping)(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Fatalf("healthy: %d %q", code, body)
	}
	h.Fail(checkConfigWatch, errors.New("inotify: too many open files"))
	code, body := get()
	if code != 200 || !strings.Contains(body, "config_watch: degraded") || !strings.Contains(body, reloadHint) {
		t.Fatalf("degraded: %d %q", code, body)
	}
	h.Fail(checkAudit, errors.New("store: /secret/path: no space left on device"))
	code, body = get()
	if code != 503 || !strings.Contains(body, "audit: failing") || strings.Contains(body, "/secret/path") {
		t.Fatalf("audit failing: %d %q", code, body)
	}
	h.OK(checkAudit)
	if code, _ := get(); code != 200 {
		t.Fatalf("recovered: %d", code)
	}
	close(stopping)
	if code, body := get(); code != 503 || !strings.Contains(body, "shutting down") {
		t.Fatalf("stopping: %d %q", code, body)
	}
}

// failingLog is an audit log whose appends fail like a full disk.
type failingLog struct {
	auditLog
	err error
}

func (f failingLog) Append(context.Context, *audit.Event) error { return f.err }

// The audit wrapper reports a failing trail, but not a caller that went
// away or a log closed at shutdown.
func TestWatchedAuditReportsFailures(t *testing.T) {
	h, _, _ := testHealth()
	for _, err := range []error{context.Canceled, context.DeadlineExceeded, audit.ErrClosed} {
		w := newWatchedAudit(failingLog{err: err}, h)
		w.Append(t.Context(), &audit.Event{})
		if ready, _ := h.Report(); !ready {
			t.Fatalf("%v made the server unready", err)
		}
	}
	w := newWatchedAudit(failingLog{err: errors.New("store: audit: no space left on device")}, h)
	if err := w.Append(t.Context(), &audit.Event{}); err == nil {
		t.Fatal("error swallowed")
	}
	if ready, _ := h.Report(); ready {
		t.Fatal("a failing audit trail leaves the server ready")
	}
}

// End to end: both listeners answer /readyz from the same checks; a
// refusing webhook shows as degraded; a failing audit trail makes the
// server unready.
func TestEndToEndReadyz(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // 4xx: not retried
	}))
	defer hook.Close()
	s := startServerWith(t, func(c *Config) { c.Notify.Webhook = hook.URL })
	readyz := func(base string) (int, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, base := range []string{s.app.BrokerURL(), s.app.ProxyURL()} {
		if code, body := readyz(base); code != 200 || body != "ok\n" {
			t.Fatalf("%s: %d %q", base, code, body)
		}
	}
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini", "--nowait") // notifies
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := readyz(s.app.ProxyURL())
		if strings.Contains(body, "notify: degraded") {
			if code != 200 {
				t.Fatalf("a failing webhook made the proxy unready: %d", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never showed the webhook failure: %q", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The failed delivery is recorded after readyz shows it (a
	// notify.failed event); a successful append marks the trail ok, so
	// wait for it before failing the trail by hand.
	waitUntil(t, "the notify.failed event", 5*time.Second, func() bool {
		found := false
		s.app.audit.Range(t.Context(), 0, func(e audit.Event) bool {
			found = found || e.Type == audit.TypeNotifyFailed
			return true
		})
		return found
	})
	s.app.health.Fail(checkAudit, errors.New("no space left on device"))
	for _, base := range []string{s.app.BrokerURL(), s.app.ProxyURL()} {
		if code, body := readyz(base); code != 503 || !strings.Contains(body, "audit: failing") {
			t.Fatalf("%s with a failing trail: %d %q", base, code, body)
		}
	}
}

// A config watcher that cannot start says so (log and /readyz) instead of
// silently never reloading.
func TestConfigWatcherThatCannotStartSaysSo(t *testing.T) {
	missing := t.TempDir() + "/gone/config.yaml"
	s := startServerWith(t, func(c *Config) { c.File = missing })
	deadline := time.Now().Add(5 * time.Second)
	for {
		ready, lines := s.app.health.Report()
		if len(lines) == 1 && strings.HasPrefix(lines[0], "config_watch: degraded") && strings.Contains(lines[0], "SIGHUP") {
			if !ready {
				t.Fatal("a config watcher failure made the server unready")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher failure not reported: %v", lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The hint for a failed config watch names a way to reload this OS has:
// SIGHUP on Unix, a restart on Windows (no SIGHUP there).
func TestReloadHintFitsTheOS(t *testing.T) {
	if runtime.GOOS == "windows" {
		if strings.Contains(reloadHint, "SIGHUP (") || !strings.Contains(reloadHint, "restart") {
			t.Fatalf("hint on Windows: %q", reloadHint)
		}
		return
	}
	if !strings.Contains(reloadHint, "kill -HUP") {
		t.Fatalf("hint on %s: %q", runtime.GOOS, reloadHint)
	}
}

// The expiry_sweep hint names all the sweep does (review): it also ends
// calls held on grants that ended, which stay in the approvers' queue,
// unapprovable, while it fails; and it says where to look.
func TestSweepHintNamesHeldCalls(t *testing.T) {
	h, buf, _ := testHealth()
	h.Fail(checkSweep, errors.New("ending held call req_1 (grant req_2): storage error"))
	rec := httptest.NewRecorder()
	h.readyz(nil)(rec, httptest.NewRequest("GET", "/readyz", nil))
	for _, out := range []string{rec.Body.String(), buf.String()} {
		for _, want := range []string{"expired requests", "held calls", "cannot be approved", "server log", "store"} {
			if !strings.Contains(out, want) {
				t.Errorf("the expiry_sweep hint does not say %q:\n%s", want, out)
			}
		}
	}
}
