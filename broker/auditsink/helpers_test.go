package auditsink_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/tlsconf/tlstest"
	"github.com/pamctl/pamctl/store"
)

// trail is a real bbolt audit log signed by a test key.
type trail struct {
	db   *store.DB
	log  *store.AuditLog
	keys audit.KeyFunc
}

func newTrail(t *testing.T, headEvery int) *trail {
	t.Helper()
	db, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if rk, err := store.NewRecordKey(make([]byte, 32)); err == nil {
		db.SetRecordKey(rk)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	lg, err := db.AuditLog(store.AuditOptions{Signer: audit.Ed25519Signer{KID: "k1", Key: priv}, HeadEvery: headEvery, HeadInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close(); db.Close() })
	return &trail{db: db, log: lg, keys: audit.Keys(map[string]ed25519.PublicKey{"k1": pub})}
}

func (tr *trail) add(t *testing.T, n int, prompt string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := tr.log.Append(context.Background(), &audit.Event{Type: audit.TypeProxyCall, Model: "gpt-4o", Prompt: prompt, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
}

func (tr *trail) start(t *testing.T, sinks []auditsink.SinkConfig, anchor auditsink.AnchorConfig) *auditsink.Manager {
	t.Helper()
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db, Sinks: sinks, Anchor: anchor,
		Poll: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// received is what a collector got: event seqs and heads, in arrival order.
type received struct {
	mu     sync.Mutex
	seqs   []uint64
	hashes map[uint64]string
	heads  []audit.SignedHead
	raw    []string
}

func (r *received) line(t *testing.T, line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hashes == nil {
		r.hashes = map[uint64]string{}
	}
	r.raw = append(r.raw, string(line))
	if strings.HasPrefix(string(line), `{"head":`) {
		var hl struct{ Head audit.SignedHead }
		if err := json.Unmarshal(line, &hl); err != nil {
			t.Errorf("bad head line %s: %v", line, err)
		}
		r.heads = append(r.heads, hl.Head)
		return
	}
	var e audit.Event
	if err := json.Unmarshal(line, &e); err != nil {
		t.Errorf("bad event line %s: %v", line, err)
		return
	}
	r.seqs = append(r.seqs, e.Seq)
	r.hashes[e.Seq] = e.Hash
}

// lines is a copy of every line received so far (a syslog receiver may
// still be reading a head after the events were counted).
func (r *received) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.raw...)
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

func (r *received) headCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.heads)
}

// exactlyInOrder checks seqs 1..n arrived once each, in order, and every
// head matches an event received before it.
func (r *received) exactlyInOrder(t *testing.T, name string, n int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seqs) != n {
		t.Errorf("%s: got %d events, want %d: %v", name, len(r.seqs), n, r.seqs)
	}
	for i, s := range r.seqs {
		if s != uint64(i+1) {
			t.Errorf("%s: event %d has seq %d (gap, duplicate or reorder): %v", name, i, s, r.seqs)
			break
		}
	}
	if len(r.heads) == 0 {
		t.Errorf("%s: no signed head delivered", name)
	}
	for _, h := range r.heads {
		if r.hashes[h.Seq] != h.Hash {
			t.Errorf("%s: head at seq %d has hash %s, the event received has %s", name, h.Seq, h.Hash, r.hashes[h.Seq])
		}
	}
}

// statusOf is set by tests whose waits should print the sinks' status
// when they time out.
var statusOf func() any

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			if statusOf != nil {
				t.Fatalf("timed out waiting for %s; status: %+v", what, statusOf())
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syslogServer is an RFC 5424 receiver with octet-counted framing over TCP
// (optionally TLS) that can be stopped and restarted on the same port.
type syslogServer struct {
	t    *testing.T
	addr string
	tls  *tls.Config
	got  received
	msgs []string // whole messages, for header checks

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newSyslogServer(t *testing.T, tc *tls.Config) *syslogServer {
	s := &syslogServer{t: t, tls: tc, addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *syslogServer) start() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old port may linger a moment
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.mu.Lock()
	s.ln, s.addr, s.conns = ln, ln.Addr().String(), map[net.Conn]bool{}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.ln != ln {
				// stop ran between Accept and here: it closed the
				// connections it knew, so this one is closed too.
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
}

func (s *syslogServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
		if err != nil || n <= 0 || n > 1<<20 {
			s.t.Errorf("syslog: bad octet count %q", lenStr)
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		// <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG
		parts := strings.SplitN(string(msg), " ", 8)
		if len(parts) != 8 || !strings.HasPrefix(parts[0], "<110>1") || parts[3] != "pamctl" || parts[6] != "-" {
			s.t.Errorf("syslog: not an RFC 5424 message from pamctl: %q", msg)
			return
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[1]); err != nil {
			s.t.Errorf("syslog: bad timestamp %q", parts[1])
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, string(msg))
		s.mu.Unlock()
		s.got.line(s.t, []byte(parts[7]))
	}
}

func (s *syslogServer) stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// collector is an HTTP JSON Lines receiver that can be stopped and
// restarted on the same port.
type collector struct {
	t       *testing.T
	addr    string
	srv     *http.Server
	got     received
	headers []http.Header
	mu      sync.Mutex
	handler http.HandlerFunc // overrides the default when set
}

func newCollector(t *testing.T) *collector {
	c := &collector{t: t, addr: "127.0.0.1:0"}
	c.start()
	t.Cleanup(c.stop)
	return c
}

func (c *collector) url() string { return "http://" + c.addr + "/ingest?token=querysecret" }

func (c *collector) start() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", c.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		h := c.handler
		c.headers = append(c.headers, r.Header.Clone())
		c.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			c.got.line(c.t, sc.Bytes())
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go c.srv.Serve(ln)
}

func (c *collector) setHandler(h http.HandlerFunc) {
	c.mu.Lock()
	c.handler = h
	c.mu.Unlock()
}

// stop shuts the collector down gracefully: requests in flight are
// answered, as a collector that is stopped (not crashed) does. A crash
// mid-request would make the batch go again (at least once).
func (c *collector) stop() {
	if c.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.srv.Shutdown(ctx)
		cancel()
		c.srv.Close()
		c.srv = nil
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1; it returns the
// server's TLS config and the CA file.
func testCA(t *testing.T) (*tls.Config, string) {
	t.Helper()
	ca := tlstest.NewCA(t, "pamctl test CA")
	pair, err := tls.X509KeyPair(ca.Issue(t, "siem", time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}, ca.WriteFile(t, t.TempDir(), "ca")
}
