package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// recorder collects what the fakes saw; safe for concurrent use.
type recorder struct {
	mu       sync.Mutex
	sleeps   []time.Duration
	failures []error
	failed   []Event
	bodies   [][]byte
	headers  []http.Header
}

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.sleeps = append(r.sleeps, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *recorder) onFailure(e Event, err error) {
	r.mu.Lock()
	r.failed = append(r.failed, e)
	r.failures = append(r.failures, err)
	r.mu.Unlock()
}

func (r *recorder) request(req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
}

// server answers with the given status codes in turn, then 200.
func server(t *testing.T, rec *recorder, codes ...int) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec.request(req)
		mu.Lock()
		code := http.StatusOK
		if len(codes) > 0 {
			code, codes = codes[0], codes[1:]
		}
		mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newWebhook(url string, rec *recorder) *Webhook {
	return &Webhook{
		URL:       url,
		Attempts:  4,
		Backoff:   100 * time.Millisecond,
		Sleep:     rec.sleep,
		Now:       func() time.Time { return t0 },
		OnFailure: rec.onFailure,
	}
}

func event() Event {
	return Event{Type: TypeRequestPending, RequestID: "r-1", Subject: "alice@example.com",
		Scopes: []string{"model:gpt-4o"}, Decision: "pending", Reason: "INC-42"}
}

func TestRetryThenSuccess(t *testing.T) {
	rec := &recorder{}
	srv := server(t, rec, 503, 502)
	w := newWebhook(srv.URL, rec)
	if err := w.Send(context.Background(), event()); err != nil {
		t.Fatal(err)
	}
	if err := w.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.bodies) != 3 {
		t.Fatalf("server saw %d requests, want 3", len(rec.bodies))
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !equalDurations(rec.sleeps, want) {
		t.Errorf("backoff waits = %v, want %v", rec.sleeps, want)
	}
	if len(rec.failures) != 0 {
		t.Errorf("OnFailure called: %v", rec.failures)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.bodies[2], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "request.pending", "time": "2026-01-02T03:04:05Z", "request_id": "r-1",
		"subject": "alice@example.com", "scopes": []any{"model:gpt-4o"}, "decision": "pending",
		"reviewer": "", "reason": "INC-42",
		"text": "pamctl: request.pending r-1 by alice@example.com for model:gpt-4o: pending - INC-42",
	}
	for k, v := range want {
		if gv, _ := json.Marshal(got[k]); string(gv) != mustJSON(v) {
			t.Errorf("body[%q] = %s, want %s", k, gv, mustJSON(v))
		}
	}
	if len(got) != len(want) {
		t.Errorf("body has keys %v, want exactly %v", got, want)
	}
	h := rec.headers[0]
	if h.Get("Content-Type") != "application/json" || h.Get("X-Pamctl-Event") != "request.pending" {
		t.Errorf("headers = %v", h)
	}
}

func TestPermanentFailureReported(t *testing.T) {
	rec := &recorder{}
	srv := server(t, rec, 500, 500, 500, 500, 500)
	w := newWebhook(srv.URL, rec)
	w.Send(context.Background(), event())
	if err := w.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.bodies) != 4 {
		t.Errorf("server saw %d requests, want 4 attempts", len(rec.bodies))
	}
	if len(rec.failures) != 1 {
		t.Fatalf("OnFailure called %d times, want 1", len(rec.failures))
	}
	var se *StatusError
	if !errors.As(rec.failures[0], &se) || se.Code != 500 {
		t.Errorf("failure = %v, want a StatusError 500", rec.failures[0])
	}
	if !strings.Contains(rec.failures[0].Error(), "gave up after 4 attempt(s)") {
		t.Errorf("failure = %q", rec.failures[0])
	}
	if rec.failed[0].RequestID != "r-1" {
		t.Errorf("OnFailure got event %+v", rec.failed[0])
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	for _, code := range []int{400, 401, 404, 410} {
		rec := &recorder{}
		srv := server(t, rec, code)
		w := newWebhook(srv.URL, rec)
		w.Send(context.Background(), event())
		w.Shutdown(context.Background())
		if len(rec.bodies) != 1 || len(rec.sleeps) != 0 || len(rec.failures) != 1 {
			t.Errorf("%d: %d requests, %d waits, %d failures; want 1, 0, 1", code, len(rec.bodies), len(rec.sleeps), len(rec.failures))
		}
	}
}

