package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
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
	type got struct {
		res *http.Response
		err error
	}
	done := make(chan got, 1)
	go func() {
		res, err := postStream(h, tok)
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
	res := openStream(t, h, tok)
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

// streamCall posts streamReq through the proxy's server with a fresh
// token and reads the whole answer.
func streamCall(t *testing.T, h *harness) (*http.Response, []byte) {
	t.Helper()
	res := openStream(t, h, h.mint(grant{scope: "model:gpt-4o"}))
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("stream cut: %v (read %q)", err, b)
	}
	h.remember(b)
	return res, b
}

// TestStreamTrailersAnnouncedAndNot: an upstream that sends trailers
// without announcing any (Go's transport makes res.Trailer a new map when
// the body ends) or announces some and sends others too (they are merged
// into the announced map), with the vaulted key in announced and
// unannounced values and in an unannounced name: no trailer carrying the
// key reaches the client, and the harmless ones of both kinds do.
func TestStreamTrailersAnnouncedAndNot(t *testing.T) {
	keyName := "X-" + vaultedKey // dashes are allowed in a field name
	for _, mixed := range []bool{false, true} {
		t.Run(map[bool]string{false: "unannounced", true: "mixed"}[mixed], func(t *testing.T) {
			h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
				if mixed {
					w.Header().Set("Trailer", "X-Announced-Bad, X-Announced-Fine")
				}
				writeChatStream(w, "gpt-4o", true, nil)
				hd := w.Header()
				if mixed {
					hd.Set("X-Announced-Bad", "Bearer "+vaultedKey)
					hd.Set("X-Announced-Fine", "ok1")
				}
				hd.Set(http.TrailerPrefix+"X-Unannounced-Bad", strings.ToUpper(vaultedKey))
				hd.Set(http.TrailerPrefix+"X-Unannounced-Fine", "ok2")
				hd.Set(http.TrailerPrefix+keyName, "v")
			})
			res, b := streamCall(t, h)
			if res.StatusCode != http.StatusOK || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
				t.Fatalf("%d %q", res.StatusCode, b)
			}
			if where := leaks(vaultedKey, res, b, h); len(where) > 0 {
				t.Errorf("the key reached: %v", where)
			}
			for name, vv := range res.Trailer {
				if s := strings.ToLower(name + " " + strings.Join(vv, " ")); strings.Contains(s, strings.ToLower(vaultedKey[8:30])) {
					t.Errorf("trailer %s: %q carries the key", name, vv)
				}
			}
			if res.Trailer.Get("X-Unannounced-Fine") != "ok2" || mixed && res.Trailer.Get("X-Announced-Fine") != "ok1" {
				t.Errorf("harmless trailers lost: %v", res.Trailer)
			}
		})
	}
}

// TestStreamBodilessStatusIsNoSuccess: an upstream that answers a stream
// with a status that has no body (204) gives the client no clean, empty
// success: the audit records the stream as cut short, so the client
// must see a failure too.
func TestStreamBodilessStatusIsNoSuccess(t *testing.T) {
	h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusNoContent)
	})
	res, err := postStream(h, h.mint(grant{scope: "model:gpt-4o"}))
	if err == nil {
		b, rerr := io.ReadAll(res.Body)
		res.Body.Close()
		if rerr == nil && res.StatusCode < 300 {
			t.Errorf("client took %d %q for a whole answer", res.StatusCode, b)
		}
	}
	waitFor(t, "the call's audit event", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) > 0 })
	if ev := h.sink.last(t); ev.Error == "" {
		t.Errorf("audit status %d without an error", ev.Status)
	}
}

