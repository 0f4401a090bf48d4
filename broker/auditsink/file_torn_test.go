package auditsink_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// A file sink writes a batch (up to batch_max events) through a 256 KiB
// buffer, so one batch is several write(2) calls, and a kill -9 between
// two leaves the file ending in part of a line: half of it, or all of it
// but its newline. That batch was never acknowledged (the cursor moves
// after Deliver returns): the restart drops the part and sends the batch
// again, and the file verifies whole (docs/audit.md, Streaming the
// trail). Found by a red team: start refused until an operator edited the
// file; a whole line without its newline would have been taken as written.
func TestFileSinkDropsALineACrashLeftUnfinished(t *testing.T) {
	for _, tc := range []struct {
		name string
		torn func(last []byte) []byte // what of the next batch reached the file
	}{
		{"half a line", func(last []byte) []byte { return last[:len(last)/2] }},
		{"a line without its newline", func(last []byte) []byte { return last }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrail(t, 1000)
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			sinks := []auditsink.SinkConfig{{Type: "file", Path: path}}
			m := tr.start(t, sinks, auditsink.AnchorConfig{})
			tr.add(t, 5, "first batch")
			waitFor(t, "5 events shipped", func() bool { return m.Status()[0].Cursor.Seq == 5 })
			m.Close()

			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
			last := bytes.Replace(lines[len(lines)-1], []byte(`{"seq":5,`), []byte(`{"seq":6,`), 1)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.torn(last)); err != nil {
				t.Fatal(err)
			}
			f.Close()

			tr.add(t, 3, "after the restart")
			m2, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db, Sinks: sinks,
				Poll: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			if err != nil {
				t.Fatalf("restart after a kill mid-batch: %v", err)
			}
			defer m2.Close()
			waitFor(t, "8 events shipped", func() bool { return m2.Status()[0].Cursor.Seq == 8 })
			m2.Close()
			fh, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			rep, err := audit.VerifyJSONL(fh, tr.keys)
			if err != nil || rep.Last != 8 || rep.First != 1 {
				b, _ := os.ReadFile(path)
				t.Fatalf("the sink file after the restart: %+v, %v\n%s", rep, err, strings.TrimSpace(string(b)))
			}
			b, _ := os.ReadFile(path)
			if n := strings.Count(string(b), `{"seq":6,`); n != 1 {
				t.Fatalf("seq 6 appears %d times", n)
			}
		})
	}
}
