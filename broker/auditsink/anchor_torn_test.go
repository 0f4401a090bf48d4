package auditsink_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// A crash (or a power loss) part way through writing a head to the anchor
// file leaves part of a line, which an append-only file keeps for good:
// the next heads go on lines of their own, and the anchors read whole,
// the part skipped. Found by a red team's notes: the next head was
// appended to the part, and `pamctl audit verify --anchors` refused that
// line, with no way to repair the file.
func TestAnchorFileOutlivesAHeadCutShort(t *testing.T) {
	tr := newTrail(t, 1000)
	path := filepath.Join(t.TempDir(), "anchors.jsonl")
	tg, err := auditsink.NewAnchorTarget(auditsink.AnchorConfig{File: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	head := func() auditsink.Record {
		tr.add(t, 2, "x")
		h, err := tr.log.SignHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return auditsink.Record{Head: h}
	}
	first := head()
	if err := tg.Deliver(ctx, []auditsink.Record{first}); err != nil {
		t.Fatal(err)
	}
	second := head()
	line, _ := second.Line()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(line[:len(line)/2]); err != nil { // the crash
		t.Fatal(err)
	}
	f.Close()
	// The sink sends it again, then the next.
	if err := tg.Deliver(ctx, []auditsink.Record{second, head()}); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	heads, err := auditsink.ReadAnchors(fh, tr.keys)
	if err != nil || len(heads) != 3 || heads[1].Seq != second.Head.Seq {
		t.Fatalf("anchors after a head cut short: %d heads, %v", len(heads), err)
	}
	st, _ := tr.log.Head(ctx)
	if rep, err := auditsink.CheckAnchors(heads, st, walker(tr, nil)); err != nil || rep.Matched != 3 {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}
