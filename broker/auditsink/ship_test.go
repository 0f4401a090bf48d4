package auditsink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/safetext"
)

// Every sink receives every event once, in order, across an outage of the
// receivers: events made while they are down arrive when they return.
func TestSinksDeliverEverythingAcrossAnOutage(t *testing.T) {
	tr := newTrail(t, 4)
	plain := newSyslogServer(t, nil)
	serverTLS, caFile := testCA(t)
	secure := newSyslogServer(t, serverTLS)
	coll := newCollector(t)
	hdrs := filepath.Join(t.TempDir(), "headers")
	os.WriteFile(hdrs, []byte("# collector token\nAuthorization: Bearer s3cret\n"), 0o600)

	tr.add(t, 5, "before the sinks start")
	m := tr.start(t, []auditsink.SinkConfig{
		{Type: "syslog", Addr: "tcp://" + plain.addr},
		{Type: "syslog", Addr: "tcp+tls://" + secure.addr, CAFile: caFile},
		{Type: "http", URL: coll.url(), HeadersFile: hdrs, BatchMax: 3},
	}, auditsink.AnchorConfig{})
	statusOf = func() any { return m.Status() }
	defer func() { statusOf = nil }()
	tr.add(t, 5, "while the sinks are up")
	all := func(n int) func() bool {
		return func() bool { return plain.got.count() >= n && secure.got.count() >= n && coll.got.count() >= n }
	}
	waitFor(t, "10 events at every sink", all(10))

	plain.stop()
	secure.stop()
	coll.stop()
	tr.add(t, 12, "while the sinks are down")
	waitFor(t, "every sink to report the outage", func() bool {
		for _, s := range m.Status() {
			if s.LastError == "" || s.Lag == 0 {
				return false
			}
		}
		return true
	})
	for _, s := range m.Status() {
		if strings.Contains(s.LastError, "s3cret") || strings.Contains(s.LastError, "querysecret") || strings.Contains(s.Name, "querysecret") {
			t.Errorf("status leaks a credential: %+v", s)
		}
	}
	plain.start()
	secure.start()
	coll.start()
	tr.add(t, 3, "after they came back")
	if _, err := tr.log.SignHead(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "25 events at every sink", all(25))
	waitFor(t, "lag 0 and the last head delivered", func() bool {
		for _, s := range m.Status() {
			if s.Lag != 0 || s.Cursor.HeadSeq != 25 || s.LastError != "" {
				return false
			}
		}
		return true
	})
	plain.got.exactlyInOrder(t, "syslog tcp", 25)
	secure.got.exactlyInOrder(t, "syslog tls", 25)
	coll.got.exactlyInOrder(t, "http", 25)
	for _, h := range coll.headers {
		if h.Get("Authorization") != "Bearer s3cret" || h.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("collector headers: %v", h)
		}
	}
}

// The cursor is kept in the store: a restarted manager resumes where the
// last one was acknowledged, it does not start over.
func TestCursorSurvivesRestart(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	sinks := []auditsink.SinkConfig{{Type: "http", URL: coll.url()}}
	m := tr.start(t, sinks, auditsink.AnchorConfig{})
	tr.add(t, 7, "x")
	waitFor(t, "7 events acknowledged", func() bool { return m.Status()[0].Cursor.Seq == 7 })
	m.Close()
	tr.add(t, 4, "y")
	cur, err := tr.db.SinkCursors(context.Background())
	if err != nil || cur[sinks[0].ID()].Seq != 7 {
		t.Fatalf("stored cursor %+v, %v; want seq 7", cur, err)
	}
	tr.start(t, sinks, auditsink.AnchorConfig{})
	waitFor(t, "11 events", func() bool { return coll.got.count() == 11 })
	time.Sleep(100 * time.Millisecond)
	coll.got.mu.Lock()
	defer coll.got.mu.Unlock()
	for i, s := range coll.got.seqs {
		if s != uint64(i+1) {
			t.Fatalf("after restart: %v", coll.got.seqs)
		}
	}
}

