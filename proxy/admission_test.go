package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/mask"
)

// pending is a request whose body the test sends when it likes.
type pending struct {
	w    *io.PipeWriter
	done chan struct{}
	res  *http.Response
	body []byte
	err  error
	took time.Duration
}

// start sends a request whose body comes from a pipe; size >= 0 sets its
// Content-Length, -1 sends it chunked.
func (h *harness) start(tok string, size int64) *pending {
	h.t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", pr)
	if err != nil {
		h.t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	p := &pending{w: pw, done: make(chan struct{})}
	h.t.Cleanup(func() { pw.Close() })
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		t0 := time.Now()
		p.res, p.err = client.Do(req)
		if p.err == nil {
			p.body, _ = io.ReadAll(p.res.Body)
			p.res.Body.Close()
			h.remember(p.body)
		}
		p.took = time.Since(t0)
	}()
	return p
}

// wait returns the answer, failing the test if none came within d.
func (p *pending) wait(t *testing.T, d time.Duration) (*http.Response, []byte) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("no answer within %s", d)
	}
	if p.err != nil {
		t.Fatalf("request failed: %v", p.err)
	}
	return p.res, p.body
}

// TestLimitsApplyBeforeTheBody: a grant over its rate is refused on its
// headers alone, while its body has not even started to arrive.
func TestLimitsApplyBeforeTheBody(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o", req: "req_rpm1", limits: &token.Limits{RPM: 1}})
	if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		t.Fatalf("first call: %d %s", res.StatusCode, b)
	}
	for _, size := range []int64{8 << 20, -1} {
		p := h.start(tok, size) // the body never comes
		res, b := p.wait(t, 3*time.Second)
		if res.StatusCode != 429 || apiErr(t, b).Code != CodeRateLimitExceeded {
			t.Fatalf("size %d: %d %s", size, res.StatusCode, b)
		}
	}
	// The first call's reservation is returned when its handler ends,
	// which may be just after its client saw the answer.
	waitFor(t, "the budget released", func() bool { return h.proxy.inflight.inUse() == 0 })
	if got := h.proxy.inflight.inUse(); got != 0 {
		t.Fatalf("%d body bytes still reserved", got)
	}
	// A token budget spent is refused before the body too.
	spent := h.mint(grant{scope: "model:gpt-4o", req: "req_spent", limits: &token.Limits{Tokens: 1}})
	if res, _ := h.do("POST", "/v1/chat/completions", spent, chatBody); res.StatusCode != 200 {
		t.Fatal("first call under budget refused")
	}
	res, b := h.start(spent, -1).wait(t, 3*time.Second)
	if res.StatusCode != 429 || apiErr(t, b).Code != CodeTokenBudgetExceeded {
		t.Fatalf("spent budget: %d %s", res.StatusCode, b)
	}
	// So is a call without a valid token.
	res, b = h.start("not-a-token", 8<<20).wait(t, 3*time.Second)
	if res.StatusCode != 401 {
		t.Fatalf("bad token: %d %s", res.StatusCode, b)
	}
}

