package proxy

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStreamHeadersLeaveAtOnce: a stream's headers reach the client as soon
// as the upstream's arrive, before its first event (a client with a
// response-header timeout must not wait for the model's first token).
func TestStreamHeadersLeaveAtOnce(t *testing.T) {
	release := make(chan struct{})
	h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		writeChatStream(w, "gpt-4o", true, nil)
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(streamReq))
	req.Header.Set("Authorization", "Bearer "+tok)
	type got struct {
		res *http.Response
		err error
	}
	done := make(chan got, 1)
	go func() {
		res, err := h.srv.Client().Do(req)
		done <- got{res, err}
	}()
	var res *http.Response
	select {
	case g := <-done:
		if g.err != nil {
			t.Fatal(g.err)
		}
		res = g.res
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("no headers while the upstream holds its first event")
	}
	close(release)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), "Hello") || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("%d %q", res.StatusCode, b)
	}
	if got := res.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type %q", got)
	}
}

// failingWriter is a client connection that breaks after limit bytes of
// body (a client gone, a write timeout).
type failingWriter struct {
	*httptest.ResponseRecorder
	limit int
	n     int
}

func (f *failingWriter) Write(b []byte) (int, error) {
	if f.n+len(b) > f.limit {
		return 0, errors.New("connection reset by peer")
	}
	f.n += len(b)
	return f.ResponseRecorder.Write(b)
}

func (f *failingWriter) Flush() {}

// TestStreamWriteFailureAborts: when a write to the client fails mid-stream
// the handler aborts (http.ErrAbortHandler: the server drops the
// connection without the last chunk, so a client never takes a cut stream
// for a whole one), and the call is recorded as abandoned by its client.
func TestStreamWriteFailureAborts(t *testing.T) {
	h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
		writeChatStream(w, "gpt-4o", true, nil)
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(streamReq))
	req.Header.Set("Authorization", "Bearer "+tok)
	w := &failingWriter{ResponseRecorder: httptest.NewRecorder(), limit: 1}
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		h.proxy.ServeHTTP(w, req)
	}()
	if w.Body.Len() != 0 {
		t.Errorf("wrote %q past the failure", w.Body.String())
	}
	ev := h.sink.last(t)
	if ev.Status != statusClientClosed {
		t.Errorf("audit status %d, want %d (client went away)", ev.Status, statusClientClosed)
	}
}

// TestStreamEndsWithTerminalChunk: a whole stream through a real server
// ends with the chunked terminator (the abort above is only for failures).
func TestStreamEndsWithTerminalChunk(t *testing.T) {
	h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
		writeChatStream(w, "gpt-4o", true, nil)
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(streamReq))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var events []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "data: ") {
			events = append(events, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("stream cut: %v", err)
	}
	if len(events) == 0 || events[len(events)-1] != "data: [DONE]" {
		t.Errorf("events %q", events)
	}
	if ev := h.sink.last(t); ev.Status != http.StatusOK {
		t.Errorf("audit status %d", ev.Status)
	}
}