// TestStreamTrailersCannotRestoreStrippedHeaders: the headers pamctl
// strips from an answer (the upstream's cookies, organisation and project,
// its own request and audit ids) do not come back as trailers.
func TestStreamTrailersCannotRestoreStrippedHeaders(t *testing.T) {
	stripped := []string{"Set-Cookie", "Openai-Organization", "Openai-Project", "Pamctl-Audit-Id", "Pamctl-Grant", "X-Request-Id"}
	for _, announced := range []bool{false, true} {
		t.Run(fmt.Sprint("announced=", announced), func(t *testing.T) {
			h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
				if announced {
					w.Header().Set("Trailer", strings.Join(stripped, ", "))
				}
				writeChatStream(w, "gpt-4o", true, nil)
				for _, k := range stripped {
					if announced {
						w.Header().Set(k, "from-upstream")
					} else {
						w.Header().Set(http.TrailerPrefix+k, "from-upstream")
					}
				}
			})
			res, b := streamCall(t, h)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%d %q", res.StatusCode, b)
			}
			for k, vv := range res.Trailer {
				for _, v := range vv {
					if v == "from-upstream" {
						t.Errorf("trailer %s: %q reached the client", k, v)
					}
				}
			}
		})
	}
}

// TestStreamUpstreamSwitchingProtocols: an upstream that answers a
// stream call with 101 Switching Protocols (with or without the upgrade
// headers) switches nothing for the client: it gets an error, never a
// 101 with the upstream's hop-by-hop headers, and the trail records an
// upstream failure, not a client that went away.
func TestStreamUpstreamSwitchingProtocols(t *testing.T) {
	for _, upgrade := range []bool{false, true} {
		t.Run(fmt.Sprint("upgrade=", upgrade), func(t *testing.T) {
			hdr := "HTTP/1.1 101 Switching Protocols\r\nContent-Type: text/event-stream\r\nX-Hop: 1\r\n"
			if upgrade {
				hdr += "Connection: Upgrade, X-Hop\r\nUpgrade: evil\r\n"
			}
			h := streamHarness(t, false, rawAnswer(t, hdr+"\r\ndata: "+chunkJSON("hi")+"\n\ndata: [DONE]\n\n"))
			res, err := postStream(h, h.mint(grant{scope: "model:gpt-4o"}))
			if err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode < 200 || res.StatusCode >= 300 && res.StatusCode < 500 {
					t.Errorf("client got %d %v %q", res.StatusCode, res.Header, b)
				}
			} else {
				t.Logf("client: %v", err)
			}
			waitFor(t, "the call's audit event", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) > 0 })
			if ev := h.sink.last(t); ev.Status == statusClientClosed || ev.Status < 500 {
				t.Errorf("audit status %d (%s), want an upstream failure", ev.Status, ev.Error)
			}
		})
	}
}

// TestStreamClientGoneAuditedOnce: a client that hangs up mid-stream
// (while the upstream is quiet, or while it keeps sending) is recorded
// once, as a client that went away, and the upstream call is ended (the
// upstream sees its request canceled) rather than left open.
func TestStreamClientGoneAuditedOnce(t *testing.T) {
	for _, chatty := range []bool{false, true} {
		t.Run(fmt.Sprint("chatty=", chatty), func(t *testing.T) {
			upstreamGone := make(chan struct{})
			h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
				defer close(upstreamGone)
				w.Header().Set("Content-Type", "text/event-stream")
				sseWrite(w, "", chunkJSON("first"))
				if !chatty {
					<-r.Context().Done()
					return
				}
				rc := http.NewResponseController(w)
				for r.Context().Err() == nil {
					if _, err := io.WriteString(w, "data: "+chunkJSON("more")+"\n\n"); err != nil {
						return
					}
					if rc.Flush() != nil {
						return
					}
				}
			})
			res := openStream(t, h, h.mint(grant{scope: "model:gpt-4o"}))
			line, err := bufio.NewReader(res.Body).ReadString('\n')
			if err != nil || !strings.Contains(line, "first") {
				t.Fatalf("first event: %q %v", line, err)
			}
			res.Body.Close() // hangs up: the connection is not reused mid-body
			select {
			case <-upstreamGone:
			case <-time.After(15 * time.Second):
				t.Fatal("the upstream call was never ended")
			}
			h.srv.Close() // waits for the proxy's handler to return
			calls := h.sink.ofType(audit.TypeProxyCall)
			if len(calls) != 1 {
				t.Fatalf("%d proxy.call events, want 1: %+v", len(calls), calls)
			}
			if calls[0].Status != statusClientClosed {
				t.Errorf("audit status %d (%s), want %d", calls[0].Status, calls[0].Error, statusClientClosed)
			}
		})
	}
}