// TestInflightBodyBudget: bodies held by calls in flight draw on one
// budget; a call that cannot reserve its Content-Length is refused at once
// with 503, one grant cannot take more than half of it (429), and the
// budget comes back when calls end.
func TestInflightBodyBudget(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBody = 1 << 10; o.MaxInflight = 3 << 10 }) // per grant: 1.5 KiB
	tok, tok2, tok3 := h.mint(grant{scope: "model:gpt-4o", req: "req_one"}), h.mint(grant{scope: "model:gpt-4o"}), h.mint(grant{scope: "model:gpt-4o"})
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 1024-60) + `"}]}`
	a, b := h.start(tok, int64(len(body))), h.start(tok2, int64(len(body)))
	want := 2 * int64(len(body)+1)
	waitFor(t, "two bodies reserved", func() bool { return h.proxy.inflight.inUse() == want })

	// The same grant again: over its share, though the proxy has room.
	res, out := h.start(tok, int64(len(body))).wait(t, 3*time.Second)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("a second body of one grant: %d %s", res.StatusCode, out)
	}
	if e := apiErr(t, out); e.Code != CodeTooManyBodies || !strings.Contains(e.Message, "req_one") {
		t.Fatalf("error %+v", e)
	}
	// A third grant: the proxy's budget is spent.
	res, out = h.start(tok3, int64(len(body))).wait(t, 3*time.Second)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third body: %d %s", res.StatusCode, out)
	}
	if e := apiErr(t, out); e.Code != CodeProxyBusy || !strings.Contains(e.Message, "max_inflight_bytes") {
		t.Fatalf("error %+v", e)
	}
	if ev := h.sink.last(t); ev.Status != 503 || !strings.Contains(ev.Error, CodeProxyBusy) {
		t.Fatalf("audit event %+v", ev)
	}
	for _, p := range []*pending{a, b} {
		go func() { _, _ = io.WriteString(p.w, body); p.w.Close() }()
		if res, out := p.wait(t, 5*time.Second); res.StatusCode != 200 {
			t.Fatalf("held call: %d %s", res.StatusCode, out)
		}
	}
	waitFor(t, "the budget released", func() bool { return h.proxy.inflight.inUse() == 0 })
	if res, out := h.do("POST", "/v1/chat/completions", tok, body); res.StatusCode != 200 {
		t.Fatalf("after release: %d %s", res.StatusCode, out)
	}
}

// TestInflightBudgetChunked: a chunked body reserves as it grows, and is
// refused when the budget runs out part way.
func TestInflightBudgetChunked(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBody = 256 << 10; o.MaxInflight = 300 << 10 })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("b", 200<<10) + `"}]}`

	// Alone, the chunked body fits.
	p := h.start(tok, -1)
	go func() { _, _ = io.WriteString(p.w, big); p.w.Close() }()
	if res, out := p.wait(t, 5*time.Second); res.StatusCode != 200 {
		t.Fatalf("alone: %d %s", res.StatusCode, out[:min(len(out), 300)])
	}
	// Beside another grant's call holding 100 KiB it does not: it gets 503
	// once its buffer must grow past what is left.
	holder := h.start(h.mint(grant{scope: "model:gpt-4o"}), 100<<10)
	waitFor(t, "the holder's reservation", func() bool { return h.proxy.inflight.inUse() == 100<<10+1 })
	p = h.start(tok, -1)
	go func() { _, _ = io.WriteString(p.w, big); p.w.Close() }()
	res, out := p.wait(t, 5*time.Second)
	if res.StatusCode != 503 || apiErr(t, out).Code != CodeProxyBusy {
		t.Fatalf("beside the holder: %d %s", res.StatusCode, out[:min(len(out), 300)])
	}
	holder.w.CloseWithError(io.ErrUnexpectedEOF)
	waitFor(t, "the budget released", func() bool { return h.proxy.inflight.inUse() == 0 })
}