// A sink that never answers delays nobody: appends keep their speed, and
// the sink's status says what is wrong.
func TestHangingSinkDoesNotBlockAppends(t *testing.T) {
	tr := newTrail(t, 1000)
	release := make(chan struct{})
	defer close(release)
	coll := newCollector(t)
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url(), Timeout: 200 * time.Millisecond}}, auditsink.AnchorConfig{})
	tr.add(t, 1, "first")
	waitFor(t, "the collector to hang on a request", func() bool { coll.mu.Lock(); defer coll.mu.Unlock(); return len(coll.headers) > 0 })
	start := time.Now()
	var worst time.Duration
	for i := 0; i < 300; i++ {
		t0 := time.Now()
		tr.add(t, 1, "while the sink hangs")
		worst = max(worst, time.Since(t0))
	}
	if total := time.Since(start); total > 3*time.Second || worst > 500*time.Millisecond {
		t.Fatalf("300 appends took %v (worst %v) while the sink hung", total, worst)
	}
	waitFor(t, "a timeout in the sink's status", func() bool {
		s := m.Status()[0]
		return strings.Contains(s.LastError, "deadline exceeded") && s.Lag >= 300
	})
	// Close does not wait for the hanging collector either.
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close waited for a hanging sink")
	}
}

// A hostile collector cannot make the shipper read without bound, and its
// answer is kept short, as it is (data: `audit sinks -o json` gives it
// exactly), and escaped where a person reads it.
func TestHugeCollectorResponseIsCapped(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	var sent atomic.Int64
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		chunk := bytes.Repeat([]byte("\x1b[31mNO"), 4096)
		for i := 0; i < 64<<10; i++ { // up to 2 GiB
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url(), Timeout: 5 * time.Second}}, auditsink.AnchorConfig{})
	tr.add(t, 2, "x")
	waitFor(t, "the 503 in the status", func() bool { return strings.Contains(m.Status()[0].LastError, "503") })
	s := m.Status()[0]
	if len(s.LastError) > 400 || !strings.Contains(s.LastError, "\x1b[31mNO") || strings.Contains(safetext.Escape(s.LastError), "\x1b") {
		t.Fatalf("last error not capped, not as the collector wrote it, or not escaped once shown (%d bytes): %q", len(s.LastError), s.LastError)
	}
	m.Close()
	if n := sent.Load(); n > 16<<20 {
		t.Fatalf("the collector wrote %d bytes before the shipper hung up", n)
	}
}

// The file sink writes JSON Lines that `audit verify --file` accepts; each
// rotated file verifies as a range (signature-checked when it holds a head),
// and together they cover every event without gap or duplicate.
func TestFileSinkRotationStaysVerifiable(t *testing.T) {
	tr := newTrail(t, 1000)
	path := filepath.Join(t.TempDir(), "trail", "audit.jsonl")
	sinks := []auditsink.SinkConfig{{Type: "file", Path: path, MaxSize: 64 << 10, MaxFiles: 50, BatchMax: 7}}
	m := tr.start(t, sinks, auditsink.AnchorConfig{})
	pad := strings.Repeat("p", 2000)
	for i := 0; i < 10; i++ {
		tr.add(t, 6, pad)
		h, err := tr.log.SignHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("head %d shipped", h.Seq), func() bool { return m.Status()[0].Cursor.HeadSeq == h.Seq })
	}
	m.Close()
	// A restart resends from the cursor: a lost cursor write must not
	// duplicate lines in the file.
	if err := tr.db.SaveSinkCursor(context.Background(), sinks[0].ID(), auditsink.Cursor{Seq: 50}); err != nil {
		t.Fatal(err)
	}
	m = tr.start(t, sinks, auditsink.AnchorConfig{})
	tr.add(t, 40, pad)
	waitFor(t, "100 events shipped", func() bool { return m.Status()[0].Cursor.Seq == 100 })
	m.Close()

	files, _ := filepath.Glob(path + "*")
	if len(files) < 3 {
		t.Fatalf("expected rotation, got %v", files)
	}
	var ranges [][2]uint64
	signed := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := audit.VerifyJSONL(fh, tr.keys)
		fh.Close()
		if err != nil {
			raw, _ := os.ReadFile(f)
			t.Fatalf("%s does not verify: %v\n%.500s", f, err, raw)
		}
		if rep.Signed {
			signed++
		}
		if fi, _ := os.Stat(f); fi.Size() > 64<<10+8<<10 {
			t.Errorf("%s is %d bytes, over max_size", f, fi.Size())
		}
		ranges = append(ranges, [2]uint64{rep.First, rep.Last})
	}
	if signed == 0 {
		t.Error("no rotated file carries a signed head")
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
	next := uint64(1)
	for _, r := range ranges {
		if r[0] != next {
			t.Fatalf("files cover %v: gap or overlap at %d", ranges, next)
		}
		next = r[1] + 1
	}
	if next != 101 {
		t.Fatalf("files cover %v, want 1..100", ranges)
	}
}

