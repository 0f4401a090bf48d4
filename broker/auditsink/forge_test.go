package auditsink_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// hostileText is what an agent or a requester can put in an event (a
// prompt, a model name, a reason, a user-agent, an IdP display name) to
// split or forge records at a sink: line breaks, NUL, a second RFC 5424
// header, an octet-count prefix (RFC 6587), structured-data
// metacharacters, invalid UTF-8, the JSON line separators and a field
// larger than many collectors' line limits.
var hostileText = []string{
	"a\nb\r\nc",
	"x\n<110>1 2026-01-01T00:00:00Z evil pamctl 1 proxy.call - {\"seq\":999,\"type\":\"vault.read\"}",
	"57 <110>1 2026-01-01T00:00:00Z h pamctl 1 proxy.call - {\"seq\":998}",
	"nul\x00byte",
	`] [sd@1 a="b\"c\\"] "`,
	"bad utf-8 \xff\xfe\xc3",
	"\u2028line\u2029sep\u0085",
	strings.Repeat("L", 40<<10),
}

// Text an event carries cannot split or forge records at any sink: every
// sink gets exactly one record per event and head, in order, each event
// with its own seq and hash; the file sink's copy still verifies (hash
// chain and signed heads), so a receiver can tell the sink's copy from a
// forgery. (Pins the JSON encoding and byte-counted framing of every
// sink against hostile content; the other tests send plain text. UDP is
// left out: loopback drops datagrams under load, and a datagram is one
// message whatever it holds.)
func TestHostileTextCannotSplitOrForgeRecords(t *testing.T) {
	tr := newTrail(t, 3)
	syslogTCP := newSyslogServer(t, nil)
	coll := newCollector(t)
	path := filepath.Join(t.TempDir(), "trail.jsonl")
	m := tr.start(t, []auditsink.SinkConfig{
		{Type: "syslog", Addr: "tcp://" + syslogTCP.addr},
		{Type: "http", URL: coll.url()},
		{Type: "file", Path: path},
	}, auditsink.AnchorConfig{})

	for _, h := range hostileText {
		e := &audit.Event{Type: audit.TypeProxyCall, Model: h, Prompt: h, Target: h, Error: h, Reasons: []string{h},
			Actor:   &audit.Actor{Subject: h, Display: h},
			Details: map[string]string{"user_agent": h, h: h}, Status: 200}
		if err := tr.log.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	n := len(hostileText)
	if _, err := tr.log.SignHead(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every sink caught up", func() bool {
		for _, s := range m.Status() {
			if s.Lag != 0 || s.Cursor.Seq != uint64(n) || s.Cursor.HeadSeq != uint64(n) {
				return false
			}
		}
		return true
	})
	// Syslog has no acknowledgement: wait for the receivers to read it all.
	waitFor(t, "the syslog receivers read every event and the head", func() bool {
		return syslogTCP.got.count() == n && syslogTCP.got.headCount() > 0
	})
	m.Close()
	syslogTCP.got.exactlyInOrder(t, "syslog tcp", n)
	coll.got.exactlyInOrder(t, "http jsonl", n)
	for _, r := range [][]string{syslogTCP.got.lines(), coll.got.lines()} {
		for _, line := range r {
			var v map[string]any
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Errorf("a record is not one JSON object: %v: %.200q", err, line)
			}
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := audit.VerifyJSONL(f, tr.keys)
	if err != nil || rep.Last != uint64(n) {
		t.Fatalf("the file sink's copy does not verify: %+v %v", rep, err)
	}
}
