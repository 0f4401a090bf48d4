package auditsink_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// bigPrompt makes an event far over a UDP datagram: JSON escapes each <
// as \u003c (the red team's 123 KB event).
var bigPrompt = strings.Repeat("<", 20000)

// standIn is a received audit.oversize line.
type standIn struct {
	Seq       uint64    `json:"seq"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	EventType string    `json:"event_type"`
	Code      string    `json:"code"`
	Hash      string    `json:"hash"`
	Size      int       `json:"size"`
	Limit     int       `json:"limit"`
	Reason    string    `json:"reason"`
}

// checkStandIns checks that the received lines are seqs 1..n in order,
// each an event except the seqs in big, which are stand-ins naming the
// real event (its hash and type) and how to read it.
func checkStandIns(t *testing.T, name string, tr *trail, r *received, n int, big map[uint64]bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	want := uint64(1)
	for _, line := range r.raw {
		if strings.HasPrefix(line, `{"head":`) {
			continue
		}
		if !strings.HasPrefix(line, `{"seq":`) {
			t.Fatalf("%s: line neither an event nor a head: %.80s", name, line)
		}
		var si standIn
		if err := json.Unmarshal([]byte(line), &si); err != nil {
			t.Fatal(err)
		}
		if si.Seq < want {
			continue // a resent batch (at least once)
		}
		if si.Seq != want {
			t.Fatalf("%s: got seq %d, want %d (gap or reorder)", name, si.Seq, want)
		}
		want++
		if !big[si.Seq] {
			if si.Type == auditsink.TypeOversize {
				t.Errorf("%s: seq %d fits the sink but was sent as a stand-in", name, si.Seq)
			}
			continue
		}
		e, err := tr.log.Get(context.Background(), si.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if si.Type != auditsink.TypeOversize || si.Hash != e.Hash || si.EventType != string(e.Type) || si.Code != e.Code ||
			!si.Time.Equal(e.Time) || si.Size < 65000 || !strings.Contains(si.Reason, "pamctl audit show ") || len(line) > 2048 {
			t.Errorf("%s: stand-in of seq %d: %s", name, si.Seq, line)
		}
	}
	if want != uint64(n+1) {
		t.Errorf("%s: received up to seq %d, want %d", name, want-1, n)
	}
}

// One event too large for a UDP datagram is sent as a stand-in; the events
// before and after it are delivered, in order, and the sink never stalls.
func TestSyslogUDPOversizeEventIsAStandIn(t *testing.T) {
	tr := newTrail(t, 1000)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got received
	var mu sync.Mutex
	var msgids []string
	go func() {
		buf := make([]byte, 70000)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			// <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG
			parts := strings.SplitN(string(buf[:n]), " ", 8)
			if len(parts) != 8 || !strings.HasPrefix(parts[0], "<110>1") || parts[3] != "pamctl" || parts[6] != "-" {
				t.Errorf("not RFC 5424: %.100q", buf[:n])
				continue
			}
			if _, err := time.Parse(time.RFC3339Nano, parts[1]); err != nil {
				t.Errorf("bad timestamp %q", parts[1])
			}
			mu.Lock()
			msgids = append(msgids, parts[5])
			mu.Unlock()
			got.line(t, []byte(parts[7]))
		}
	}()
	tr.add(t, 3, "small")
	tr.add(t, 1, bigPrompt)
	tr.add(t, 3, "small")
	m := tr.start(t, []auditsink.SinkConfig{{Type: "syslog", Addr: "udp://" + pc.LocalAddr().String()}}, auditsink.AnchorConfig{})
	waitFor(t, "7 records", func() bool { return m.Status()[0].Cursor.Seq == 7 })
	waitFor(t, "7 datagrams", func() bool { return got.count() == 7 })
	checkStandIns(t, "udp", tr, &got, 7, map[uint64]bool{4: true})
	st := m.Status()[0]
	if st.Oversize != 1 || st.LastError != "" || st.Lag != 0 {
		t.Errorf("status: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	var events []string
	for _, id := range msgids {
		if id != auditsink.TypeHead {
			events = append(events, id)
		}
	}
	if len(events) != 7 || events[3] != auditsink.TypeOversize || events[2] != string(audit.TypeProxyCall) || events[4] != string(audit.TypeProxyCall) {
		t.Errorf("MSGIDs %v", msgids)
	}
}

// A collector that answers 413 to bodies over a limit gets the batch in
// smaller pieces, in order; an event over the limit alone goes as a
// stand-in. Both formats.
func TestHTTP413SplitsAndStandsIn(t *testing.T) {
	for _, format := range []string{auditsink.FormatJSONL, auditsink.FormatSplunkHEC} {
		t.Run(format, func(t *testing.T) {
			tr := newTrail(t, 4)
			coll := newCollector(t)
			const limit = 8 << 10
			var mu sync.Mutex
			var refused, accepted int
			var got received
			coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				defer mu.Unlock()
				if len(body) > limit {
					refused++
					http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
					return
				}
				accepted++
				sc := bufio.NewScanner(bytes.NewReader(body))
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					line := sc.Bytes()
					if format == auditsink.FormatSplunkHEC {
						var ev struct {
							Time       string          `json:"time"`
							Source     string          `json:"source"`
							SourceType string          `json:"sourcetype"`
							Event      json.RawMessage `json:"event"`
						}
						if err := json.Unmarshal(line, &ev); err != nil || ev.Source != "pamctl" || ev.Time == "" {
							t.Errorf("not an HEC event: %s", line)
						}
						if bytes.Contains(ev.Event, []byte(`"audit.oversize"`)) != (ev.SourceType == "pamctl:audit.oversize") {
							t.Errorf("HEC sourcetype %q for %s", ev.SourceType, ev.Event)
						}
						line = ev.Event
					}
					got.line(t, line)
				}
				w.WriteHeader(http.StatusNoContent)
			})
			// 40 events of about 500 bytes: a batch of 40 is over the limit.
			tr.add(t, 20, strings.Repeat("p", 300))
			tr.add(t, 1, bigPrompt)
			tr.add(t, 19, strings.Repeat("p", 300))
			m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url(), Format: format, BatchMax: 40}}, auditsink.AnchorConfig{})
			waitFor(t, "40 events acknowledged", func() bool { return m.Status()[0].Cursor.Seq == 40 })
			checkStandIns(t, format, tr, &got, 40, map[uint64]bool{21: true})
			st := m.Status()[0]
			if st.Oversize != 1 || st.Lag != 0 {
				t.Errorf("status: %+v", st)
			}
			mu.Lock()
			defer mu.Unlock()
			if refused == 0 || accepted < 3 {
				t.Errorf("refused %d, accepted %d: the 413 path was not taken", refused, accepted)
			}
		})
	}
}

// A collector that refuses even a small body is a configuration problem:
// the sink reports it and retries (it does not turn every event into a
// stand-in).
func TestHTTP413ForEverythingIsAnError(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusRequestEntityTooLarge)
	})
	tr.add(t, 2, "x")
	m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}, auditsink.AnchorConfig{})
	waitFor(t, "the error", func() bool { return strings.Contains(m.Status()[0].LastError, "413") })
	tr.add(t, 1, bigPrompt)
	time.Sleep(200 * time.Millisecond)
	if st := m.Status()[0]; st.Cursor.Seq != 0 || st.Oversize != 0 {
		t.Fatalf("status: %+v", st)
	}
}

// A TCP syslog collector cuts a message over its limit (rsyslog's default
// maxMessageSize is 8 KiB), which leaves a broken JSON record and no way to
// tell; max_message sends an event over it as its stand-in instead, and
// every message stays within it. Without max_message TCP sends events
// whole.
func TestSyslogMaxMessage(t *testing.T) {
	for _, limit := range []int{0, 4096} {
		tr := newTrail(t, 1000)
		srv := newSyslogServer(t, nil)
		tr.add(t, 2, "small")
		tr.add(t, 1, strings.Repeat("x", 5000))
		tr.add(t, 2, "small")
		m := tr.start(t, []auditsink.SinkConfig{{Type: "syslog", Addr: "tcp://" + srv.addr, MaxMessage: limit}}, auditsink.AnchorConfig{})
		waitFor(t, "5 records", func() bool { return m.Status()[0].Cursor.Seq == 5 })
		waitFor(t, "5 messages", func() bool { return srv.got.count() == 5 })
		m.Close()
		srv.mu.Lock()
		msgs := append([]string(nil), srv.msgs...)
		srv.mu.Unlock()
		var stood []standIn
		for _, msg := range msgs {
			if limit > 0 && len(msg) > limit {
				t.Errorf("max_message %d: a %d-byte message", limit, len(msg))
			}
			if i := strings.Index(msg, `{"seq":`); i >= 0 && strings.Contains(msg, auditsink.TypeOversize) {
				var si standIn
				if err := json.Unmarshal([]byte(msg[i:]), &si); err != nil {
					t.Fatal(err)
				}
				stood = append(stood, si)
			}
		}
		if limit == 0 {
			if len(stood) != 0 || m.Status()[0].Oversize != 0 {
				t.Errorf("no max_message: stand-ins %+v", stood)
			}
			continue
		}
		if len(stood) != 1 || stood[0].Seq != 3 || stood[0].Limit != limit || stood[0].Size <= limit ||
			!strings.Contains(stood[0].Reason, "max_message (4096 bytes)") || m.Status()[0].Oversize != 1 {
			t.Errorf("max_message %d: stand-ins %+v, status %+v", limit, stood, m.Status()[0])
		}
	}
}

// max_message is a syslog setting, at least what a stand-in or head takes,
// and at most a datagram over UDP.
func TestSyslogMaxMessageValidation(t *testing.T) {
	for _, c := range []struct {
		sink auditsink.SinkConfig
		bad  string
	}{
		{auditsink.SinkConfig{Type: "syslog", Addr: "tcp://siem:514", MaxMessage: 8192}, ""},
		{auditsink.SinkConfig{Type: "syslog", Addr: "udp://siem:514", MaxMessage: 65000}, ""},
		{auditsink.SinkConfig{Type: "syslog", Addr: "tcp+tls://siem:6514", MaxMessage: 1 << 20}, ""},
		{auditsink.SinkConfig{Type: "syslog", Addr: "tcp://siem:514", MaxMessage: 480}, "at least 2048"},
		{auditsink.SinkConfig{Type: "syslog", Addr: "tcp://siem:514", MaxMessage: -1}, "at least 2048"},
		{auditsink.SinkConfig{Type: "syslog", Addr: "udp://siem:514", MaxMessage: 65001}, "at most 65000 over udp"},
		{auditsink.SinkConfig{Type: "http", URL: "https://c.example/in", MaxMessage: 8192}, "max_message does not apply to a http sink"},
		{auditsink.SinkConfig{Type: "file", Path: "/var/log/t.jsonl", MaxMessage: 8192}, "max_message does not apply to a file sink"},
	} {
		err := c.sink.Validate()
		if c.bad == "" && err != nil || c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%+v: %v, want %q", c.sink, err, c.bad)
		}
	}
}
