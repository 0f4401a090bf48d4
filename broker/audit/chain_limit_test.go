package audit

import (
	"strings"
	"testing"
	"time"
)

// An event larger than any reader of the trail takes (the segment at
// start, an export's verifier, a file sink) is refused when it is drafted,
// never acknowledged: found by a red team, such an event was appended,
// and after a crash the segment took its length for a torn write and
// dropped it without a word.
func TestNewDraftRefusesAnEventNoReaderTakes(t *testing.T) {
	now := time.Now()
	big := &Event{Type: TypeProxyCall, Details: map[string]string{"blob": strings.Repeat("x", MaxLineBytes)}}
	if _, err := NewDraft(big, now); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("NewDraft of a %d-byte detail: %v, want refused", MaxLineBytes, err)
	}
	ok := &Event{Type: TypeProxyCall, Details: map[string]string{"blob": strings.Repeat("x", MaxLineBytes-4096)}}
	d, err := NewDraft(ok, now)
	if err != nil {
		t.Fatalf("an event under the limit: %v", err)
	}
	line, _, err := d.Seal(1, strings.Repeat("0", 64))
	if err != nil || len(line) > MaxLineBytes {
		t.Fatalf("sealed: %d bytes, %v", len(line), err)
	}
}