func TestRetryAfterAndBackoffCap(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec.request(req)
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	w := newWebhook(srv.URL, rec)
	w.Attempts = 6
	w.Backoff = time.Second
	w.MaxBackoff = 4 * time.Second
	w.Send(context.Background(), event())
	w.Shutdown(context.Background())
	want := []time.Duration{3 * time.Second, 3 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	if !equalDurations(rec.sleeps, want) {
		t.Errorf("waits = %v, want %v (Retry-After over short backoff, capped)", rec.sleeps, want)
	}
	if len(rec.bodies) != 6 {
		t.Errorf("%d attempts, want 6", len(rec.bodies))
	}
}

func TestNetworkErrorRetriedWithoutLeakingURL(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/services/T000/B000/s3cr3t-token"
	srv.Close() // connection refused from now on
	w := newWebhook(url, rec)
	w.Attempts = 3
	w.Send(context.Background(), event())
	w.Shutdown(context.Background())
	if len(rec.sleeps) != 2 || len(rec.failures) != 1 {
		t.Fatalf("%d waits, %d failures; want 2, 1", len(rec.sleeps), len(rec.failures))
	}
	if msg := rec.failures[0].Error(); strings.Contains(msg, "s3cr3t") || !strings.Contains(msg, "notify: post:") {
		t.Errorf("failure %q leaks the URL or lacks context", msg)
	}
}

func TestSendNeverBlocksWhenEndpointHangs(t *testing.T) {
	rec := &recorder{}
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-req.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	w := newWebhook(srv.URL, rec)
	w.QueueSize = 1

	first, second, third := event(), event(), event()
	first.RequestID, second.RequestID, third.RequestID = "r-1", "r-2", "r-3"
	if err := w.Send(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	<-entered // the worker is stuck in the first post
	if err := w.Send(context.Background(), second); err != nil {
		t.Fatalf("second event not queued: %v", err)
	}
	if err := w.Send(context.Background(), third); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Send on a full queue = %v, want ErrQueueFull", err)
	}
	if len(rec.failed) != 1 || rec.failed[0].RequestID != "r-3" || !errors.Is(rec.failures[0], ErrQueueFull) {
		t.Fatalf("OnFailure saw %v %v, want r-3 dropped", rec.failed, rec.failures)
	}

	// The drain deadline has passed: the in-flight and queued events fail.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.failed) != 3 {
		t.Fatalf("OnFailure saw %d events, want 3: %v", len(rec.failed), rec.failures)
	}
	ids := map[string]bool{}
	for _, e := range rec.failed {
		ids[e.RequestID] = true
	}
	if !ids["r-1"] || !ids["r-2"] {
		t.Errorf("undelivered events not reported: %v", rec.failed)
	}
	if !errors.Is(rec.failures[2], ErrClosed) {
		t.Errorf("queued event failed with %v, want ErrClosed", rec.failures[2])
	}
}

