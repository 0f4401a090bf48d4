package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAttemptCapUnderStreamLimit: an HTTP/2 upstream with a low
// SETTINGS_MAX_CONCURRENT_STREAMS (a self-hosted gateway, or api servers
// under load) makes Go's transport look for a connection more than once
// for ONE attempt (no free stream on the pooled connection: dial, then the
// race for the pool). GetConn counts lookups, not attempts sent: a burst
// of ordinary calls, each sent upstream once, must not fail with 502.
func TestAttemptCapUnderStreamLimit(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		served.Add(1)
		time.Sleep(20 * time.Millisecond)
		_, _ = w.Write([]byte(`{}`))
	}))
	srv.EnableHTTP2 = true
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 250}
	srv.StartTLS()
	defer srv.Close()
	rt := noInformational{srv.Client().Transport}
	const n = 400
	var wg sync.WaitGroup
	var failed atomic.Int32
	var firstErr atomic.Value
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(`{"model":"m"}`)
			req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", bytes.NewReader(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			res, err := rt.RoundTrip(req)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			_, _ = io.ReadAll(res.Body)
			res.Body.Close()
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Errorf("%d of %d calls failed (the upstream served %d; none was reset, so none was sent more than once): %v", f, n, served.Load(), firstErr.Load())
	}
}
