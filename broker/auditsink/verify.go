package auditsink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// BreakOffHost is the kind of a chain break found by comparing the local
// trail with the heads anchored off-host.
const BreakOffHost audit.BreakKind = "off_host_anchor"

// maxAnchorLine bounds one line of an anchor file.
const maxAnchorLine = 1 << 20

// ReadAnchors reads signed heads from an anchor file: one {"head":{...}}
// line each. Event, range and anchor lines (a sink's JSON Lines given as
// the anchor file) are skipped; anything else is an error naming its line.
// Every head's signature is checked against keys.
func ReadAnchors(r io.Reader, keys audit.KeyFunc) ([]audit.SignedHead, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxAnchorLine)
	var out []audit.SignedHead
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		switch {
		case len(line) == 0,
			bytes.HasPrefix(line, []byte(`{"seq":`)),
			bytes.HasPrefix(line, []byte(`{"range":`)),
			bytes.HasPrefix(line, []byte(`{"anchor":`)):
			continue
		case !bytes.HasPrefix(line, []byte(`{"head":`)):
			return nil, fmt.Errorf("line %d: not a signed head (expected {\"head\":{...}}): %s", n, clean(line, 60))
		}
		if cutShort(line) {
			// A head a crash (or a power loss) cut short while it was
			// written: the sink sent it again, and an append-only file
			// keeps the part for good. It holds no head, so it proves
			// nothing either way.
			continue
		}
		if err := checkUniqueKeys(line); err != nil {
			return nil, fmt.Errorf("line %d: unreadable signed head (%v): %s", n, err, clean(line, 60))
		}
		var hl headLine
		if err := json.Unmarshal(line, &hl); err != nil || hl.Head == nil {
			return nil, fmt.Errorf("line %d: unreadable signed head: %s", n, clean(line, 60))
		}
		h := *hl.Head
		if h.Seq == 0 || len(h.Hash) != 64 {
			return nil, fmt.Errorf("line %d: signed head without a seq or a 64-digit hash", n)
		}
		if keys != nil {
			if err := h.Check(keys); err != nil {
				return nil, fmt.Errorf("line %d: head at seq %d: %w (not signed by a key of this deployment: the anchor holds a forged or foreign head)", n, h.Seq, err)
			}
		}
		out = append(out, h)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes: not an anchor file", n+1, maxAnchorLine)
		}
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no signed heads in it: is this the anchor file (audit.anchor.file) or a sink's JSON Lines?")
	}
	return out, nil
}

// cutShort reports whether line is the start of a JSON value whose end
// is missing: the text of a write that stopped part way.
func cutShort(line []byte) bool {
	var v any
	return errors.Is(json.NewDecoder(bytes.NewReader(line)).Decode(&v), io.ErrUnexpectedEOF)
}

// AnchorReport says what comparing the local trail with the anchored heads
// proved.
type AnchorReport struct {
	// Heads is how many anchored heads were read; Matched how many match
	// the event (or retention anchor) at their seq; Pruned how many lie
	// before the retained trail and could not be compared.
	Heads   int    `json:"heads"`
	Matched int    `json:"matched"`
	Pruned  int    `json:"pruned"`
	First   uint64 `json:"first"` // lowest anchored seq
	Last    uint64 `json:"last"`  // highest anchored seq
}

// MinRetention is the shortest audit.retention pamctl runs with; a prune
// it makes never removes events younger than that.
const MinRetention = time.Hour

// anchorSkew is how far a retention anchor's or a head's clock may be
// ahead of the verifier's.
const anchorSkew = 5 * time.Minute

