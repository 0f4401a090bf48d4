package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"iter"
	"strings"
	"testing"
)

func seqOf(lines [][]byte) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for _, l := range lines {
			if !yield(l, nil) {
				return
			}
		}
	}
}

// lastHash returns the hash member of a sealed line.
func lastHash(line []byte) string { return string(line[len(line)-2-hexLen : len(line)-2]) }

func signedHead(t testing.TB, lines [][]byte, seq uint64) *SignedHead {
	t.Helper()
	h := &SignedHead{Seq: seq, Hash: lastHash(lines[seq-1]), Time: t0}
	if err := h.Sign(testSigner); err != nil {
		t.Fatal(err)
	}
	return h
}

func wantBreak(t *testing.T, err error, seq uint64, kind BreakKind) {
	t.Helper()
	var be *BreakError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want *BreakError at seq %d (%s)", err, seq, kind)
	}
	if be.Seq != seq || be.Kind != kind {
		t.Fatalf("break at seq %d (%s), want seq %d (%s): %v", be.Seq, be.Kind, seq, kind, be)
	}
	if !errors.Is(err, ErrTampered) {
		t.Fatal("BreakError does not match ErrTampered")
	}
}

func TestVerifyIntactChain(t *testing.T) {
	lines := chain(t, 1, GenesisHash, 20)
	head := signedHead(t, lines, 18)
	rep, err := Verify(nil, head, seqOf(lines), testKeys)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 20 || rep.First != 1 || rep.Last != 20 || !rep.Signed || rep.Unsigned != 2 || rep.LastHash != lastHash(lines[19]) {
		t.Fatalf("report %+v", rep)
	}
	// Without keys nothing about signatures is claimed.
	rep, err = Verify(nil, head, seqOf(lines), nil)
	if err != nil || rep.Signed {
		t.Fatalf("keyless verify: %+v, %v", rep, err)
	}
	// An empty chain verifies.
	if _, err := Verify(nil, nil, seqOf(nil), testKeys); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	const n = 10
	cases := []struct {
		name   string
		tamper func(lines [][]byte, head *SignedHead) ([][]byte, *SignedHead)
		seq    uint64
		kind   BreakKind
	}{
		{"edit a field", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			l[4] = bytes.Replace(l[4], []byte(`"model":"gpt-4o"`), []byte(`"model":"gpt-4x"`), 1)
			return l, h
		}, 5, BreakHash},
		{"edit the stored hash too", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			l[4] = bytes.Replace(l[4], []byte(`"status":200`), []byte(`"status":403`), 1)
			forged := chainFrom(t, l[4])
			l[4] = forged
			return l, h
		}, 6, BreakLink},
		{"delete an event", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			return append(l[:3:3], l[4:]...), h
		}, 4, BreakMissing},
		{"reorder two events", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			l[5], l[6] = l[6], l[5]
			return l, h
		}, 6, BreakMissing},
		{"duplicate an event", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			return append(l[:7:7], append([][]byte{l[6]}, l[7:]...)...), h
		}, 8, BreakOrder},
		{"truncate the tail", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			return l[:7], h
		}, 8, BreakTruncated},
		{"delete the signed head", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			return l, nil
		}, 1, BreakHead},
		{"forge the head", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			f := *h
			f.Seq = 7
			f.Hash = lastHash(l[6])
			return l[:7], &f
		}, 7, BreakHead},
		{"head from an unknown key", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			f := *h
			f.KID = "k9"
			return l, &f
		}, n, BreakHead},
		{"garbage line", func(l [][]byte, h *SignedHead) ([][]byte, *SignedHead) {
			l[2] = []byte(`{"seq":3}`)
			return l, h
		}, 3, BreakMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := chain(t, 1, GenesisHash, n)
			head := signedHead(t, lines, n)
			lines, head = c.tamper(lines, head)
			_, err := Verify(nil, head, seqOf(lines), testKeys)
			wantBreak(t, err, c.seq, c.kind)

			// The same export, verified offline, breaks at the same place.
			var buf bytes.Buffer
			if err := WriteJSONL(&buf, nil, seqOf(lines), head); err != nil {
				t.Fatal(err)
			}
			_, err = VerifyJSONL(&buf, testKeys)
			wantBreak(t, err, c.seq, c.kind)
		})
	}
}

