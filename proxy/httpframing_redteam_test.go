package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pamctl/pamctl/broker/audit"
)

// Red-team tests at the HTTP level, below the JSON bodies: what a hostile
// agent holding a valid, narrow token can put in the request's framing,
// headers, path and query, and what reaches the upstream of it.

// h2Upstream is an OpenAI-compatible upstream over TLS and HTTP/2, as
// api.openai.com is (the proxy's default transport speaks HTTP/2 to it),
// remembering each request's headers and trailers.
type h2Upstream struct {
	srv *httptest.Server

	mu       sync.Mutex
	headers  []http.Header
	trailers []http.Header
	queries  []string
}

func newH2Upstream(t *testing.T) *h2Upstream {
	u := &h2Upstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // the trailers arrive with the body's end
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.trailers = append(u.trailers, r.Trailer.Clone())
		u.queries = append(u.queries, r.URL.RawQuery)
		u.mu.Unlock()
		if r.ProtoMajor != 2 {
			t.Errorf("upstream spoke %s, want HTTP/2", r.Proto)
		}
		writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	u.srv.EnableHTTP2 = true
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *h2Upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.headers)
}

func (u *h2Upstream) seen() (headers, trailers []http.Header) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...), append([]http.Header(nil), u.trailers...)
}

// harness in front of u.
func (u *h2Upstream) harness(t *testing.T) *harness {
	return newHarness(t, func(o *Options) {
		o.Upstreams = []Upstream{{Name: "openai", URL: u.srv.URL + "/v1", KeyName: "openai", Transport: u.srv.Client().Transport, Timeout: time.Minute}}
	})
}

// TestRequestTrailersNotForwarded: a client's chunked request may end in
// trailers. The proxy reads the whole body (and so the trailers) before it
// forwards, and Go's transport sends a request's Trailer over HTTP/2
// whatever its Content-Length: an OpenAI-Project or OpenAI-Organization
// trailer, a method override, anything the proxy strips from the headers,
// would reach the upstream beside the vaulted key and the configured
// project. And a trailer no server takes (Authorization: Go's HTTP/2
// server resets the stream) sent Go's transport into a loop of retries on
// fresh connections, hundreds a second, for as long as the client waited:
// one call of the agent's hammering the upstream with the vaulted key. No
// client trailer is forwarded, and the upstream is asked once.
func TestRequestTrailersNotForwarded(t *testing.T) {
	for _, trailer := range []http.Header{
		{"X-Harmless": {"1"}},
		{"Openai-Project": {"proj_other"}, "Openai-Organization": {"org-other"}, "X-Http-Method-Override": {"GET"}},
		{"Authorization": {"Bearer sk-agents-own-key"}},
		{"Api-Key": {"sk-agents-own-key"}},
	} {
		t.Run(fmt.Sprint(trailer), func(t *testing.T) {
			up := newH2Upstream(t)
			h := up.harness(t)
			tok := h.mint(grant{scope: "model:gpt-4o-mini"})
			body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/v1/chat/completions", io.MultiReader(strings.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = -1 // chunked, so that it may carry trailers
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			req.Trailer = trailer.Clone()
			res, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatalf("%v (upstream asked %d times)", err, up.count())
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			h.remember(b)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			headers, trailers := up.seen()
			if len(headers) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(headers))
			}
			if len(trailers[0]) > 0 {
				t.Errorf("the client's trailers reached the upstream: %v", trailers[0])
			}
			if got := headers[0].Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+vaultedKey {
				t.Errorf("upstream Authorization has %d values, want the vaulted key alone", len(got))
			}
			for k := range trailer {
				if k != "Authorization" && len(headers[0].Values(k)) > 0 {
					t.Errorf("upstream header %s: %q", k, headers[0].Values(k))
				}
			}
			if v := headers[0].Values("Trailer"); len(v) > 0 {
				t.Errorf("upstream header Trailer: %q", v)
			}
		})
	}
}

