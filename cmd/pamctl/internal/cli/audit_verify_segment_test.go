package cli

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
)

// `pamctl audit verify` on a stopped data dir checks the bucket's chain;
// what the segment beside it holds and the bucket does not (events a
// crash left, a damaged record) fails it, saying what to do, instead of
// "intact". Found by a red team: serve refused a damaged segment and said
// to run verify, which reported the trail intact and said nothing of it.
func TestVerifyReportsWhatTheSegmentHolds(t *testing.T) {
	for _, damaged := range []bool{true, false} {
		t.Run(map[bool]string{true: "damaged", false: "left by a crash"}[damaged], func(t *testing.T) {
			verifySegmentCase(t, damaged)
		})
	}
}

func verifySegmentCase(t *testing.T, damaged bool) {
	s := startServerWith(t, nil)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	dataDir, keyFile := filepath.Join(s.dir, "data"), filepath.Join(s.dir, "master.key")
	s.stop()

	// The tip of the stopped trail (an Inspect open, as verify does).
	db, err := store.Open(dataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := db.AuditLog(store.AuditOptions{Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := lg.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lg.Close()
	db.Close()

	// Two acknowledged events in the segment after the tip; the first got
	// a flipped bit.
	segPath := filepath.Join(dataDir, store.SegmentFileName)
	raw, err := os.ReadFile(segPath)
	if err != nil {
		t.Fatal(err)
	}
	epoch := binary.BigEndian.Uint64(raw[8:16])
	// Records in the format the previous version wrote (which start
	// reads): length, seq, CRC-32C.
	seg := binary.BigEndian.AppendUint64([]byte("pamctlsg"), epoch)
	tip := st.Last
	var firstLen int
	for i := range 2 {
		d, err := audit.NewDraft(&audit.Event{Type: audit.TypeLogout, Actor: &audit.Actor{Subject: "alice"}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		line, hash, err := d.Seal(tip.Seq+1, tip.Hash)
		if err != nil {
			t.Fatal(err)
		}
		var h [16]byte
		binary.BigEndian.PutUint32(h[0:4], uint32(len(line)))
		binary.BigEndian.PutUint64(h[4:12], tip.Seq+1)
		var eb [16]byte
		binary.BigEndian.PutUint64(eb[0:8], epoch)
		binary.BigEndian.PutUint64(eb[8:16], tip.Seq+1)
		c := crc32.MakeTable(crc32.Castagnoli)
		binary.BigEndian.PutUint32(h[12:16], crc32.Update(crc32.Update(0, c, eb[:]), c, line))
		if i == 0 {
			firstLen = len(line)
		}
		seg = append(append(seg, h[:]...), line...)
		tip = audit.Link{Seq: tip.Seq + 1, Hash: hash}
	}
	if damaged {
		seg[16+16+firstLen/2] ^= 0x01 // a bit flipped in the first record
	}
	seg = append(seg, make([]byte, 4096)...)
	if err := os.WriteFile(segPath, seg, 0o600); err != nil {
		t.Fatal(err)
	}

	if damaged {
		// pamctl serve refuses, and says to run verify.
		db, err = store.Open(dataDir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.AuditLog(store.AuditOptions{})
		db.Close()
		if !errors.Is(err, store.ErrSegmentDamaged) || !strings.Contains(err.Error(), "pamctl audit verify") {
			t.Fatalf("start = %v, want ErrSegmentDamaged pointing at audit verify", err)
		}
	}

	r := s.as(t, "admin", "", "audit", "verify", "-o", "json", "--data-dir", dataDir, "--master-key-file", keyFile)
	var v struct {
		OK bool `json:"ok"`
	}
	json.Unmarshal([]byte(r.out), &v)
	want := "Start `pamctl serve` once to index them"
	if damaged {
		want = "audit.seg"
	}
	if r.code == 0 || v.OK || !strings.Contains(r.out+r.err, want) {
		t.Fatalf("`pamctl audit verify` (exit %d) does not fail on what the segment holds (want %q):\n%s%s", r.code, want, r.out, r.err)
	}
	// Reading it: events a crash left in the segment are not left out
	// without a word (found by a review); a damaged segment does not stop
	// a look at the bucket's trail.
	for _, args := range [][]string{{"audit", "export"}, {"audit", "tail", "-n", "5"}} {
		r := s.as(t, "admin", "", append(args, "--data-dir", dataDir, "--master-key-file", keyFile)...)
		switch {
		case damaged && r.code != 0:
			t.Errorf("%v beside a damaged segment: exit %d %s", args, r.code, r.err)
		case !damaged && (r.code == 0 || !strings.Contains(r.err, want)):
			t.Errorf("%v with events only in the segment: exit %d, %q; want it refused saying %q", args, r.code, r.err, want)
		}
	}
}
