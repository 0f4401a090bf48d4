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
	url    string // full URL of POST /v1/chat/completions
	token  string
	body   []byte
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

// one sends a request and reads its answer to the end. A non-streamed
// answer must be a 200 chat completion; a stream must be a 200 event stream
// that ends with "data: [DONE]".
// onFirst, when not nil, is called when the first byte arrives.
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
	var tail []byte // the last bytes read, to check the stream's end
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
			if n >= 64 {
				tail = append(tail[:0], buf[n-64:n]...)
			} else {
				tail = append(tail, buf[:n]...)
				if len(tail) > 64 {
					tail = tail[len(tail)-64:]
				}
			}
		}
		if err != nil {
			break
		}
	}
	total = time.Since(t0)
	if !errors.Is(err, io.EOF) {
		return 0, 0, fmt.Errorf("read answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("status %d: %s", res.StatusCode, bytes.TrimSpace(tail))
	}
	if j.stream && !bytes.HasSuffix(bytes.TrimSpace(tail), []byte("data: [DONE]")) {
		return 0, 0, fmt.Errorf("stream did not end with [DONE]: …%q", tail)
	}
	if !j.stream && !bytes.HasSuffix(bytes.TrimSpace(tail), []byte("}")) {
		return 0, 0, fmt.Errorf("answer is not a JSON object: …%q", tail)
	}
	return total, ttfb, nil
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