// TestCredentialAndUnderscoreHeadersNotForwarded: an upstream (or a
// gateway in front of it) that reads headers as CGI does folds case and
// '_' into '-': OpenAI_Project arrives as OpenAI-Project there, beside or
// over the configured one, Api_Key as Api-Key, Transfer_Encoding as
// framing. Gateways also take a key from X-Api-Key and its kind beside
// Authorization. None of the client's reaches the upstream: no header
// with a '_' (no SDK sends one), none named as a credential.
func TestCredentialAndUnderscoreHeadersNotForwarded(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Upstreams[0].Project = "proj_vaulted" })
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	sent := []string{
		"OpenAI_Project", "proj_other", "OPENAI_ORGANIZATION", "org-other", "Api_Key", "sk-agent",
		"X-Api-Key", "sk-agent", "X_API_KEY", "sk-agent", "Anthropic-Api-Key", "sk-agent", "X-Goog-Api-Key", "sk-agent",
		"Ocp-Apim-Subscription-Key", "sk-agent", "X-Litellm-Api-Key", "sk-agent", "Proxy_Authorization", "Bearer sk-agent",
		"X-Authorization", "Bearer sk-agent", "Content_Length", "5", "Transfer_Encoding", "chunked", "X_Forwarded_For", "10.0.0.1",
		"OpenAI.Organization", "org-other", "OpenAI.Project", "proj_other", "Api.Key", "sk-agent", "Api~Key", "sk-agent",
		"Transfer.Encoding", "chunked", "X-Real.IP", "10.0.0.1", "X-Api!Key", "sk-agent",
		"X-Stainless-Lang", "kept",
	}
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	if res, b := h.do("POST", "/v1/chat/completions", tok, body, sent...); res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	reqs := h.up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	got := reqs[0].Header
	for k, v := range got {
		if strings.ContainsAny(k, "_.~!") || strings.Contains(strings.Join(v, ","), "sk-agent") || strings.Contains(strings.Join(v, ","), "other") {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
	if got.Get("X-Stainless-Lang") != "kept" || got.Get("Openai-Project") != "proj_vaulted" || got.Get("Authorization") != "Bearer "+vaultedKey {
		t.Errorf("upstream headers %v: want X-Stainless-Lang kept, the configured project and the vaulted key", got)
	}
}

// TestModelRouteQueryRefused: the body's model is what pamctl checks
// against the scope, but an OpenAI-compatible gateway may take the model
// (or a deployment) from the query instead: ?model=gpt-4o on a token for
// gpt-4o-mini. A model route's query may hold only what the OpenAI and
// Azure OpenAI APIs read there (api-version); anything else is refused
// before the upstream is asked.
func TestModelRouteQueryRefused(t *testing.T) {
	h := newHarness(t)
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		// A gateway whose query wins over the body.
		model := r.URL.Query().Get("model")
		writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"`+model+`",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"served by `+model+`"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini model:text-embedding-3-small"})
	chat := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions?model=gpt-4o", chat},
		{"POST", "/v1/chat/completions?Model=gpt-4o", chat},
		{"POST", "/v1/chat/completions?api-version=2024-10-21&deployment=gpt-4o", chat},
		{"POST", "/v1/chat/completions?model_name=gpt-4o", chat},
		{"POST", "/v1/chat/completions?x;model=gpt-4o", chat},
		{"POST", "/v1/chat/completions?%6Dodel=gpt-4o", chat},
		{"POST", "/v1/responses?model=gpt-4o", `{"model":"gpt-4o-mini","input":"hi"}`},
		{"POST", "/v1/embeddings?model=text-embedding-3-large", `{"model":"text-embedding-3-small","input":"hi"}`},
		{"GET", "/v1/models/gpt-4o-mini?model=gpt-4o", ""},
	} {
		res, b := h.do(c.method, c.path, tok, c.body)
		if res.StatusCode != http.StatusBadRequest || apiErr(t, b).Code != CodeQueryNotAllowed {
			t.Errorf("%s %s: %d %s, want 400 %s", c.method, c.path, res.StatusCode, b, CodeQueryNotAllowed)
		}
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("the upstream was asked %d times", n)
	}
	// What the APIs read there still goes.
	h.up.set(nil)
	for _, q := range []string{"", "?", "?api-version=2024-10-21", "?API-Version=2024-10-21"} {
		if res, b := h.do("POST", "/v1/chat/completions"+q, tok, chat); res.StatusCode != http.StatusOK {
			t.Errorf("query %q: %d %s", q, res.StatusCode, b)
		}
	}
}

// TestBackslashAndControlInPathRefused: a path reaches the upstream
// re-escaped (a '\' as %5C), and a server that reads a backslash as a
// separator (IIS, and frameworks that normalise Windows paths) serves
// /v1/models/x\..\..\files as /v1/files: past the model route pamctl
// checked (any model name is in an upstream: scope) or out of the
// endpoint glob it matched. No API route or model id has a backslash or a
// control character; such a path is refused.
func TestBackslashAndControlInPathRefused(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "upstream:openai endpoint:/v1/files/*"})
	for _, p := range []string{
		"/v1/models/x%5C..%5C..%5Cfiles", "/v1/models/x%5c..%5c..%5cfiles", "/v1/files/f%5C..%5C..%5Cresponses%5Cresp_1",
		"/v1/models/gpt-4o%00x", "/v1/models/gpt-4o%09", "/v1/models/gpt-4o%0D%0AX:1", "/v1/files/f%7F",
	} {
		res, b := h.do("GET", p, tok, "")
		if res.StatusCode != http.StatusNotFound || apiErr(t, b).Code != "unknown_url" {
			t.Errorf("GET %s: %d %s, want 404 unknown_url", p, res.StatusCode, b)
		}
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("the upstream was asked %d times: %v", n, h.up.requests()[0].Path)
	}
	h.do("GET", "/v1/models/gpt-4o", tok, "")
	if n := h.up.count(); n != 1 {
		t.Errorf("a plain model's path: the upstream was asked %d times, want 1", n)
	}
}

