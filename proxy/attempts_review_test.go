package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAttemptCapUnderStreamLimit (review): an HTTP/2 upstream with a low
// SETTINGS_MAX_CONCURRENT_STREAMS (a self-hosted gateway, or API servers
// under load) makes Go's transport look a connection up more than once for
// ONE attempt (no free stream on the pooled connection: dial, then the race
// for the pool), and streams sent before its settings arrive are refused
// and sent again. The cap counts attempts sent in quick succession, not
// lookups, and allows the transport's own retries: a burst of ordinary
// calls all succeed.
func TestAttemptCapUnderStreamLimit(t *testing.T) {
	var served atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		served.Add(1)
		time.Sleep(20 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`))
	}))
	up.EnableHTTP2 = true
	// One stream at a time: the transport's own retries after refused
	// streams reach 6 in a row here, with bursts of 60 to 200 calls.
	up.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1}
	up.StartTLS()
	defer up.Close()
	u, _ := url.Parse(up.URL)
	h := newHarness(t, func(o *Options) {
		o.Upstreams = []Upstream{{Name: "openai", URL: "https://" + u.Host + "/v1", KeyName: "openai", Transport: up.Client().Transport, Timeout: time.Minute}}
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	cl := *h.srv.Client()
	cl.Timeout = 30 * time.Second
	const n = 60
	var wg sync.WaitGroup
	var failed atomic.Int32
	var first atomic.Value
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, b, err := h.doAt(&cl, h.srv.URL, "POST", "/v1/chat/completions", tok, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
			if err != nil || res.StatusCode != http.StatusOK {
				failed.Add(1)
				first.CompareAndSwap(nil, string(b))
				if err != nil {
					first.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Errorf("%d of %d calls failed (the upstream served %d; none was reset): %v", f, n, served.Load(), first.Load())
	}
}
