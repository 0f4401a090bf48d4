package ui

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// eventStream is the live queue's event stream (/ui/events) as a page
// opens it, read by a test.
type eventStream struct {
	t   *testing.T
	res *http.Response
	got strings.Builder
	buf []byte
}

// openEvents opens base's event stream with c (a logged-in browser) until
// ctx ends, and reads it to its first "retry:" line.
func openEvents(t *testing.T, ctx context.Context, base string, c *http.Client) *eventStream {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/ui/events", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Sec-Fetch-Dest", "empty")
	res, err := c.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", err, res)
	}
	t.Cleanup(func() { res.Body.Close() })
	s := &eventStream{t: t, res: res, buf: make([]byte, 4096)}
	s.readUntil("retry:")
	return s
}

// readUntil reads until what was read holds want, failing if the stream
// ends first.
func (s *eventStream) readUntil(want string) {
	s.t.Helper()
	for !strings.Contains(s.got.String(), want) {
		n, err := s.res.Body.Read(s.buf)
		s.got.Write(s.buf[:n])
		if err != nil && !strings.Contains(s.got.String(), want) {
			s.t.Fatalf("stream ended (%v) before %q:\n%s", err, want, s.got.String())
		}
	}
}

// readMore reads once more (what arrives next), failing if the stream ends.
func (s *eventStream) readMore() {
	s.t.Helper()
	n, err := s.res.Body.Read(s.buf)
	s.got.Write(s.buf[:n])
	if err != nil {
		s.t.Fatalf("stream ended (%v):\n%s", err, s.got.String())
	}
}