func TestFileSinkKeepsMaxFiles(t *testing.T) {
	tr := newTrail(t, 1000)
	path := filepath.Join(t.TempDir(), "a.jsonl")
	m := tr.start(t, []auditsink.SinkConfig{{Type: "file", Path: path, MaxSize: 64 << 10, MaxFiles: 3}}, auditsink.AnchorConfig{})
	tr.add(t, 150, strings.Repeat("p", 2000))
	waitFor(t, "150 events shipped", func() bool { return m.Status()[0].Cursor.Seq == 150 })
	files, _ := filepath.Glob(path + "*")
	if len(files) != 3 {
		t.Fatalf("max_files 3 kept %v", files)
	}
}

// Heads reach the anchor file, each one a line, and the anchors check
// passes on the untouched trail.
func TestAnchorFileAndCheck(t *testing.T) {
	tr := newTrail(t, 5)
	anchor := filepath.Join(t.TempDir(), "anchors.jsonl")
	m := tr.start(t, nil, auditsink.AnchorConfig{File: anchor})
	for i := 0; i < 4; i++ {
		tr.add(t, 5, "x")
		h, err := tr.log.SignHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := h.Seq
		waitFor(t, fmt.Sprintf("head %d anchored", want), func() bool { return m.Status()[0].Cursor.HeadSeq == want })
	}
	fh, _ := os.Open(anchor)
	heads, err := auditsink.ReadAnchors(fh, tr.keys)
	fh.Close()
	if err != nil || len(heads) < 4 {
		t.Fatalf("anchors: %d heads, %v", len(heads), err)
	}
	st, _ := tr.log.Head(context.Background())
	rep, err := auditsink.CheckAnchors(heads, st, walker(tr, nil))
	if err != nil || rep.Matched != len(heads) || rep.Last != 20 {
		t.Fatalf("untouched trail: %+v, %v", rep, err)
	}
	// The same heads against a trail whose event 12 differs, and against
	// a trail cut at 17: both are caught.
	_, err = auditsink.CheckAnchors(heads, st, walker(tr, map[uint64]string{15: strings.Repeat("a", 64)}))
	var be *audit.BreakError
	if !errors.As(err, &be) || be.Kind != auditsink.BreakOffHost || be.Seq != 15 {
		t.Fatalf("rewritten trail: %v", err)
	}
	cut := st
	cut.Last = audit.Link{Seq: 17}
	_, err = auditsink.CheckAnchors(heads, cut, func(fn func(uint64, string) bool) error {
		return walker(tr, nil)(func(s uint64, h string) bool { return s > 17 || fn(s, h) })
	})
	if !errors.As(err, &be) || be.Seq != 20 || !strings.Contains(err.Error(), "ends at seq 17") {
		t.Fatalf("truncated trail: %v", err)
	}
}

func walker(tr *trail, edit map[uint64]string) func(fn func(uint64, string) bool) error {
	return func(fn func(uint64, string) bool) error {
		return tr.log.Range(context.Background(), 0, func(e audit.Event) bool {
			h := e.Hash
			if x, ok := edit[e.Seq]; ok {
				h = x
			}
			return fn(e.Seq, h)
		})
	}
}