func TestDrainDeliversInOrderAndSendAfterClose(t *testing.T) {
	rec := &recorder{}
	srv := server(t, rec)
	w := newWebhook(srv.URL, rec)
	for _, id := range []string{"a", "b", "c", "d"} {
		e := event()
		e.RequestID = id
		if err := w.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range rec.bodies {
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.RequestID)
	}
	if strings.Join(ids, ",") != "a,b,c,d" {
		t.Errorf("delivered %v, want a,b,c,d", ids)
	}
	if err := w.Send(context.Background(), event()); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	if len(rec.failures) != 1 || !errors.Is(rec.failures[0], ErrClosed) {
		t.Errorf("OnFailure = %v, want one ErrClosed", rec.failures)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestSignature(t *testing.T) {
	rec := &recorder{}
	srv := server(t, rec)
	w := newWebhook(srv.URL, rec)
	w.Secret = []byte("shh")
	w.Header = http.Header{"Authorization": {"Bearer abc"}}
	w.Send(context.Background(), event())
	w.Shutdown(context.Background())
	h := rec.headers[0]
	if h.Get("X-Pamctl-Timestamp") != "1767323045" {
		t.Errorf("timestamp = %q", h.Get("X-Pamctl-Timestamp"))
	}
	if want := Sign([]byte("shh"), "1767323045", rec.bodies[0]); h.Get("X-Pamctl-Signature") != want {
		t.Errorf("signature = %q, want %q", h.Get("X-Pamctl-Signature"), want)
	}
	if !strings.HasPrefix(h.Get("X-Pamctl-Signature"), "sha256=") || h.Get("Authorization") != "Bearer abc" {
		t.Errorf("headers = %v", h)
	}
	if Sign([]byte("other"), "1767323045", rec.bodies[0]) == h.Get("X-Pamctl-Signature") {
		t.Error("signature does not depend on the secret")
	}
}

func TestSendCopiesAndStampsEvent(t *testing.T) {
	rec := &recorder{}
	srv := server(t, rec)
	w := newWebhook(srv.URL, rec)
	scopes := []string{"model:gpt-4o"}
	w.Send(context.Background(), Event{Type: TypeGrantRevoked, Scopes: scopes})
	scopes[0] = "mutated"
	w.Send(context.Background(), Event{Type: TypeGrantRevoked, Time: t0.Add(time.Hour), Text: "custom"})
	w.Shutdown(context.Background())
	var a, b Event
	json.Unmarshal(rec.bodies[0], &a)
	json.Unmarshal(rec.bodies[1], &b)
	if !a.Time.Equal(t0) || a.Scopes[0] != "model:gpt-4o" || a.Text != "pamctl: grant.revoked for model:gpt-4o" {
		t.Errorf("first event = %+v", a)
	}
	if !b.Time.Equal(t0.Add(time.Hour)) || b.Scopes == nil || b.Text != "custom" {
		t.Errorf("second event = %+v", b)
	}
	if !strings.Contains(string(rec.bodies[1]), `"scopes":[]`) {
		t.Errorf("empty scopes not encoded as []: %s", rec.bodies[1])
	}
}

func TestSummary(t *testing.T) {
	e := Event{Type: TypeRequestApproved, RequestID: "r-9", Subject: "bob", Scopes: []string{"model:a", "model:b"},
		Decision: "approved", Reviewer: "carol", Reason: "ok"}
	if got, want := e.Summary(), "pamctl: request.approved r-9 by bob for model:a model:b: approved (reviewer carol) - ok"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// The chat text of a notification cannot be forged by a requester: no
// control characters, line breaks, bidi overrides, links or mentions get
// through; the JSON fields keep the exact values.
func TestSummaryEscapesData(t *testing.T) {
	e := Event{Type: TypeRequestPending, RequestID: "r-1", Subject: "mallory\u202e", Scopes: []string{"model:gpt-4o"},
		Decision: "pending", Reason: "urgent\n:white_check_mark: approved by security <!channel> <https://evil.example|Approve> \x1b[31m&"}
	got := e.Summary()
	want := `pamctl: request.pending r-1 by mallory\u202e for model:gpt-4o: pending - urgent\n:white_check_mark: approved by security &lt;!channel&gt; &lt;https:` + "\u200b" + `//evil.example|Approve&gt; \x1b[31m&amp;`
	if got != want {
		t.Fatalf("Summary()\n got %q\nwant %q", got, want)
	}
	for _, s := range []string{"\x1b", "\n", "\u202e", "<"} {
		if strings.Contains(got, s) {
			t.Fatalf("summary holds %q", s)
		}
	}

	recv := make(chan Event, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got Event
		json.NewDecoder(r.Body).Decode(&got)
		recv <- got
	}))
	defer srv.Close()
	w := &Webhook{URL: srv.URL}
	defer w.Close()
	w.Send(context.Background(), e)
	w.Send(context.Background(), Event{Type: TypeGrantRevoked, Text: "custom\r\x1b[2Kline"})
	a, b := <-recv, <-recv
	if a.Text != want || a.Reason != e.Reason || a.Subject != e.Subject {
		t.Fatalf("delivered %+v", a)
	}
	if b.Text != `custom\r\x1b[2Kline` {
		t.Fatalf("caller text not escaped: %q", b.Text)
	}
}

// A Retry-After too large to hold in a time.Duration (a hostile or broken
// endpoint) is a wait capped at MaxBackoff like any other, never an
// overflow that gives up on the event at once, or waits forever.
func TestHugeRetryAfterIsCapped(t *testing.T) {
	for _, v := range []string{"9223372036854775807", "10000000000", "99999999999999999999"} {
		rec := &recorder{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			rec.request(req)
			w.Header().Set("Retry-After", v)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		w := newWebhook(srv.URL, rec)
		w.Attempts = 3
		w.Backoff = time.Second
		w.MaxBackoff = 4 * time.Second
		w.Send(context.Background(), event())
		w.Shutdown(context.Background())
		srv.Close()
		want := []time.Duration{4 * time.Second, 4 * time.Second}
		if !equalDurations(rec.sleeps, want) || len(rec.bodies) != 3 {
			t.Errorf("Retry-After %s: %d attempts, waits %v; want 3 attempts, waits %v", v, len(rec.bodies), rec.sleeps, want)
		}
	}
}

// A hostile endpoint that answers 200 and then never stops sending does
// not hold the worker until the attempt's timeout, nor make pamctl read
// without bound: the answer is read up to 64 KiB and the event counts as
// delivered at once. (Pins the read cap of post; nothing else tests it.)
func TestNeverEndingAnswerIsCut(t *testing.T) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for i := 0; i < 1<<15; i++ { // up to 1 GiB
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	rec := &recorder{}
	delivered := make(chan struct{}, 1)
	w := newWebhook(srv.URL, rec)
	w.Timeout = 30 * time.Second
	w.OnDelivered = func(Event) { delivered <- struct{}{} }
	start := time.Now()
	w.Send(context.Background(), event())
	select {
	case <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not delivered: the worker is reading the endless answer")
	}
	w.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("delivery took %s", d)
	}
	if n := sent.Load(); n > 64<<20 {
		t.Errorf("the endpoint wrote %d bytes before pamctl hung up", n)
	}
}

// A hostile endpoint that answers with garbage instead of HTTP (a status
// line of hundreds of kilobytes, escape sequences) cannot put it in the
// delivery error, which reaches the log and the notify.failed audit event:
// the error is short and escaped.
func TestGarbageAnswerMakesAShortError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write([]byte("HTTP/1.1 2\x1b[2K" + strings.Repeat("Z", 512<<10) + "\r\n\r\n"))
			}()
		}
	}()
	rec := &recorder{}
	w := newWebhook("http://"+ln.Addr().String()+"/hook", rec)
	w.Attempts = 1
	w.Send(context.Background(), event())
	w.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.failures) != 1 {
		t.Fatalf("failures: %v", rec.failures)
	}
	if msg := rec.failures[0].Error(); len(msg) > 600 || strings.ContainsAny(msg, "\x1b\n\r") {
		t.Errorf("delivery error of %d bytes: %.300q", len(msg), msg)
	}
}