// chainFrom re-seals an edited line with a recomputed hash, as an attacker
// without the signing key could.
func chainFrom(t *testing.T, line []byte) []byte {
	t.Helper()
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatal(err)
	}
	prev := e.PrevHash
	seq := e.Seq
	d, err := NewDraft(&e, t0)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := d.Seal(seq, prev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyAnchor(t *testing.T) {
	// Events 1..5 were pruned; the anchor holds event 5's hash and the
	// chain continues at 6 with an audit.anchor event recording it.
	all := chain(t, 1, GenesisHash, 8)
	anchor := &Anchor{Seq: 5, Hash: lastHash(all[4]), Before: t0, Time: t0}
	if err := anchor.Sign(testSigner); err != nil {
		t.Fatal(err)
	}
	d, err := NewDraft(AnchorEvent(anchor, 5), t0)
	if err != nil {
		t.Fatal(err)
	}
	ev, hash, err := d.Seal(9, lastHash(all[7]))
	if err != nil {
		t.Fatal(err)
	}
	kept := append(all[5:8:8], ev)
	head := &SignedHead{Seq: 9, Hash: hash, Time: t0}
	if err := head.Sign(testSigner); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(anchor, head, seqOf(kept), testKeys)
	if err != nil {
		t.Fatal(err)
	}
	if rep.First != 6 || rep.Last != 9 || rep.Events != 4 {
		t.Fatalf("report %+v", rep)
	}

	t.Run("anchor hash edited", func(t *testing.T) {
		a := *anchor
		a.Hash = lastHash(all[3])
		_, err := Verify(&a, head, seqOf(kept), testKeys)
		wantBreak(t, err, 5, BreakAnchor)
		_, err = Verify(&a, head, seqOf(kept), nil) // without keys the first link breaks
		wantBreak(t, err, 6, BreakLink)
	})
	t.Run("anchor moved forward to hide deletions", func(t *testing.T) {
		a := &Anchor{Seq: 6, Hash: lastHash(all[5]), Before: t0, Time: t0}
		_, err := Verify(a, head, seqOf(kept[1:]), nil)
		wantBreak(t, err, 6, BreakAnchor) // the audit.anchor event says 5
	})
	t.Run("anchor removed", func(t *testing.T) {
		_, err := Verify(nil, head, seqOf(kept), testKeys)
		wantBreak(t, err, 1, BreakMissing)
	})
	t.Run("offline", func(t *testing.T) {
		var buf bytes.Buffer
		if err := WriteJSONL(&buf, anchor, seqOf(kept), head); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(buf.String(), `{"anchor":`) || !strings.Contains(buf.String(), "\n{\"head\":") {
			t.Fatalf("export layout:\n%s", buf.String())
		}
		if _, err := VerifyJSONL(&buf, testKeys); err != nil {
			t.Fatal(err)
		}
	})
}

func TestVerifyJSONLHeadFarFromTail(t *testing.T) {
	// The head line comes last; the verifier remembers recent hashes to
	// check a head signed some events before the tail.
	lines := chain(t, 1, GenesisHash, 300)
	head := signedHead(t, lines, 120)
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, nil, seqOf(lines), head); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyJSONL(bytes.NewReader(buf.Bytes()), testKeys)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unsigned != 180 || !rep.Signed {
		t.Fatalf("report %+v", rep)
	}
	bad := *head
	bad.Hash = lastHash(lines[120])
	if err := bad.Sign(testSigner); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := WriteJSONL(&buf, nil, seqOf(lines), &bad); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyJSONL(&buf, testKeys)
	wantBreak(t, err, 120, BreakHead)
}