func TestReadAnchorsRejectsGarbage(t *testing.T) {
	tr := newTrail(t, 1000)
	tr.add(t, 3, "x")
	h, err := tr.log.SignHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	good, _ := auditsink.Record{Head: h}.Line()
	forged := *h
	forged.Hash = strings.Repeat("b", 64)
	bad, _ := auditsink.Record{Head: &forged}.Line()
	for name, tc := range map[string]struct {
		in   string
		want string
	}{
		"garbage line":    {string(good) + "\nhello world\n", "line 2: not a signed head"},
		"truncated json":  {string(good[:20]) + "\n", "no signed heads"},
		"unreadable json": {`{"head":[}` + "\n", "line 1: unreadable signed head"},
		"trailing data":   {string(good) + "}\n", "line 1: unreadable signed head"},
		"forged head":     {string(good) + "\n" + string(bad) + "\n", "line 2: head at seq 3"},
		"empty":           {"\n\n", "no signed heads"},
		"escape sequence": {"\x1b[2J\n", `line 1: not a signed head`},
		"huge line":       {strings.Repeat("x", 2<<20), "longer than"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auditsink.ReadAnchors(strings.NewReader(tc.in), tr.keys)
			// Raw: the CLI escapes the error where it prints it.
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(safetext.Escape(err.Error()), "\x1b") {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// A sink's JSON Lines (events and heads) reads as anchors too.
	var b bytes.Buffer
	tr.log.Export(context.Background(), &b)
	heads, err := auditsink.ReadAnchors(&b, tr.keys)
	if err != nil || len(heads) != 1 {
		t.Fatalf("export as anchors: %v %v", heads, err)
	}
}

// splunk_hec wraps each record in an HEC event object whose event is the
// record's JSON line.
func TestHTTPSplunkHECFormat(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	var got received
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		dec := json.NewDecoder(r.Body)
		for dec.More() {
			var ev struct {
				Time       string          `json:"time"`
				Source     string          `json:"source"`
				SourceType string          `json:"sourcetype"`
				Event      json.RawMessage `json:"event"`
			}
			if err := dec.Decode(&ev); err != nil {
				t.Errorf("not HEC JSON: %v", err)
				return
			}
			if ev.Source != "pamctl" || !strings.HasPrefix(ev.SourceType, "pamctl:") || ev.Time == "" {
				t.Errorf("HEC fields: %+v", ev)
			}
			got.line(t, ev.Event)
		}
		w.Write([]byte(`{"text":"Success","code":0}`))
	})
	tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url(), Format: "splunk_hec"}}, auditsink.AnchorConfig{})
	tr.add(t, 6, "x")
	tr.log.SignHead(context.Background())
	waitFor(t, "6 events and a head", func() bool { got.mu.Lock(); defer got.mu.Unlock(); return len(got.seqs) == 6 && len(got.heads) > 0 })
	got.exactlyInOrder(t, "hec", 6)
}

// UDP syslog: one RFC 5424 datagram per event.
func TestSyslogUDP(t *testing.T) {
	tr := newTrail(t, 1000)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got received
	go func() {
		buf := make([]byte, 70000)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			parts := strings.SplitN(string(buf[:n]), " ", 8)
			if len(parts) == 8 && strings.HasPrefix(parts[0], "<110>1") {
				got.line(t, []byte(parts[7]))
			}
		}
	}()
	tr.start(t, []auditsink.SinkConfig{{Type: "syslog", Addr: "udp://" + pc.LocalAddr().String()}}, auditsink.AnchorConfig{})
	tr.add(t, 5, "x")
	tr.log.SignHead(context.Background())
	waitFor(t, "5 datagrams and a head", func() bool { got.mu.Lock(); defer got.mu.Unlock(); return len(got.seqs) == 5 && len(got.heads) > 0 })
	got.exactlyInOrder(t, "udp", 5)
}

func TestAnchorDirectoryMustExist(t *testing.T) {
	_, err := auditsink.NewAnchorTarget(auditsink.AnchorConfig{File: filepath.Join(t.TempDir(), "missing", "heads.jsonl")})
	if err == nil || !strings.Contains(err.Error(), "directory does not exist") {
		t.Fatalf("got %v", err)
	}
}

// flakyCursors loses the first cursor writes after a delivery, as a crash
// between the delivery and the cursor write would.
type flakyCursors struct {
	auditsink.CursorStore
	mu    sync.Mutex
	fails int
}

func (f *flakyCursors) SaveSinkCursor(ctx context.Context, name string, c auditsink.Cursor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return errors.New("disk full")
	}
	return f.CursorStore.SaveSinkCursor(ctx, name, c)
}