// TestModelBodyGoesAsJSON: pamctl reads a model call's body as JSON and
// checks its model, but forwarded the client's Content-Type and
// Content-Encoding, by which a server picks how to read the body: one
// that reads a form by its type (as many Python servers do) reads
// {"model":"gpt-4o-mini",...,"user":"&model=gpt-4o&"} as model=gpt-4o. A
// model call's body goes as what pamctl read: application/json, with no
// Content-Encoding.
func TestModelBodyGoesAsJSON(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var types, encodings []string
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		types = append(types, strings.Join(r.Header.Values("Content-Type"), "|"))
		encodings = append(encodings, strings.Join(r.Header.Values("Content-Encoding"), "|"))
		mu.Unlock()
		model := ""
		if strings.Contains(r.Header.Get("Content-Type"), "form") {
			_ = r.ParseForm()
			model = r.PostForm.Get("model")
		}
		writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"`+model+`",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"served by `+model+`"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"user":"&model=gpt-4o&"}`
	for _, hdr := range [][]string{
		{"Content-Type", "application/x-www-form-urlencoded"},
		{"Content-Type", "multipart/form-data; boundary=x"},
		{"Content-Type", "text/plain"},
		{"Content-Type", "application/json; charset=utf-16"},
		{"Content-Type", "application/json", "Content-Encoding", "deflate"},
		{"Content-Type", "application/json", "Content-Encoding", "identity"},
	} {
		res, b := h.do("POST", "/v1/chat/completions", tok, body, hdr...)
		if res.StatusCode != http.StatusOK || strings.Contains(string(b), "gpt-4o\"") {
			t.Errorf("%q: %d %s", hdr, res.StatusCode, b)
		}
	}
	// Items added to a conversation are read (and their tool calls
	// judged) as JSON too.
	itok := h.mint(grant{scope: "endpoint:/v1/conversations/*"})
	h.do("POST", "/v1/conversations/conv_1/items", itok, `{"items":[{"type":"message","role":"user","content":"hi"}]}`,
		"Content-Type", "application/x-www-form-urlencoded")
	mu.Lock()
	defer mu.Unlock()
	if len(types) != 7 {
		t.Fatalf("upstream got %d calls, want 7", len(types))
	}
	for i := range types {
		if types[i] != "application/json" || encodings[i] != "" {
			t.Errorf("call %d: upstream got Content-Type %q, Content-Encoding %q; want application/json alone", i, types[i], encodings[i])
		}
	}
}

// streamLog is when a test upstream saw each stream's headers.
type streamLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (l *streamLog) add() {
	l.mu.Lock()
	l.times = append(l.times, time.Now())
	l.mu.Unlock()
}

func (l *streamLog) reset() {
	l.mu.Lock()
	l.times = nil
	l.mu.Unlock()
}

func (l *streamLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.times)
}

// longestQuickRun is the most streams in a row each of which came within
// gap of the one before: the attempts the cap counts as one run (a pause
// of quickRetry or more, which a loaded machine can make between two
// attempts, starts the count again by design).
func (l *streamLog) longestQuickRun(gap time.Duration) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	best, run := 0, 0
	for i, at := range l.times {
		if i == 0 || at.Sub(l.times[i-1]) >= gap {
			run = 0
		}
		run++
		best = max(best, run)
	}
	return best
}

// resettingUpstream is an HTTP/2 upstream that resets every stream with
// PROTOCOL_ERROR as soon as it sees its headers, logging streams.
func resettingUpstream(t *testing.T) (addr string, tr http.RoundTripper, streams *streamLog) {
	srv := httptest.NewUnstartedServer(nil)
	srv.EnableHTTP2 = true
	srv.StartTLS() // for its certificate and a client that trusts it
	t.Cleanup(srv.Close)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: srv.TLS.Certificates, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	streams = new(streamLog)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(conn net.Conn) {
				defer conn.Close()
				if _, err := io.ReadFull(conn, make([]byte, len(http2.ClientPreface))); err != nil {
					return
				}
				fr := http2.NewFramer(conn, conn)
				_ = fr.WriteSettings()
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							_ = fr.WriteSettingsAck()
						}
					case *http2.HeadersFrame:
						streams.add()
						_ = fr.WriteRSTStream(f.StreamID, http2.ErrCodeProtocol)
					}
				}
			}(conn)
		}
	}()
	return ln.Addr().String(), srv.Client().Transport, streams
}

// TestUpstreamResetsAreNotRetriedWithoutBound: Go's transport sends a
// request again, on a fresh connection and without pause, whenever an
// HTTP/2 upstream resets its stream with PROTOCOL_ERROR (or a connection
// it took from the pool turns out dead): an upstream that resets every
// stream (broken, hostile, or refusing what the call carries) had one
// agent call sent hundreds of times a second, each with the vaulted key,
// for as long as the client waited. A call goes upstream at most
// maxUpstreamAttempts times, then fails with 502.
func TestUpstreamResetsAreNotRetriedWithoutBound(t *testing.T) {
	addr, tr, streams := resettingUpstream(t)
	h := newHarness(t, func(o *Options) {
		o.Upstreams = []Upstream{{Name: "openai", URL: "https://" + addr + "/v1", KeyName: "openai", Transport: tr, Timeout: time.Minute}}
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	cl := *h.srv.Client()
	cl.Timeout = 10 * time.Second
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"GET", "/v1/models/gpt-4o-mini", ""},
	} {
		streams.reset()
		res, b, err := h.doAt(&cl, h.srv.URL, c.method, c.path, tok, c.body)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		// Counted at the upstream: a run is cut where the upstream saw a
		// gap of 200 ms or more. The proxy restarts its count after a
		// gap of quickRetry between writing two attempts' headers, which
		// a loaded machine can make (seen under -race: 18 streams in
		// 1.3 s); the upstream sees the same gap shortened or lengthened
		// by scheduling. The loop this test is about has no gap at all.
		if n := streams.longestQuickRun(200 * time.Millisecond); n > maxUpstreamAttempts || n == 0 {
			t.Errorf("%s %s: the upstream was sent the call %d times in quick succession (%d in all), want 1 to %d", c.method, c.path, n, streams.count(), maxUpstreamAttempts)
		}
		if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
			t.Errorf("%s %s: %d %s, want 502 %s", c.method, c.path, res.StatusCode, b, CodeUpstreamError)
		}
	}
	waitFor(t, "the calls' audit events", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) == 3 })
	if ev := h.sink.last(t); ev.Status != http.StatusBadGateway || ev.Error == "" {
		t.Errorf("audit status %d error %q, want 502 and why", ev.Status, ev.Error)
	}
}

// TestClientAddressHeadersNotForwarded: the upstream's client is the
// proxy. A client's claim to another address (X-Real-IP, True-Client-IP,
// CF-Connecting-IP, X-Forwarded-*, ...) would reach a gateway that keys
// allow-lists or rate limits on it, and pamctl never checked it;
// ReverseProxy drops only Forwarded and X-Forwarded-For/-Host/-Proto.
// None goes upstream; the trail records the connection's address.
func TestClientAddressHeadersNotForwarded(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	claims := []string{"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Cf-Connecting-Ipv6", "Fastly-Client-Ip",
		"X-Cluster-Client-Ip", "Client-Ip", "X-Originating-Ip", "X-Remote-Addr", "X-Remote-Ip", "Forwarded-For", "X-Forwarded",
		"X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Ssl", "X-Original-Forwarded-For", "X-Forwarded-For", "Forwarded",
		"X-Clientip", "X-Azure-Clientip", "X-Real-Client-Addr", "X-Client-Addr"}
	var hdr []string
	for _, k := range claims {
		hdr = append(hdr, k, "10.9.8.7")
	}
	hdr = append(hdr, "User-Agent", "kept", "X-Stainless-Os", "kept")
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	if res, b := h.do("POST", "/v1/chat/completions", tok, body, hdr...); res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	reqs := h.up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	for k, v := range reqs[0].Header {
		if strings.Contains(strings.Join(v, ","), "10.9.8.7") {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
	if reqs[0].Header.Get("User-Agent") != "kept" || reqs[0].Header.Get("X-Stainless-Os") != "kept" {
		t.Errorf("the ordinary headers were dropped too: %v", reqs[0].Header)
	}
	if ev := h.sink.last(t); strings.Contains(fmt.Sprint(ev), "10.9.8.7") {
		t.Errorf("the trail took a client's address claim: %+v", ev)
	}
}