func TestVerifyJSONLRejectsBadLayout(t *testing.T) {
	lines := chain(t, 1, GenesisHash, 2)
	for name, input := range map[string]string{
		"data after head": string(lines[0]) + "\n" + `{"head":{"seq":1}}` + "\n" + string(lines[1]) + "\n",
		"late anchor":     string(lines[0]) + "\n" + `{"anchor":{"seq":1}}` + "\n",
		"bad head":        string(lines[0]) + "\n" + `{"head":` + "\n",
	} {
		if _, err := VerifyJSONL(strings.NewReader(input), nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A missing trailing newline is fine.
	if _, err := VerifyJSONL(strings.NewReader(string(lines[0])+"\n"+string(lines[1])), nil); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyUnknownAnchorKey(t *testing.T) {
	lines := chain(t, 1, GenesisHash, 3)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	a := &Anchor{Seq: 0, Hash: GenesisHash, Time: t0}
	if err := a.Sign(Ed25519Signer{KID: "k1", Key: other}); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(a, nil, seqOf(lines), testKeys)
	wantBreak(t, err, 0, BreakAnchor)
}

// BenchmarkVerifyJSONL verifies an in-memory export of 100,000 events.
func BenchmarkVerifyJSONL(b *testing.B) {
	const n = 100_000
	lines := chain(b, 1, GenesisHash, n)
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, nil, seqOf(lines), nil); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := VerifyJSONL(bytes.NewReader(data), nil)
		if err != nil || rep.Events != n {
			b.Fatalf("%+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// verifyMark runs a keyed verification with a high-water mark.
func verifyMark(anchor *Anchor, head *SignedHead, lines [][]byte, mark Link) (Report, error) {
	v := NewVerifier(anchor, testKeys)
	v.ExpectHead(head)
	v.ExpectHighWater(mark)
	for _, l := range lines {
		if v.Add(l) != nil {
			break
		}
	}
	return v.Finish(head)
}

// TestVerifyHighWater: a chain that falls short of its high-water mark,
// differs from it, or whose head is older than it is not intact, down to
// an empty chain with no head (which plain Verify calls intact).
func TestVerifyHighWater(t *testing.T) {
	lines := chain(t, 1, GenesisHash, 10)
	head := signedHead(t, lines, 10)
	mark := Link{Seq: 10, Hash: lastHash(lines[9])}
	rep, err := verifyMark(nil, head, lines, mark)
	if err != nil || rep.HighWater == nil || *rep.HighWater != mark || rep.Scope != ScopeTrail {
		t.Fatalf("intact: %+v %v", rep, err)
	}
	if _, err := Verify(nil, nil, seqOf(nil), testKeys); err != nil {
		t.Fatalf("an empty chain without a mark is a fresh one: %v", err)
	}
	_, err = verifyMark(nil, nil, nil, mark)
	wantBreak(t, err, 1, BreakHighWater)
	old := signedHead(t, lines, 6)
	_, err = verifyMark(nil, old, lines[:6], mark)
	wantBreak(t, err, 7, BreakHighWater)
	_, err = verifyMark(nil, old, lines, mark) // events kept, head rolled back
	wantBreak(t, err, 10, BreakHighWater)
	_, err = verifyMark(nil, head, lines, Link{Seq: 10, Hash: lastHash(lines[8])})
	wantBreak(t, err, 10, BreakHighWater)

	// A mark pruned behind the signed anchor is fine; past it, not.
	anchor := &Anchor{Seq: 5, Hash: lastHash(lines[4]), Before: t0, Time: t0}
	if err := anchor.Sign(testSigner); err != nil {
		t.Fatal(err)
	}
	d, _ := NewDraft(AnchorEvent(anchor, 5), t0)
	ev, hash, _ := d.Seal(11, lastHash(lines[9]))
	kept := append(lines[5:10:10], ev)
	head11 := &SignedHead{Seq: 11, Hash: hash, Time: t0}
	head11.Sign(testSigner)
	if _, err := verifyMark(anchor, head11, kept, Link{Seq: 3, Hash: lastHash(lines[2])}); err != nil {
		t.Fatalf("mark behind the anchor: %v", err)
	}
	if _, err := verifyMark(anchor, head11, kept, Link{Seq: 5, Hash: lastHash(lines[4])}); err != nil {
		t.Fatalf("mark at the anchor: %v", err)
	}
	_, err = verifyMark(anchor, head11, kept, Link{Seq: 5, Hash: lastHash(lines[3])})
	wantBreak(t, err, 5, BreakHighWater)
}

// TestVerifyRangeStartingAtAnAnchorCut: a range whose audit.anchor event
// records a cut at or after the range's start is refused; before it, fine.
func TestVerifyRangeStartingAtAnAnchorCut(t *testing.T) {
	lines := chain(t, 1, GenesisHash, 10)
	anchor := &Anchor{Seq: 5, Hash: lastHash(lines[4]), Before: t0, Time: t0}
	d, _ := NewDraft(AnchorEvent(anchor, 5), t0)
	ev, _, _ := d.Seal(11, lastHash(lines[9]))
	for _, tc := range []struct {
		start uint64
		ok    bool
	}{{5, false}, {4, false}, {6, true}, {8, true}} {
		v := NewRangeVerifier(Link{Seq: tc.start, Hash: lastHash(lines[tc.start-1])}, nil)
		for _, l := range append(append([][]byte{}, lines[tc.start:]...), ev) {
			if v.Add(l) != nil {
				break
			}
		}
		rep, err := v.Finish(nil)
		if tc.ok {
			if err != nil || rep.Scope != ScopeRange || rep.Start == nil || rep.Start.Seq != tc.start {
				t.Errorf("range after seq %d: %+v %v", tc.start, rep, err)
			}
			continue
		}
		var be *BreakError
		if !errors.As(err, &be) || be.Kind != BreakAnchor || be.Seq != 11 {
			t.Errorf("range after seq %d: %v", tc.start, err)
		}
	}
}
