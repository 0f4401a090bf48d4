package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// countingConn counts the Write calls (system calls) of a connection.
type countingConn struct {
	net.Conn
	mu     *sync.Mutex
	writes *int
}

func (c countingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	*c.writes++
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// A buffered call's request goes to the upstream in one write, headers and
// body together (a stream's body lets go of its bytes once sent, and its
// headers go first).
func TestUpstreamRequestIsOneWrite(t *testing.T) {
	var mu sync.Mutex
	writes := 0
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, mu: &mu, writes: &writes}, nil
	}
	h := newHarness(t, func(o *Options) { o.Upstreams[0].Transport = tr })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for _, tc := range []struct {
		body   string
		writes int
	}{
		{`{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("hello ", 200) + `"}]}`, 1},
		{`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}`, 2},
	} {
		mu.Lock()
		writes = 0
		mu.Unlock()
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v1/chat/completions", strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		mu.Lock()
		got := writes
		mu.Unlock()
		if got != tc.writes {
			t.Errorf("stream=%v: %d writes to the upstream, want %d", strings.Contains(tc.body, `"stream"`), got, tc.writes)
		}
	}
}
