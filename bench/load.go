package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A closed-loop load generator: a fixed number of workers each send one
// request, read the whole answer, and send the next, until a fixed count of
// requests (or a deadline) is reached.

// job is one kind of request sent to one target.
type job struct {
	url    string // full URL of POST /v1/chat/completions or /v1/responses
	token  string
	body   []byte
	api    string // apiChat or apiResponses: how the answer's end is checked
	stream bool
	// rate paces the workers to this many requests per second in all
	// (0: each sends its next request as soon as it has its answer).
	// Paced latencies count from when a request was due, so a target
	// that falls behind shows its queue.
	rate float64
}

// samples collects what one or more runs of a job measured.
type samples struct {
	n       int
	errs    int
	elapsed time.Duration   // wall time of the measured runs, summed
	total   []time.Duration // request sent -> answer read to its end
	ttfb    []time.Duration // request sent -> first byte of the body
	firstE  string
}

func (s *samples) add(o *samples) {
	s.n += o.n
	s.errs += o.errs
	s.elapsed += o.elapsed
	s.total = append(s.total, o.total...)
	s.ttfb = append(s.ttfb, o.ttfb...)
	if s.firstE == "" {
		s.firstE = o.firstE
	}
}

// rps is requests per second over the measured wall time.
func (s *samples) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.n) / s.elapsed.Seconds()
}

// dist summarises a latency distribution.
type dist struct{ p50, p90, p99, max time.Duration }

func summarize(d []time.Duration) dist {
	if len(d) == 0 {
		return dist{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return dist{p50: q(0.50), p90: q(0.90), p99: q(0.99), max: s[len(s)-1]}
}

// newClient returns a client for one target that keeps conc connections
// open, without compression or proxies.
func newClient(conc int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conc + 16,
		MaxIdleConnsPerHost: conc + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}
}

// drive runs count requests of j over conc workers (or until the deadline,
// when count is 0) and returns their samples.
func drive(ctx context.Context, cl *http.Client, j job, conc, count int, deadline time.Time) *samples {
	var next atomic.Int64
	out := make([]*samples, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		s := &samples{}
		out[w] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				k := next.Add(1)
				if count > 0 && k > int64(count) {
					return
				}
				if count == 0 && time.Now().After(deadline) {
					return
				}
				if ctx.Err() != nil {
					return
				}
				var late time.Duration
				if j.rate > 0 {
					due := start.Add(time.Duration(float64(k-1) / j.rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
					late = max(0, time.Since(due))
				}
				total, ttfb, err := one(ctx, cl, j, buf, nil)
				total, ttfb = total+late, ttfb+late
				s.n++
				if err != nil {
					s.errs++
					if s.firstE == "" {
						s.firstE = err.Error()
					}
					continue
				}
				s.total = append(s.total, total)
				s.ttfb = append(s.ttfb, ttfb)
			}
		}()
	}
	wg.Wait()
	res := &samples{}
	for _, s := range out {
		res.add(s)
	}
	res.elapsed = time.Since(start)
	return res
}

// one sends a request and reads its answer to the end, which
// answerEnd.check checks. onFirst, when not nil, is called when the first byte arrives.
func one(ctx context.Context, cl *http.Client, j job, buf []byte, onFirst func()) (total, ttfb time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+j.token)
	req.Header.Set("Content-Type", "application/json")
	if j.stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	t0 := time.Now()
	res, err := cl.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	var end answerEnd
	n, size := 0, 0
	for {
		n, err = res.Body.Read(buf)
		if n > 0 {
			if size == 0 {
				ttfb = time.Since(t0)
				if onFirst != nil {
					onFirst()
				}
			}
			size += n
			end.feed(buf[:n], j.stream && j.api == apiResponses)
		}
		if err != nil {
			break
		}
	}
	total = time.Since(t0)
	if !errors.Is(err, io.EOF) {
		return 0, 0, fmt.Errorf("read answer: %w", err)
	}
	if err := end.check(res.StatusCode, j.api, j.stream); err != nil {
		return 0, 0, err
	}
	return total, ttfb, nil
}

// answerEnd keeps what its check needs of an answer read in pieces: its
// last bytes and, for a Responses API stream, the start of its last
// complete event and whether an event was left incomplete.
type answerEnd struct {
	tail []byte // the last tailLen bytes
	// Responses API streams only (events are cut at blank lines):
	cur     []byte // the start (eventHead bytes at most) of the event being read
	last    []byte // the start of the last complete event
	nl      bool   // the last byte fed was a '\n' that may begin an event's end
	partial bool   // bytes after the last complete event
}

const (
	tailLen   = 64
	eventHead = 160 // enough for "event: response.completed\ndata: {\"type\":\"response.completed\""
)

