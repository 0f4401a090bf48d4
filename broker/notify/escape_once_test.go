package notify

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/safetext"
)

// The error OnFailure gets (logged, and kept in the notify.failed audit
// event as data) is bounded and raw: a U+202E in it is itself, escaped
// once where a person reads it (\u202e), never an escape escaped again
// (\\u202e, which reads as the six characters someone typed).
func TestFailureErrorIsBoundedAndRaw(t *testing.T) {
	rec := &recorder{}
	w := newWebhook("https://hooks.invalid/x", rec)
	w.Resolve = func(context.Context) (string, error) {
		return "", errors.New("vault entry \u202ehook\u202c unreadable" + strings.Repeat("z", 4<<10))
	}
	if err := w.Send(context.Background(), event()); err != nil {
		t.Fatal(err)
	}
	if err := w.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.failures) != 1 {
		t.Fatalf("OnFailure called %d times, want 1", len(rec.failures))
	}
	msg := rec.failures[0].Error()
	if !strings.Contains(msg, "vault entry \u202ehook\u202c unreadable") || len(msg) > maxErrorBytes+len("… (cut)") {
		t.Errorf("the failure is not the error as it is, bounded (%d bytes): %q", len(msg), msg)
	}
	if shown := safetext.Escape(msg); !strings.Contains(shown, `vault entry \u202ehook\u202c`) || strings.Contains(shown, `\\u202e`) {
		t.Errorf("the failure escaped for a person does not read \\u202e once: %s", shown)
	}
}
