package audit

import (
	"bytes"
	"strings"
	"testing"
)

// An export that signs its head and then reads its events ends at that
// head (ThroughHead), so an event appended in between is not exported
// unsigned and `audit verify --file --signed`, which fails events after
// the head, passes every export pamctl writes.
func TestThroughHeadEndsTheExportAtItsHead(t *testing.T) {
	lines := chain(t, 1, GenesisHash, 6)
	head := signedHead(t, lines, 4)
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, nil, ThroughHead(seqOf(lines), head), head); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyJSONL(&buf, testKeys)
	if err != nil || rep.Last != 4 || rep.Unsigned != 0 || !rep.Signed {
		t.Fatalf("export through the head: %+v, %v; want events 1..4, none unsigned", rep, err)
	}
	n := 0
	for range ThroughHead(seqOf(lines), nil) {
		n++
	}
	if n != 6 {
		t.Fatalf("without a head %d lines, want all 6", n)
	}
	for _, bad := range [][]byte{[]byte(`{"seq":x,"a":1}`), []byte(`{"seq":,`), []byte(`{"time":1}`)} {
		var got error
		for _, err := range ThroughHead(seqOf(append([][]byte{bad}, lines...)), head) {
			if err != nil {
				got = err
			}
		}
		if got == nil || !strings.Contains(got.Error(), "not an event line") {
			t.Fatalf("line %s: err %v, want not an event line", bad, got)
		}
	}
}