// feed adds p, the next bytes of the answer; events says whether to
// follow SSE events (a Responses API stream).
func (e *answerEnd) feed(p []byte, events bool) {
	if len(p) >= tailLen {
		e.tail = append(e.tail[:0], p[len(p)-tailLen:]...)
	} else {
		e.tail = append(e.tail, p...)
		if len(e.tail) > tailLen {
			e.tail = e.tail[len(e.tail)-tailLen:]
		}
	}
	if !events {
		return
	}
	for len(p) > 0 {
		// An event ends at a blank line: "\n\n", perhaps split over two
		// reads. (The mock and pamctl end lines with "\n" only.)
		i := 0
		if !e.nl || p[0] != '\n' {
			k := bytes.Index(p, []byte("\n\n"))
			if k < 0 {
				e.addHead(p)
				e.nl = p[len(p)-1] == '\n'
				return
			}
			i = k + 1
		}
		e.addHead(p[:i+1])
		if isEvent(e.cur) {
			e.last = append(e.last[:0], e.cur...)
		}
		e.cur, e.nl, e.partial = e.cur[:0], false, false
		p = p[i+1:]
	}
}

// isEvent reports whether a block (its start) is an event: not blank, nor
// only comments (": keep-alive") that no client dispatches.
func isEvent(head []byte) bool {
	if len(head) >= eventHead {
		return true
	}
	for _, line := range bytes.Split(head, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 && line[0] != ':' {
			return true
		}
	}
	return false
}

func (e *answerEnd) addHead(p []byte) {
	if len(bytes.TrimSpace(p)) > 0 {
		e.partial = true // until the event's blank line
	}
	if room := eventHead - len(e.cur); room > 0 {
		e.cur = append(e.cur, p[:min(room, len(p))]...)
	}
}

// lastEvent is the type of the last complete event of a Responses API
// stream: its "event:" name, or else the "type" its data starts or ends
// with (OpenAI and the mock write it first; pamctl, when it re-encodes an
// event, sorts the keys and writes it last).
func (e *answerEnd) lastEvent() string {
	for _, line := range bytes.Split(e.last, []byte("\n")) {
		if name, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			return string(bytes.TrimSpace(name))
		}
		if data, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if typ, ok := bytes.CutPrefix(bytes.TrimSpace(data), []byte(`{"type":"`)); ok {
				if name, _, ok := bytes.Cut(typ, []byte(`"`)); ok {
					return string(name)
				}
			}
			end := bytes.TrimSpace(e.tail) // the event is the last one: the tail is its end
			if typ, ok := bytes.CutSuffix(end, []byte(`"}`)); ok {
				if i := bytes.LastIndex(typ, []byte(`,"type":"`)); i >= 0 {
					return string(typ[i+len(`,"type":"`):])
				}
			}
			return ""
		}
	}
	return ""
}

// check validates the answer that ended cleanly with status. A
// non-streamed answer must be a 200 JSON object (a chat completion or a
// Response); a chat stream a 200 event stream that ends with
// "data: [DONE]"; a Responses API stream a 200 event stream whose last
// event is response.completed, complete (Responses streams send no
// [DONE]; a cut one ends with pamctl's error event, or mid-event).
func (e *answerEnd) check(status int, api string, stream bool) error {
	if status != http.StatusOK {
		return fmt.Errorf("status %d: %s", status, bytes.TrimSpace(e.tail))
	}
	switch {
	case !stream:
		if !bytes.HasSuffix(bytes.TrimSpace(e.tail), []byte("}")) {
			return fmt.Errorf("answer is not a JSON object: …%q", e.tail)
		}
	case api == apiResponses:
		if e.partial {
			return fmt.Errorf("stream ended inside an event: …%q", e.tail)
		}
		if ev := e.lastEvent(); ev != "response.completed" {
			return fmt.Errorf("stream's last event is %q, not response.completed: …%q", ev, e.tail)
		}
	default:
		if !bytes.HasSuffix(bytes.TrimSpace(e.tail), []byte("data: [DONE]")) {
			return fmt.Errorf("stream did not end with [DONE]: …%q", e.tail)
		}
	}
	return nil
}

// openStreams starts n streams at once and returns when every one has
// received its first byte (or failed); wait then blocks until all have
// ended and returns their samples.
func openStreams(ctx context.Context, cl *http.Client, j job, n int) (wait func() *samples) {
	var wg, firstWG sync.WaitGroup
	var mu sync.Mutex
	res := &samples{}
	start := time.Now()
	for range n {
		wg.Add(1)
		firstWG.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			gotFirst := func() { once.Do(firstWG.Done) }
			defer gotFirst()
			total, ttfb, err := one(ctx, cl, j, make([]byte, 4<<10), gotFirst)
			mu.Lock()
			defer mu.Unlock()
			res.n++
			if err != nil {
				res.errs++
				if res.firstE == "" {
					res.firstE = err.Error()
				}
				return
			}
			res.total = append(res.total, total)
			res.ttfb = append(res.ttfb, ttfb)
		}()
	}
	firstWG.Wait()
	return func() *samples {
		wg.Wait()
		res.elapsed = time.Since(start)
		return res
	}
}