// At least once: a batch whose cursor was not recorded is sent again. The
// HTTP collector sees that batch twice, in order; the file sink skips what
// it already holds, so its file still verifies.
func TestLostCursorWriteResendsTheBatch(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	path := filepath.Join(t.TempDir(), "t.jsonl")
	tr.add(t, 10, "x")
	cursors := &flakyCursors{CursorStore: tr.db, fails: 2}
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: cursors,
		Sinks: []auditsink.SinkConfig{{Type: "http", URL: coll.url(), BatchMax: 4}, {Type: "file", Path: path, BatchMax: 4}},
		Poll:  20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, "both sinks caught up", func() bool {
		st := m.Status()
		return st[0].Cursor.Seq == 10 && st[1].Cursor.Seq == 10
	})
	coll.got.mu.Lock()
	seqs := append([]uint64(nil), coll.got.seqs...)
	coll.got.mu.Unlock()
	var deduped []uint64
	for _, s := range seqs {
		if n := len(deduped); n > 0 && s <= deduped[n-1] {
			continue // a resent batch
		}
		deduped = append(deduped, s)
	}
	if len(seqs) <= 10 || len(deduped) != 10 || deduped[0] != 1 || deduped[9] != 10 {
		t.Fatalf("http received %v: want 1..10 with the unrecorded batch resent", seqs)
	}
	fh, _ := os.Open(path)
	defer fh.Close()
	rep, err := audit.VerifyJSONL(fh, tr.keys)
	if err != nil || rep.First != 1 || rep.Last != 10 {
		t.Fatalf("file sink after a resend: %+v %v", rep, err)
	}
}

// A URL anchor receives each head as one POSTed {"head":{...}} object, and
// a refusal is retried.
func TestAnchorURL(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	var refused atomic.Int32
	var got received
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if refused.Add(1) == 1 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		got.line(t, bytes.TrimSpace(b.Bytes()))
	})
	m := tr.start(t, nil, auditsink.AnchorConfig{URL: coll.url()})
	tr.add(t, 3, "x")
	h, _ := tr.log.SignHead(context.Background())
	waitFor(t, "the head anchored", func() bool { return m.Status()[0].Cursor.HeadSeq == h.Seq })
	got.mu.Lock()
	defer got.mu.Unlock()
	if len(got.heads) != 1 || got.heads[0].Hash != h.Hash || len(got.seqs) != 0 || refused.Load() < 2 {
		t.Fatalf("anchor URL got heads %v, events %v after %d tries", got.heads, got.seqs, refused.Load())
	}
}

// TLS is verified: a syslog server whose certificate the configured CA did
// not issue gets nothing, and the status says why.
func TestSyslogTLSRefusesAnUntrustedServer(t *testing.T) {
	tr := newTrail(t, 1000)
	serverTLS, _ := testCA(t)
	_, otherCA := testCA(t)
	srv := newSyslogServer(t, serverTLS)
	m := tr.start(t, []auditsink.SinkConfig{{Type: "syslog", Addr: "tcp+tls://" + srv.addr, CAFile: otherCA}}, auditsink.AnchorConfig{})
	tr.add(t, 3, "x")
	waitFor(t, "a TLS error", func() bool { return strings.Contains(m.Status()[0].LastError, "TLS handshake") })
	if srv.got.count() != 0 || m.Status()[0].Cursor.Seq != 0 {
		t.Fatalf("events reached an untrusted server: %d", srv.got.count())
	}
}

// A collector's redirect is not followed: the body and its credentials
// would go to another host.
func TestHTTPRedirectNotFollowed(t *testing.T) {
	tr := newTrail(t, 1000)
	other := newCollector(t)
	coll := newCollector(t)
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.url(), http.StatusTemporaryRedirect)
	})
	hdrs := filepath.Join(t.TempDir(), "h")
	os.WriteFile(hdrs, []byte("Authorization: Bearer s3cret\n"), 0o600)
	m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: coll.url(), HeadersFile: hdrs}}, auditsink.AnchorConfig{})
	tr.add(t, 2, "x")
	waitFor(t, "the redirect refused", func() bool { return strings.Contains(m.Status()[0].LastError, "307") })
	other.mu.Lock()
	defer other.mu.Unlock()
	if len(other.headers) != 0 {
		t.Fatal("the redirect was followed")
	}
}
