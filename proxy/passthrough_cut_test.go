package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPassThroughCutAnswerAborts: an endpoint: answer passed through (a
// file's content, audio) that the upstream cuts short must reach the
// client as a broken answer, never as a whole one: over HTTP/1.1 a
// chunked body without its last chunk (io.ErrUnexpectedEOF), over HTTP/2
// a reset stream. The trail says the answer broke off. pamctl once
// finished such an answer with the chunked terminator, as if whole.
// Whole and buffered answers are the controls: an answer the upstream
// sent whole ends cleanly, one that sends more than its Content-Length
// ends cleanly after that length (the rest is not relayed), and a JSON
// answer cut short is a 502 (buffered: nothing was sent before the cut).
func TestPassThroughCutAnswerAborts(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
	chunked := "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
	for _, tc := range []struct {
		name, framing string
		cut           bool   // the client must see a broken answer
		status        int    // the status the client must get
		body          string // what the client must get, when not cut
	}{
		{name: "bad chunk size", framing: chunked + "zz\r\nworld\r\n", cut: true, status: 200},
		{name: "closed mid-chunk", framing: chunked + "64\r\nworld", cut: true, status: 200},
		{name: "short content-length", framing: "Content-Length: 5000\r\n\r\nhello world", cut: true, status: 200},
		{name: "whole chunked", framing: chunked + "0\r\n\r\n", status: 200, body: "hello"},
		{name: "long content-length", framing: "Content-Length: 5\r\n\r\nhello world", status: 200, body: "hello"},
	} {
		for _, ct := range []string{"application/octet-stream", "text/plain"} {
			for _, h2 := range []bool{false, true} {
				name := tc.name + "/" + ct + map[bool]string{false: "/http1", true: "/http2"}[h2]
				t.Run(name, func(t *testing.T) {
					h := newHarness(t)
					h.up.set(rawAnswer(t, strings.Replace(head, "%s", ct, 1)+tc.framing))
					cl, base := h.srv.Client(), h.srv.URL
					if h2 {
						srv := httptest.NewUnstartedServer(h.proxy)
						srv.EnableHTTP2 = true
						srv.StartTLS()
						t.Cleanup(srv.Close)
						cl, base = srv.Client(), srv.URL
					}
					tok := h.mint(grant{scope: "endpoint:/v1/files/*"})
					res, b, err := h.doAt(cl, base, "GET", "/v1/files/file-1/content", tok, "")
					if res.StatusCode != tc.status {
						t.Fatalf("status %d: %s", res.StatusCode, b)
					}
					if h2 != (res.ProtoMajor == 2) {
						t.Fatalf("answered over %s", res.Proto)
					}
					switch {
					case tc.cut && err == nil:
						t.Fatalf("a cut answer reached the client as a whole one: %q", b)
					case tc.cut && !h2 && !errors.Is(err, io.ErrUnexpectedEOF):
						t.Fatalf("read error %v, want io.ErrUnexpectedEOF", err)
					case tc.cut && h2 && !strings.Contains(err.Error(), "INTERNAL_ERROR"):
						t.Fatalf("read error %v, want the stream reset (RST_STREAM INTERNAL_ERROR)", err)
					case !tc.cut && (err != nil || string(b) != tc.body):
						t.Fatalf("a whole answer: %q, %v; want %q", b, err, tc.body)
					}
					ev := h.sink.last(t)
					if broke := strings.Contains(ev.Error, CodeStreamInterrupted); broke != tc.cut {
						t.Errorf("trail: error %q (status %d), want it to say the answer broke off: %v", ev.Error, ev.Status, tc.cut)
					}
				})
			}
		}
	}
}

// TestBufferedCutAnswerIs502: an answer pamctl buffers (JSON, of an
// endpoint: route or a model call) that the upstream cuts short is a
// clean 502, whatever the cut: nothing of it was sent.
func TestBufferedCutAnswerIs502(t *testing.T) {
	chunked := "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n"
	for name, framing := range map[string]string{
		"bad chunk size":       chunked + "zz\r\n1}\r\n",
		"closed mid-chunk":     chunked + "64\r\n1",
		"short content-length": "Content-Length: 5000\r\n\r\n{\"a\":1",
	} {
		for _, route := range []struct{ method, path, scope, body string }{
			{"GET", "/v1/files/file-1", "endpoint:/v1/files/*", ""},
			{"POST", "/v1/chat/completions", "model:gpt-4o", `{"model":"gpt-4o","messages":[]}`},
		} {
			t.Run(name+route.path, func(t *testing.T) {
				h := newHarness(t)
				h.up.set(rawAnswer(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+framing))
				res, b := h.do(route.method, route.path, h.mint(grant{scope: route.scope}), route.body)
				if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
					t.Fatalf("%d %s", res.StatusCode, b)
				}
				if ev := h.sink.last(t); ev.Status != http.StatusBadGateway {
					t.Errorf("trail status %d", ev.Status)
				}
			})
		}
	}
}
