package auditsink_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// After a 413 a batch is split down to single events, all inside one
// Deliver bounded by the sink's timeout. When its posts take longer than
// the timeout, what the collector took is recorded (PartialError), so the
// sink moves on instead of sending the first events forever (review).
func TestHTTP413SplitProgressesPastItsTimeout(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	var posts atomic.Int64
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		posts.Add(1)
		if len(body) > 5000 {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		time.Sleep(40 * time.Millisecond) // a remote collector's round trip
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			coll.got.line(t, sc.Bytes())
		}
		w.WriteHeader(http.StatusNoContent)
	})
	tr.add(t, 40, strings.Repeat("p", 3000)) // each alone fits, two do not
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url(), Timeout: time.Second, BatchMax: 40}}
	m := tr.start(t, sinks, auditsink.AnchorConfig{})
	time.Sleep(4 * time.Second)
	s := m.Status()[0]
	if s.Cursor.Seq < 40 {
		t.Errorf("the sink is wedged: after 4 s cursor %d, %d posts, %d events received, last error %q", s.Cursor.Seq, posts.Load(), coll.got.count(), s.LastError)
	}
}
