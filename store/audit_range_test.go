package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// A ranged export verifies offline as a piece of the chain; one that
// reaches the signed head is signature-checked; tampering is still caught.
func TestAuditExportRange(t *testing.T) {
	clock := newFakeClock()
	_, l := openAudit(t, t.TempDir(), false, AuditOptions{Signer: testSigner, Clock: clock.Now})
	evs := appendN(t, l, 30) // fakeClock: one event per millisecond or so
	ctx := context.Background()

	export := func(since, until int) string {
		t.Helper()
		var buf bytes.Buffer
		s, u := evs[0].Time.Add(-1), evs[0].Time.Add(-1)
		if since >= 0 {
			s = evs[since].Time
		}
		if until >= 0 {
			u = evs[until].Time
		} else {
			u = u.AddDate(1, 0, 0)
		}
		if err := l.ExportRange(ctx, &buf, s, u); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}

	// A middle range: starts with a range line, no head, verifies as partial.
	middle := export(10, 20)
	lines := strings.Split(strings.TrimSpace(middle), "\n")
	if !strings.HasPrefix(lines[0], `{"range":{"seq":10,`) || len(lines) != 11 || strings.Contains(middle, `{"head":`) {
		t.Fatalf("middle export:\n%s", middle)
	}
	rep, err := audit.VerifyJSONL(strings.NewReader(middle), testKeys)
	if err != nil || !rep.Partial || rep.Signed || rep.First != 11 || rep.Last != 20 {
		t.Fatalf("middle verify: %v %+v", err, rep)
	}
	// Editing an event inside the range is caught.
	tampered := strings.Replace(middle, `"seq":15,`, `"seq":15,"target":"x",`, 1)
	if _, err := audit.VerifyJSONL(strings.NewReader(tampered), testKeys); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("tampered range verified: %v", err)
	}
	// Dropping an event inside the range is caught.
	dropped := strings.Join(append(append([]string{}, lines[:5]...), lines[6:]...), "\n") + "\n"
	if _, err := audit.VerifyJSONL(strings.NewReader(dropped), testKeys); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("range with a hole verified: %v", err)
	}

	// A range to the end carries the signed head and is signature-checked.
	tail := export(20, -1)
	rep, err = audit.VerifyJSONL(strings.NewReader(tail), testKeys)
	if err != nil || !rep.Partial || !rep.Signed || rep.Last != 30 {
		t.Fatalf("tail verify: %v %+v", err, rep)
	}
	// From the start: no range line, a full, signed chain.
	all := export(-1, -1)
	if strings.HasPrefix(all, `{"range"`) {
		t.Fatal("a range from the start must begin at genesis")
	}
	rep, err = audit.VerifyJSONL(strings.NewReader(all), testKeys)
	if err != nil || rep.Partial || !rep.Signed || rep.Events != 30 {
		t.Fatalf("full verify: %v %+v", err, rep)
	}
}

// TestAuditRangeCannotPassForTheTrail: a whole export after a prune starts
// with the signed anchor line. Replacing it with an unsigned range line at
// the cut used to verify (as "partial", printed as intact); the in-range
// audit.anchor event now shows the range claims to start at the cut. A
// genuine range holding the anchor event verifies, as a range.
func TestAuditRangeCannotPassForTheTrail(t *testing.T) {
	clock := newFakeClock()
	_, l := openAudit(t, t.TempDir(), false, AuditOptions{Signer: testSigner, Clock: clock.Now})
	ctx := context.Background()
	appendN(t, l, 10)
	cut := clock.Now()
	evs := appendN(t, l, 10)
	res, err := l.Prune(ctx, cut)
	if err != nil || res.Deleted != 10 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	appendN(t, l, 3)

	var buf bytes.Buffer
	if err := l.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	whole := buf.String()
	rep, err := audit.VerifyJSONL(strings.NewReader(whole), testKeys)
	if err != nil || rep.Scope != audit.ScopeTrail || rep.Start != nil || !rep.Signed {
		t.Fatalf("whole export: %+v %v", rep, err)
	}
	first, rest, _ := strings.Cut(whole, "\n")
	if !strings.HasPrefix(first, `{"anchor":`) {
		t.Fatalf("first line %s", first)
	}
	forged := fmt.Sprintf(`{"range":{"seq":%d,"hash":%q}}`, res.Anchor.Seq, res.Anchor.Hash) + "\n" + rest
	_, err = audit.VerifyJSONL(strings.NewReader(forged), testKeys)
	var be *audit.BreakError
	if !errors.As(err, &be) || be.Kind != audit.BreakAnchor || be.Seq != res.AnchorSeq {
		t.Fatalf("anchor line replaced by a range line: %v", err)
	}

	// A genuine range that holds the audit.anchor event.
	buf.Reset()
	if err := l.ExportRange(ctx, &buf, evs[2].Time, time.Time{}); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.VerifyJSONL(&buf, testKeys)
	if err != nil || rep.Scope != audit.ScopeRange || rep.Start == nil || rep.Start.Seq != evs[1].Seq || rep.Start.Hash != evs[1].Hash {
		t.Fatalf("genuine range: %+v %v", rep, err)
	}
}