// TestStreamHalfClosedClientSeesNoCleanEnd: a client that shuts down its
// sending side after the request (HTTP/1.1 allows it; net/http then
// cancels the request's context) but reads on must not get a stream that
// was cut short ended as cleanly as a whole one (a last chunk with no
// terminal event and no error event).
func TestStreamHalfClosedClientSeesNoCleanEnd(t *testing.T) {
	h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "", chunkJSON("first"))
		<-r.Context().Done()
	})
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := h.mint(grant{scope: "model:gpt-4o"})
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", tok, len(streamReq), streamReq)
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	h.remember(b)
	if err == nil && !strings.Contains(string(b), `"error"`) {
		t.Errorf("a cut stream ended cleanly: %q", b)
	}
}

// TestStreamUpstreamFramingHeaders: a stream the upstream frames itself
// (raw chunked encoding, a Content-Length beside it, hop-by-hop headers
// and headers its Connection header names, a Trailer header and trailers
// it announced and did not, one with the key) reaches the client
// re-framed by pamctl: none of the upstream's framing or hop-by-hop
// headers, whole events, the harmless trailers only.
func TestStreamUpstreamFramingHeaders(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
		"Connection: X-Hop, keep-alive\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: evil\r\nTe: trailers\r\n" +
		"Trailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, ev := range []string{"data: " + chunkJSON("Hello") + "\n\n", "data: [DONE]\n\n"} {
		raw += fmt.Sprintf("%x\r\n%s\r\n", len(ev), ev)
	}
	raw += "0\r\nX-T: ok\r\nX-Unannounced: fine\r\nX-Echo: " + vaultedKey + "\r\n\r\n"
	h := streamHarness(t, false, rawAnswer(t, raw))
	res, b := streamCall(t, h)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), "Hello") || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Upgrade", "Te", "Content-Length"} {
		if v, ok := res.Header[k]; ok {
			t.Errorf("header %s: %q reached the client", k, v)
		}
	}
	if res.ContentLength != -1 || len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Errorf("framing: length %d, transfer-encoding %v", res.ContentLength, res.TransferEncoding)
	}
	if where := leaks(vaultedKey, res, b, h); len(where) > 0 {
		t.Errorf("the key reached: %v", where)
	}
	if res.Trailer.Get("X-Echo") != "" || res.Trailer.Get("X-T") != "ok" || res.Trailer.Get("X-Unannounced") != "fine" {
		t.Errorf("trailers %v", res.Trailer)
	}
}

// callEnds records what an Observer learns when calls end.
type callEnds struct {
	mu    sync.Mutex
	stats []CallStats
}

func (o *callEnds) CallBegin(ctx context.Context, _ http.Header) context.Context { return ctx }
func (o *callEnds) StageBegin(context.Context, Stage)                            {}
func (o *callEnds) StageEnd(context.Context, Stage)                              {}
func (o *callEnds) Forward(context.Context, http.Header)                         {}
func (o *callEnds) FirstByte(context.Context)                                    {}
func (o *callEnds) TokenVerified(bool, bool)                                     {}
func (o *callEnds) CallEnd(_ context.Context, st *CallStats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stats = append(o.stats, *st)
}

// TestStreamTakenIsNoError: modifyResponse taking a stream from
// ReverseProxy (errStreamTaken) is not an error anywhere: the client, the
// trail, the Observer (metrics, tracing) and the log see a plain success.
func TestStreamTakenIsNoError(t *testing.T) {
	obs := &callEnds{}
	h := newHarness(t, func(o *Options) { o.Observer = obs })
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeChatStream(w, "gpt-4o", true, nil) })
	res, b := streamCall(t, h)
	if res.StatusCode != http.StatusOK || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
	h.srv.Close() // the handler has returned: the Observer has its CallEnd
	if ev := h.sink.last(t); ev.Status != http.StatusOK || ev.Error != "" {
		t.Errorf("audit status %d error %q", ev.Status, ev.Error)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.stats) != 1 || obs.stats[0].Status != http.StatusOK || obs.stats[0].Code != "" || !obs.stats[0].Stream {
		t.Errorf("observer saw %+v", obs.stats)
	}
	logs := h.logs.String()
	if strings.Contains(logs, errStreamTaken.Error()) || strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("log:\n%s", logs)
	}
}