// TestBodyTimeout: a body that stalls gets 408 in OpenAI's shape, never an
// answer from upstream.
func TestBodyTimeout(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BodyTimeout = 300 * time.Millisecond })
	tok := h.mint(grant{scope: "model:gpt-4o", req: "req_slow"})
	for _, size := range []int64{int64(len(chatBody)), -1} {
		p := h.start(tok, size)
		go func() { _, _ = io.WriteString(p.w, chatBody[:10]) }() // then nothing
		res, b := p.wait(t, 5*time.Second)
		if res.StatusCode != 408 {
			t.Fatalf("size %d: %d %s", size, res.StatusCode, b)
		}
		if e := apiErr(t, b); e.Code != CodeBodyTimeout || !strings.Contains(e.Message, "300ms") {
			t.Fatalf("error %+v", e)
		}
		if p.took > 3*time.Second {
			t.Fatalf("the 408 took %s", p.took)
		}
		if ev := h.sink.last(t); ev.Status != 408 || ev.Grant != "req_slow" {
			t.Fatalf("audit event %+v", ev)
		}
	}
	if h.up.count() != 0 {
		t.Fatal("a call whose body never arrived reached the upstream")
	}
	// A body sent in time, in pieces, is fine; so is a stream that runs
	// longer than the body timeout.
	p := h.start(tok, -1)
	go func() {
		_, _ = io.WriteString(p.w, chatBody[:10])
		time.Sleep(100 * time.Millisecond)
		_, _ = io.WriteString(p.w, chatBody[10:])
		p.w.Close()
	}()
	if res, b := p.wait(t, 5*time.Second); res.StatusCode != 200 {
		t.Fatalf("slow but in time: %d %s", res.StatusCode, b)
	}
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		writeChatStream(w, "gpt-4o", true, func() bool { time.Sleep(600 * time.Millisecond); return true })
	})
	res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","stream":true,"messages":[]}`)
	if res.StatusCode != 200 || !strings.Contains(string(b), " world") || !strings.Contains(string(b), "[DONE]") {
		t.Fatalf("a stream outliving the body timeout: %d %s", res.StatusCode, b)
	}
}

// slowBody yields n bytes of a chat request, holding back the last two
// until gate closes (or stop does: then the body fails).
type slowBody struct {
	head, tail string
	fill       int
	gate       <-chan struct{}
	off        int

	stop    chan struct{} // closed by the client once its call is answered early (refused)
	waiting atomic.Bool   // Read reached the last two bytes
	closed  atomic.Bool   // the transport is done with the body
}

var errStopped = errors.New("slowBody: stopped")

func (s *slowBody) Read(p []byte) (int, error) {
	total := len(s.head) + s.fill + len(s.tail)
	if s.off >= total {
		return 0, io.EOF
	}
	if s.off == total-2 {
		s.waiting.Store(true)
		select {
		case <-s.gate:
		case <-s.stop:
			return 0, errStopped
		}
	}
	end := total
	if s.off < total-2 {
		end = total - 2
	}
	var n int
	switch {
	case s.off < len(s.head):
		n = copy(p, s.head[s.off:])
	case s.off < len(s.head)+s.fill:
		n = copy(p[:min(len(p), len(s.head)+s.fill-s.off)], xs)
	default:
		n = copy(p[:min(len(p), end-s.off)], s.tail[s.off-len(s.head)-s.fill:])
	}
	s.off += n
	return n, nil
}

// Close is the transport saying it has finished writing the body (or
// given up): its copy buffers are back in their pool by then.
func (s *slowBody) Close() error {
	s.closed.Store(true)
	return nil
}

var xs = strings.Repeat("x", 64<<10)