// implausiblePrune says why the retention anchor a cannot have pruned the
// events the anchored head h covers ("" when it can): pamctl prunes only
// events older than MinRetention at the time it prunes, at a time past,
// and after the head was signed. Whoever holds the master key can sign a
// retention anchor; these rules are what keeps one from passing off the
// deletion of recent history as retention (docs/audit.md).
func implausiblePrune(a *audit.Anchor, h audit.SignedHead, now time.Time) string {
	at := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
	switch {
	case a.Time.After(now.Add(anchorSkew)):
		return fmt.Sprintf("a retention anchor dated %s, in the future: the events it says were pruned were deleted", at(a.Time))
	case a.Time.Sub(a.Before) < MinRetention:
		return fmt.Sprintf("a retention anchor that pruned events as older than %s at %s, a retention of %s, shorter than the %s pamctl allows: the events were deleted, not pruned",
			at(a.Before), at(a.Time), a.Time.Sub(a.Before).Round(time.Second), MinRetention)
	case h.Seq < a.Seq && h.Time.After(a.Before.Add(anchorSkew)):
		return fmt.Sprintf("a retention anchor that says every event through seq %d is older than %s, while this head was signed at %s with later events still to come: the events were deleted, not pruned", a.Seq, at(a.Before), at(h.Time))
	case h.Time.After(a.Time.Add(anchorSkew)):
		return fmt.Sprintf("a retention anchor that pruned this seq at %s, before this head was signed: the events were deleted, not pruned", at(a.Time))
	}
	return ""
}

// CheckAnchors compares anchored heads with the local trail: each head's
// hash must be the local hash at its seq, and the trail must reach the
// last anchored seq. st describes the local trail (first and last retained
// event, retention anchor); walk calls fn with the seq and hash of every
// retained event in order. A mismatch is a *audit.BreakError of kind
// BreakOffHost: history was rewritten, truncated or rolled back.
func CheckAnchors(heads []audit.SignedHead, st audit.Status, walk func(fn func(seq uint64, hash string) bool) error) (AnchorReport, error) {
	rep := AnchorReport{Heads: len(heads)}
	want := map[uint64][]audit.SignedHead{}
	for _, h := range heads {
		want[h.Seq] = append(want[h.Seq], h)
		if rep.First == 0 || h.Seq < rep.First {
			rep.First = h.Seq
		}
		rep.Last = max(rep.Last, h.Seq)
	}
	var brk *audit.BreakError
	mismatch := func(h audit.SignedHead, found string) *audit.BreakError {
		return &audit.BreakError{Seq: h.Seq, Kind: BreakOffHost,
			Expected: fmt.Sprintf("hash %s (head anchored off-host, signed %s)", h.Hash, h.Time.UTC().Format("2006-01-02T15:04:05Z")),
			Found:    found}
	}
	seen := map[uint64]bool{}
	err := walk(func(seq uint64, hash string) bool {
		for _, h := range want[seq] {
			if h.Hash != hash {
				brk = mismatch(h, "hash "+hash+" in the local trail: history was rewritten after this head was anchored")
				return false
			}
			rep.Matched++
		}
		if len(want[seq]) > 0 {
			seen[seq] = true
		}
		return true
	})
	if err != nil {
		return rep, err
	}
	if brk != nil {
		return rep, brk
	}
	seqs := make([]uint64, 0, len(want))
	for s := range want {
		if !seen[s] {
			seqs = append(seqs, s)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	now := time.Now()
	for _, s := range seqs {
		for _, h := range want[s] {
			switch {
			case st.Anchor != nil && s == st.Anchor.Seq:
				if h.Hash != st.Anchor.Hash {
					return rep, mismatch(h, "hash "+st.Anchor.Hash+" at the retention anchor: history was rewritten")
				}
				rep.Matched++
			case st.Anchor != nil && s < st.Anchor.Seq:
				if why := implausiblePrune(st.Anchor, h, now); why != "" {
					return rep, mismatch(h, why)
				}
				rep.Pruned++
			case s > st.Last.Seq:
				return rep, mismatch(h, "a local trail that ends at seq "+strconv.FormatUint(st.Last.Seq, 10)+": events were cut or the data file was rolled back")
			default:
				return rep, mismatch(h, "no event at this seq in the local trail")
			}
		}
	}
	return rep, nil
}