// TestConcurrentMaxBodiesStayWithinBudget: 64 clients (four tokens, 16
// each) each sending a maximum-size body hold at most MaxInflight bytes of
// bodies on the heap (the rest are refused at once: 429 past a grant's half
// share, 503 past the whole), where the old proxy held all 64.
func TestConcurrentMaxBodiesStayWithinBudget(t *testing.T) {
	const maxBody = 1 << 20
	h := newHarness(t, func(o *Options) { o.MaxBody = maxBody; o.BodyTimeout = 5 * time.Minute }) // MaxInflight: 8 × MaxBody
	var toks []string
	for range 4 {
		toks = append(toks, h.mint(grant{scope: "model:gpt-4o"}))
	}
	head, tail := `{"model":"gpt-4o","messages":[{"role":"user","content":"`, `"}]}`
	size := maxBody - 64
	gate := make(chan struct{})
	var open sync.Once
	defer open.Do(func() { close(gate) })
	runtime.GC()
	runtime.GC() // as below: what a sync.Pool holds is gone
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const clients = 64
	refused := func() int64 {
		n := int64(0)
		for _, e := range h.sink.ofType(audit.TypeProxyCall) {
			if e.Status == 503 || e.Status == 429 {
				n++
			}
		}
		return n
	}
	var wg sync.WaitGroup
	statuses := make([]int, clients)
	bodies := make([]*slowBody, clients)
	tr := &http.Transport{MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	for i := range clients {
		bodies[i] = &slowBody{head: head, tail: tail, fill: size - len(head) - len(tail), gate: gate, stop: make(chan struct{})}
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bodies[i]
			req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", body)
			req.ContentLength = int64(size)
			req.Header.Set("Authorization", "Bearer "+toks[i%len(toks)])
			res, err := (&http.Client{Transport: tr}).Do(req)
			// Answered: a refused call's body need not be sent on (the
			// transport may still be writing it, into a connection the
			// proxy no longer reads).
			close(body.stop)
			if err != nil {
				statuses[i] = -1
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			statuses[i] = res.StatusCode
		}()
	}
	admitted := int64(DefaultInflightBodies)
	for deadline := time.Now().Add(60 * time.Second); refused() != clients-admitted || h.proxy.inflight.inUse() != admitted*int64(size+1); {
		if time.Now().After(deadline) {
			t.Fatalf("%d refused and %d bytes reserved; want %d and %d", refused(), h.proxy.inflight.inUse(), clients-admitted, admitted*int64(size+1))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Wait for the admitted bodies to arrive (all but their last two
	// bytes), and for the transport to be done with the refused ones: the
	// heap is then the proxy's bodies plus what the 64 test clients hold
	// for the admitted calls only, not the copy buffers (64 KiB a client)
	// of refused calls still being written.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		waiting, closed := 0, 0
		for _, b := range bodies {
			if b.closed.Load() {
				closed++
			} else if b.waiting.Load() {
				waiting++
			}
		}
		if waiting == int(admitted) && closed == clients-int(admitted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bodies wait at the gate and %d are done; want %d and %d", waiting, closed, admitted, clients-admitted)
		}
	}
	// Twice: a buffer put back in a sync.Pool lives through one collection.
	runtime.GC()
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	held := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	budget := 2 * DefaultInflightBodies * int64(maxBody)
	t.Logf("heap held by %d concurrent %d-byte bodies: %.1f MiB (budget %.1f MiB)", clients, size, float64(held)/(1<<20), float64(budget)/(1<<20))
	if held > budget {
		t.Fatalf("%d concurrent bodies hold %d bytes of heap; the budget is %d", clients, held, budget)
	}
	open.Do(func() { close(gate) })
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		}
	}
	if int64(ok) != admitted {
		t.Fatalf("%d calls succeeded, want the %d admitted: %v", ok, admitted, statuses)
	}
}

// TestHostHeader: with allowed hosts set, a Host the proxy does not serve
// is refused before anything else (DNS rebinding), in OpenAI's shape.
func TestHostHeader(t *testing.T) {
	var opts *Options
	h := newHarness(t, func(o *Options) { opts = o })
	_, port, _ := strings.Cut(strings.TrimPrefix(h.srv.URL, "http://"), ":")
	opts.AllowedHosts = []string{"localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port, "pam.example.com"}
	p, err := New(*opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.Config.Handler, h.proxy = p, p
	tok := h.mint(grant{scope: "model:gpt-4o"})
	do := func(host string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(chatBody))
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		h.remember(b)
		return res, b
	}
	for _, host := range []string{"127.0.0.1:" + port, "LOCALHOST:" + port, "[::1]:" + port, "pam.example.com", "pam.example.com:443"} {
		if res, b := do(host); res.StatusCode != 200 {
			t.Fatalf("host %s: %d %s", host, res.StatusCode, b)
		}
	}
	before := h.up.count()
	for _, host := range []string{"attacker.example:" + port, "localhost:1", "127.0.0.1", "127.0.0.1.nip.io:" + port, "pam.example.com.evil", "pam.example.com:443.evil"} {
		res, b := do(host)
		if res.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf("host %s: %d %s", host, res.StatusCode, b)
		}
		if e := apiErr(t, b); e.Code != CodeHostNotAllowed || !strings.Contains(e.Message, "proxy.hostnames") {
			t.Fatalf("error %+v", e)
		}
	}
	if h.up.count() != before {
		t.Fatal("a call to a foreign host reached the upstream")
	}
	p.refused.flush()
	if ev := h.sink.ofType(audit.TypeProxyRefused); len(ev) != 1 || ev[0].Details["count"] != "6" || ev[0].Details["codes"] != CodeHostNotAllowed+"=6" {
		t.Fatalf("refusals %+v", ev)
	}
	if _, err := newHostSet([]string{"http://x"}, false); err == nil {
		t.Fatal("a URL was accepted as a host name")
	}
	// AllowIPHosts accepts addresses, never names.
	hs, _ := newHostSet([]string{"pam.example.com"}, true)
	for host, want := range map[string]bool{"10.0.0.5:8701": true, "[fe80::1]:1": true, "127.0.0.1": true, "pam.example.com": true,
		"10.0.0.5.nip.io:8701": false, "localhost:8701": false, "attacker.example": false} {
		if hs.allows(host) != want {
			t.Errorf("AllowIPHosts: host %s allowed %v, want %v", host, !want, want)
		}
	}
}

// TestEventFieldsAreCapped: nothing a client sends makes an audit event
// large: the user agent, path, request id, model and error are bounded.
func TestEventFieldsAreCapped(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/*"})
	long := strings.Repeat("A", 64<<10)
	h.do("POST", "/v1/chat/completions", tok, `{"model":"`+long+`","messages":[]}`, "User-Agent", long, "X-Request-Id", long[:128])
	h.do("POST", "/v1/"+long, tok, chatBody, "User-Agent", long)
	h.do("GET", "/"+long, tok, "", "User-Agent", long)
	for _, ev := range h.sink.all() {
		j, _ := json.Marshal(ev)
		if len(j) > 8<<10 {
			t.Fatalf("a %d-byte %s event (status %d): %.300s", len(j), ev.Type, ev.Status, j)
		}
	}
	if n := len(h.sink.ofType(audit.TypeProxyCall)); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
	// capEvent bounds every field, whatever builds the event.
	e := &audit.Event{Type: audit.TypeProxyCall, Model: long, Endpoint: long, Target: long, Error: long, Reasons: make([]string, 100),
		Actor:   &audit.Actor{Subject: long, Groups: []string{long}},
		Client:  &audit.Client{RemoteAddr: long, UserAgent: long},
		Details: map[string]string{"request_id": long, "span": long, long: "x"}}
	groups := e.Actor.Groups
	capEvent(e)
	if j, _ := json.Marshal(e); len(j) > maxSpanBytes+6<<10 {
		t.Fatalf("capped event is %d bytes", len(j))
	}
	if len(groups[0]) != len(long) {
		t.Fatal("capEvent changed the token's groups slice in place")
	}
}

// TestUnauthenticatedFloodIsCounted: calls without a valid token leave one
// event per source and window, however many there are, and a flood from
// many sources tracks a bounded number of them.
func TestUnauthenticatedFloodIsCounted(t *testing.T) {
	h := newHarness(t)
	for i := range 300 {
		h.do("POST", "/v1/chat/completions", fmt.Sprintf("bogus-%d", i), chatBody, "User-Agent", "flood/1.0")
	}
	if n := len(h.sink.all()); n != 0 {
		t.Fatalf("%d events before the window ended", n)
	}
	h.proxy.refused.flush()
	all := h.sink.all()
	if len(all) != 1 || all[0].Type != audit.TypeProxyRefused || all[0].Details["count"] != "300" ||
		all[0].Client.UserAgent != "flood/1.0" || all[0].Endpoint != "POST /v1/chat/completions" {
		t.Fatalf("events %+v", all)
	}
	if !strings.Contains(h.logs.String(), "calls refused before authentication") {
		t.Fatal("the window's refusals were not logged")
	}

}

// TestTraceIngestIsGated: storing traces needs traces:write, counts
// against the grant's rate, is bounded per call and per span, and masks
// every field it keeps.
func TestTraceIngestIsGated(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		m, err := mask.New(mask.Config{Default: mask.ActionMask})
		if err != nil {
			t.Fatal(err)
		}
		o.ResponseMask = m
	})
	batch := `{"data":[{"object":"trace","id":"trace_bob@example.com","workflow_name":"Refund for bob@example.com","group_id":"thread-bob@example.com",
		"metadata":null},{"object":"trace.span","id":"span_1","trace_id":"trace_bob@example.com","parent_id":"carol@example.com",
		"span_data":{"type":"function","name":"email dave@example.com","model":"eve@example.com"},"error":null}]}`
	noScope := h.mint(grant{scope: "model:gpt-4o"})
	res, b := h.do("POST", "/v1/traces/ingest", noScope, batch)
	if res.StatusCode != 403 || apiErr(t, b).Code != CodeTracesNotInScope || !strings.Contains(apiErr(t, b).Message, "traces:write") {
		t.Fatalf("without traces:write: %d %s", res.StatusCode, b)
	}
	tok := h.mint(grant{scope: "traces:write", limits: &token.Limits{RPM: 2}})
	if res, b := h.do("POST", "/v1/traces/ingest", tok, batch); res.StatusCode != 204 {
		t.Fatalf("ingest: %d %s", res.StatusCode, b)
	}
	spans := h.sink.ofType(audit.TypeTraceSpan)
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	j, _ := json.Marshal(spans)
	for _, who := range []string{"bob@", "carol@", "dave@", "eve@"} {
		if strings.Contains(string(j), who) {
			t.Fatalf("%s reached the trail unmasked: %s", who, j)
		}
	}
	many := `{"data":[` + strings.TrimSuffix(strings.Repeat(`{"object":"trace.span","id":"s"},`, maxSpans+1), ",") + `]}`
	res, b = h.do("POST", "/v1/traces/ingest", tok, many)
	if res.StatusCode != 400 || apiErr(t, b).Code != CodeTooManySpans {
		t.Fatalf("%d spans: %d %s", maxSpans+1, res.StatusCode, b)
	}
	if n := len(h.sink.ofType(audit.TypeTraceSpan)); n != 2 {
		t.Fatalf("a refused batch stored spans: %d", n)
	}
	res, b = h.do("POST", "/v1/traces/ingest", tok, batch)
	if res.StatusCode != 429 || apiErr(t, b).Code != CodeRateLimitExceeded {
		t.Fatalf("third ingest in a minute: %d %s", res.StatusCode, b)
	}
	// A huge span is kept cut, with its size noted.
	h.clock.Advance(time.Minute)
	huge := `{"data":[{"object":"trace.span","id":"big","span_data":{"type":"custom","data":"` + strings.Repeat("z", 3*maxSpanBytes) + `"}}]}`
	if res, b := h.do("POST", "/v1/traces/ingest", tok, huge); res.StatusCode != 204 {
		t.Fatalf("huge span: %d %s", res.StatusCode, b)
	}
	last := h.sink.ofType(audit.TypeTraceSpan)
	if ev := last[len(last)-1]; len(ev.Details["span"]) > maxSpanBytes || ev.Details["span_truncated"] == "" {
		t.Fatalf("huge span kept %d bytes", len(ev.Details["span"]))
	}
}

// memCounters is a CounterStore in memory, shared by two proxies the way
// the bbolt file is shared by a proxy and its restarted self.
type memCounters struct {
	mu sync.Mutex
	m  map[string]GrantUsage
}

func (s *memCounters) Load(_ context.Context, grant string) (GrantUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[grant], nil
}

func (s *memCounters) Add(grant string, d UsageDelta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.m[grant]
	u.Tokens += d.Tokens
	if d.Requests > 0 {
		m := d.At.Truncate(time.Minute)
		if m.Equal(u.Minute) {
			u.Requests += d.Requests
		} else {
			u.Minute, u.Requests = m, d.Requests
		}
	}
	s.m[grant] = u
}

// TestLimitsSurviveRestart: a restarted proxy remembers what each grant
// spent: neither a fresh budget nor a fresh minute.
func TestLimitsSurviveRestart(t *testing.T) {
	cs := &memCounters{m: map[string]GrantUsage{}}
	var opts *Options
	h := newHarness(t, func(o *Options) { o.Counters = cs; opts = o })
	budget := h.mint(grant{scope: "model:gpt-4o", req: "req_b", limits: &token.Limits{Tokens: 20}})
	rpm := h.mint(grant{scope: "model:gpt-4o", req: "req_r", limits: &token.Limits{RPM: 3}})
	for _, tok := range []string{budget, budget, rpm, rpm, rpm} {
		if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
			t.Fatalf("before restart: %d %s", res.StatusCode, b)
		}
	}
	restart := func() {
		p, err := New(*opts)
		if err != nil {
			t.Fatal(err)
		}
		h.srv.Config.Handler, h.proxy = p, p
	}
	restart()
	res, b := h.do("POST", "/v1/chat/completions", budget, chatBody)
	if res.StatusCode != 429 || apiErr(t, b).Code != CodeTokenBudgetExceeded || !strings.Contains(apiErr(t, b).Message, "24 of its 20") {
		t.Fatalf("spent budget after restart: %d %s", res.StatusCode, b)
	}
	res, b = h.do("POST", "/v1/chat/completions", rpm, chatBody)
	if res.StatusCode != 429 || apiErr(t, b).Code != CodeRateLimitExceeded {
		t.Fatalf("spent minute after restart: %d %s", res.StatusCode, b)
	}
	// The bucket refills at its rate from the stored minute's end.
	h.clock.Advance(time.Minute + 20*time.Second)
	restart()
	if res, b := h.do("POST", "/v1/chat/completions", rpm, chatBody); res.StatusCode != 200 {
		t.Fatalf("next minute: %d %s", res.StatusCode, b)
	}
}

// TestLimitsFailClosedWithoutCounters: when the counters cannot be read
// the call is refused, not waved through with fresh limits.
func TestLimitsFailClosedWithoutCounters(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Counters = brokenCounters{} })
	tok := h.mint(grant{scope: "model:gpt-4o", limits: &token.Limits{RPM: 10}})
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 503 || apiErr(t, b).Code != CodeLimitsUnavailable {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	if h.up.count() != 0 {
		t.Fatal("the call went upstream")
	}
	// A grant without limits needs no counters.
	if res, _ := h.do("POST", "/v1/chat/completions", h.mint(grant{scope: "model:gpt-4o"}), chatBody); res.StatusCode != 200 {
		t.Fatalf("no limits: %d", res.StatusCode)
	}
}

type brokenCounters struct{}

func (brokenCounters) Load(context.Context, string) (GrantUsage, error) {
	return GrantUsage{}, fmt.Errorf("disk on fire")
}
func (brokenCounters) Add(string, UsageDelta) {}

// TestStreamReleasesItsBodyBudget: once the upstream answers, the request
// body is gone, so a stream that runs on holds none of the in-flight budget.
func TestStreamReleasesItsBodyBudget(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o", req: "req_stream_budget"})
	started, finish := make(chan struct{}), make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(finish) }) }
	t.Cleanup(end) // before the servers close, so a failed test does not hang
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n")
		w.(http.Flusher).Flush()
		close(started)
		<-finish
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("x", 64<<10) + `"}]}`
	p := h.start(tok, int64(len(body)))
	go func() { io.WriteString(p.w, body); p.w.Close() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream never started")
	}
	// The proxy may still be between the upstream's headers and its
	// ModifyResponse; give it a moment, then the budget must be empty
	// while the stream is still open.
	deadline := time.Now().Add(2 * time.Second)
	for h.proxy.inflight.inUse() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.proxy.inflight.inUse(); n != 0 {
		t.Fatalf("an open stream still holds %d bytes of the body budget", n)
	}
	end()
	if res, _ := p.wait(t, 5*time.Second); res.StatusCode != 200 {
		t.Fatalf("stream: %d", res.StatusCode)
	}
}
