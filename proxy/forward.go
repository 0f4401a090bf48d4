package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/toolcall"
)

// reverseProxy forwards calls to up. Rewrite swaps the client's token for
// the vaulted key; ModifyResponse reads usage, masks, and writes the audit
// event before the end of the answer reaches the client; ErrorHandler maps
// transport failures to 502/504 in OpenAI's shape. The upstream's 1xx
// answers are not relayed (noInformational).
func (p *Proxy) reverseProxy(up *upstream, rt http.RoundTripper) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			c := callFrom(pr.In.Context())
			out := pr.Out
			rel := strings.TrimPrefix(c.path, "/v1")
			if c.kind == epModel {
				rel = "/models/" + c.model
			}
			out.URL = up.target(rel, pr.In.URL.RawQuery)
			out.Host = ""
			h := out.Header
			// Only the client headers the upstream's forward set allows go
			// (headers.go): what the SDKs send and an upstream may use, and
			// what the operator listed. Not the client's Authorization or
			// Api-Key, organization or project, cookies, Range (a client
			// asking for slices of an answer would get each one checked
			// alone), Accept-Encoding, a protocol switch (Connection,
			// Upgrade: ReverseProxy hands the raw connection over on a
			// 101), method overrides and original paths, names a CGI-style
			// server folds into others, credentials, address claims,
			// routing and billing selectors under any other name.
			// ReverseProxy has already dropped the hop-by-hop headers and
			// those the client's Connection names.
			for k := range h {
				if !up.fwd.allows(k) {
					delete(h, k)
				}
			}
			up.fwd.perCaller(h, c.key.v, c.claims)
			up.setKeys(h, c.key.v, c.extraKey.v)
			if up.org != "" {
				h.Set("OpenAI-Organization", up.org)
			}
			if up.project != "" {
				h.Set("OpenAI-Project", up.project)
			}
			h.Set("X-Request-Id", c.id)
			if p.obs != nil && c.octx != nil {
				p.obs.StageBegin(c.octx, StageUpstream)
				p.obs.Forward(c.octx, h)
			}
			c.keys = p.noteKey(pr.In.Context(), c.key.v)
			if c.extraKey.v != "" {
				c.keys = p.noteKey(pr.In.Context(), c.extraKey.v)
			}
			p.detachUpstream(pr, c)
			if c.body != nil {
				// A stream's request lets go of its bytes once sent (the
				// answer may run for minutes); any other goes as a
				// bytes.Reader, which net/http writes with the headers in
				// one system call instead of flushing the headers first.
				// GetBody (a retry before any answer) reads c.body, which
				// modifyResponse lets go: the transport's copies of the
				// request keep it for as long as a stream stays open.
				newBody := func() io.ReadCloser { return io.NopCloser(bytes.NewReader(c.body)) }
				if c.stream {
					newBody = func() io.ReadCloser { return &onceBody{b: c.body} }
				}
				out.Body = newBody()
				out.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
				out.ContentLength = int64(len(c.body))
				h.Set("Content-Length", strconv.Itoa(len(c.body)))
				if c.kind.hasModelBody() || itemsRequest(c.method, c.path) && len(bytes.TrimSpace(c.body)) > 0 {
					// The body is the JSON pamctl read and checked (a
					// model call's, or items added to a conversation); a
					// server picks how to read a body by these (a form
					// reader finds model=gpt-4o in a JSON string).
					h.Set("Content-Type", "application/json")
					h.Del("Content-Encoding")
				}
			} else {
				out.Body, out.GetBody, out.ContentLength = nil, nil, 0
				h.Del("Content-Length")
			}
			out.TransferEncoding = nil
			// A chunked request's trailers arrived with its body, which
			// readBody read whole. None goes on: over HTTP/2 Go's
			// transport sends a request's trailers whatever its length,
			// past every header this Rewrite drops (an OpenAI-Project,
			// an override), and one a server refuses (Authorization:
			// the stream is reset) sent it into a loop of retries on
			// fresh connections, hundreds a second, for one call.
			out.Trailer = nil
		},
		Transport: noInformational{rt},
		// Streams are written by relayStream; pass-through answers have no
		// length, so ReverseProxy flushes each write of theirs. A buffered
		// answer leaves in one write when the handler returns (with -1 every
		// call started a timer goroutine to flush the headers alone).
		FlushInterval:  0,
		BufferPool:     copyBuffers,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
}

// noInformational is the upstream transport as ReverseProxy sees it: the
// upstream's 1xx answers (103 Early Hints and the like) are dropped, not
// relayed. ReverseProxy relays each one to the client as it arrives,
// headers as the upstream wrote them, through a client trace it adds just
// before the round trip: past Rewrite and before modifyResponse, so no
// check of pamctl's (the key scrub, the hop-by-hop and route headers)
// would see them, and the trace clears every header pamctl had set on the
// answer. pamctl offers no 1xx of the upstream's to its clients: the
// transport gets a context whose client trace has no Got1xxResponse, and
// skips them as it does without a trace.
type noInformational struct{ rt http.RoundTripper }

// RoundTrip also bounds how often one call is sent: Go's transport sends a
// request again, on a fresh connection and without pause, whenever an
// HTTP/2 upstream resets its stream with PROTOCOL_ERROR or a pooled
// connection turns out dead, for as long as the request's context lives.
// An upstream that resets every stream would get one call hundreds of
// times a second, each with the vaulted key; after maxUpstreamAttempts
// attempts in quick succession the call fails with 502 (detachUpstream
// counts them and cancels the call).
func (t noInformational) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.rt.RoundTrip(r.WithContext(no1xxTrace{r.Context()}))
	if err == nil {
		return res, nil
	}
	if c := callFrom(r.Context()); c != nil && c.upAttempts.Load() >= maxUpstreamAttempts && c.clientContext(r.Context()).Err() == nil {
		name := "the upstream"
		if c.up != nil {
			name = strconv.Quote(c.up.name)
		}
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %s refused the call on each of %d attempts in a row (it reset the request or dropped the connection), so the call failed. Retry later; if it persists an administrator should check the upstream.", name, maxUpstreamAttempts), err)
	}
	return nil, err
}

// maxUpstreamAttempts is how many times at most one call is sent upstream
// within quickRetry of each other (a retry on a pooled connection that
// died is the common second).
const maxUpstreamAttempts = 10

// quickRetry is how soon after the last attempt another counts as part
// of the same burst; the transport's backed-off retries come later.
const quickRetry = 500 * time.Millisecond

// no1xxTrace is a context whose client trace, if any, lacks
// Got1xxResponse.
type no1xxTrace struct{ context.Context }

func (c no1xxTrace) Value(k any) any {
	v := c.Context.Value(k)
	if t, ok := v.(*httptrace.ClientTrace); ok && t != nil && t.Got1xxResponse != nil {
		cp := *t
		cp.Got1xxResponse = nil
		return &cp
	}
	return v
}

// reservedAnswerHeader reports whether an upstream's answer header (or
// trailer) named k is not relayed: pamctl's own (Pamctl-*, X-Request-Id,
// set on every answer), the upstream's cookies and the organization and
// project the vaulted key belongs to.
func reservedAnswerHeader(k string) bool {
	k = http.CanonicalHeaderKey(k)
	switch k {
	case "X-Request-Id", "Set-Cookie", "Set-Cookie2", "Openai-Organization", "Openai-Project":
		return true
	}
	return strings.HasPrefix(k, "Pamctl-")
}

// relayableTrailers drops from an answer's trailers those the client must
// not get: the headers pamctl strips from the answer (which a trailer
// would bring back) and the fields no trailer may carry (framing, routing,
// authentication, content type and encoding: httpguts.ValidTrailerHeader).
func relayableTrailers(t http.Header) {
	for k := range t {
		if reservedAnswerHeader(k) || !httpguts.ValidTrailerHeader(k) {
			delete(t, k)
		}
	}
}

// routeOverride reports whether a header (or query key) named k may tell
// a server to act on another method or path than the request's: the
// method overrides (X-HTTP-Method-Override and its spellings, X-HTTP-Verb,
// X-Forwarded-Method, X-Original-Method, ...) and the original-path
// headers of proxies and rewriters (X-Original-URL, X-Rewrite-URL,
// X-Forwarded-URI/Path/Prefix, X-Envoy-Original-Path). Case and
// underscores are folded, as CGI-style servers fold them.
func routeOverride(k string) bool {
	// Every request's headers pass here: folded in place, not copied.
	if containsFolded(k, "method") || containsFolded(k, "http-verb") {
		return true
	}
	if len(k) > 2 && foldedEqual(k[:2], "x-") {
		k = k[2:]
	}
	for _, h := range pathOverrides {
		if foldedEqual(k, h) {
			return true
		}
	}
	return false
}

// foldableName reports whether a header name holds anything but ASCII
// letters, digits and '-': a server that reads headers as CGI does folds
// '_' into '-' (some fold every other character), so OpenAI_Project or
// OpenAI.Project is OpenAI-Project there, and Transfer_Encoding framing.
// No OpenAI SDK sends such a name.
func foldableName(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return true
		}
	}
	return false
}

// addressOwner reports a word that, before "ip" or "addr" (ClientIP,
// RealIP, RemoteAddr), says whose address it is.
func addressOwner(w string) bool {
	for _, o := range []string{"client", "real", "remote", "user", "source", "src", "origin", "originating", "peer", "true", "connecting", "caller", "end", "orig"} {
		if foldedEqual(w, o) {
			return true
		}
	}
	return false
}

// pathOverrides are the original-path headers, without their x- prefix.
var pathOverrides = []string{"original-url", "original-uri", "rewrite-url", "forwarded-uri", "forwarded-path", "forwarded-prefix", "envoy-original-path", "original-path"}

// foldedEqual reports whether a equals b (lower case, '-' for separators)
// with ASCII case and '_' for '-' folded.
func foldedEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}

// containsFolded reports whether a holds sub under foldedEqual.
func containsFolded(a, sub string) bool {
	for i := 0; i+len(sub) <= len(a); i++ {
		if foldedEqual(a[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// copyBuffers lends ReverseProxy the buffer it copies each answer through.
// Without a pool it allocates 32 KiB per call (a third of the bytes a
// buffered call allocated, all garbage), and a stream holds its buffer for
// as long as it stays open; 4 KiB (what net/http buffers per connection)
// is ample for events of a few hundred bytes and for buffered answers,
// which are copied from memory.
var copyBuffers httputil.BufferPool = &bufferPool{size: 4 << 10}

type bufferPool struct {
	size int
	pool sync.Pool // of *[]byte
}

func (b *bufferPool) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, b.size)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != b.size {
		return
	}
	buf = buf[:b.size]
	b.pool.Put(&buf)
}

// modifyResponse prepares the upstream's answer for the client.
func (p *Proxy) modifyResponse(res *http.Response) error {
	c := callFrom(res.Request.Context())
	c.status = res.StatusCode
	if p.obs != nil && c.octx != nil {
		p.obs.FirstByte(c.octx)
	}
	// The upstream answered: the request body (the prompt) is not needed
	// again, however long the answer streams.
	c.body = nil
	res.Request.GetBody = nil
	p.releaseReservation(c) // a long stream holds no request-body budget
	// The trail keeps at most audit.MaxTextBytes of the prompt; keep no
	// more than that (its own copy) while the answer runs.
	c.promptLen = len(c.prompt)
	if len(c.prompt) > audit.MaxTextBytes+64 {
		c.prompt = strings.Clone(clip(c.prompt, audit.MaxTextBytes+64))
	}
	if c.stream {
		// The request's strings may share one array with the decoded body
		// (payload.ParseRequest): a stream, which may stay open for
		// minutes, keeps its own copies of the small ones (the prompt,
		// when masking changed it, is a string of its own already).
		c.clientModel, c.model = strings.Clone(c.clientModel), strings.Clone(c.model)
		for i, u := range c.unscanned {
			c.unscanned[i] = strings.Clone(u)
		}
	}
	h := res.Header
	dropped := scrubHeader(h, c.keys)
	// Announced trailers: ReverseProxy names them in the client's Trailer
	// header before the body; their values are scrubbed when it ends.
	dropped = append(dropped, scrubHeader(res.Trailer, c.keys)...)
	if len(dropped) > 0 {
		p.log.Warn("proxy: dropped upstream headers carrying a vaulted key", "request_id", c.id, "headers", len(dropped))
	}
	c.upstreamID = h.Get("X-Request-Id")
	// The chain already set X-Request-Id, Pamctl-Audit-Id and Pamctl-Grant
	// on the client's answer; ReverseProxy adds (not replaces) the
	// upstream's headers, so an upstream's own must go, with any other
	// Pamctl- header (pamctl's to set) and the upstream's cookies and
	// account names.
	for k := range h {
		if reservedAnswerHeader(k) {
			delete(h, k)
		}
	}
	if c.upstreamID != "" {
		h.Set("Pamctl-Upstream-Request-Id", c.upstreamID)
	}
	relayableTrailers(res.Trailer) // the names the client's Trailer header announces

	if res.StatusCode == http.StatusUnauthorized {
		// The provider refused the vaulted key. Its message may quote part
		// of the key, so none of it goes to the client.
		_ = res.Body.Close()
		return upstreamAuthError(c.up)
	}

	if res.StatusCode < 100 || res.StatusCode > 599 {
		// Go's transport takes any three digits for a status (999, 600,
		// 099); no client knows what such a status means (an SDK may
		// take 600 for anything), and relaying it would pass it on as
		// the client's status line.
		_ = res.Body.Close()
		c.errDetail = fmt.Sprintf("upstream answered status %d, outside 100-599", res.StatusCode)
		return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %q answered with status %d, which is not an HTTP status (100-599), so the call failed. Retry; if it persists an administrator should check the upstream.", c.up.name, res.StatusCode), nil)
	}
	if res.StatusCode < 200 {
		// 101 Switching Protocols (ReverseProxy would hand the client's
		// connection to the upstream, raw, past masking, the key scrub
		// and the trail) or another 1xx as a final answer: pamctl asked
		// for neither.
		_ = res.Body.Close()
		c.errDetail = fmt.Sprintf("upstream answered %d", res.StatusCode)
		return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %q answered %d %s, which pamctl does not relay (it proxies no protocol switch), so the call failed. Retry; if it persists an administrator should check the upstream.", c.up.name, res.StatusCode, http.StatusText(res.StatusCode)), nil)
	}
	if redirect := res.StatusCode >= 300 && res.StatusCode < 400 && res.StatusCode != http.StatusNotModified; redirect || res.StatusCode == http.StatusPartialContent {
		// A redirect sends the client's SDK (openai-python follows them)
		// elsewhere with its own, unmasked request, and takes what it is
		// answered there for the upstream's answer, past masking, the
		// tool-call firewall and the trail; a 3xx without a Location
		// is read as a success by the SDKs but was routed as an error
		// here. A partial answer is checked alone, not with the slices
		// the client joins it to. pamctl relays neither.
		_ = res.Body.Close()
		c.errDetail = fmt.Sprintf("upstream answered %d", res.StatusCode)
		what := "a redirect"
		if !redirect {
			what = "a partial answer"
		}
		return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %q answered %d %s, %s, which pamctl does not relay (it could not inspect what the client would get), so the call failed. If it persists an administrator should check the upstream URL in the pamctl config.", c.up.name, res.StatusCode, http.StatusText(res.StatusCode), what), nil)
	}
	if c.kind.answersObject() && res.StatusCode == http.StatusNotModified {
		// No model call, stored answer or model description asks for
		// revalidation.
		_ = res.Body.Close()
		c.errDetail = "upstream answered 304 to a call whose answer is an object"
		return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %q answered 304 Not Modified to a call that did not ask for it, so the call failed. Retry; if it persists an administrator should check the upstream.", c.up.name), nil)
	}
	if c.kind.answersObject() && (res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusResetContent) {
		// A model call, a stored answer read back or a model's
		// description answered with no content: a client (a stream's
		// above all) would take the empty answer for a whole one, and a
		// 205's body (Go relays one) would skip the checks of a 2xx.
		_ = res.Body.Close()
		c.errDetail = fmt.Sprintf("upstream answered %d to a call whose answer is an object", res.StatusCode)
		return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %q answered %d %s to a call that has no answer without content, so the call failed. Retry; if it persists an administrator should check the upstream.", c.up.name, res.StatusCode, http.StatusText(res.StatusCode)), nil)
	}
	if res.StatusCode == http.StatusResetContent && res.ContentLength != 0 {
		// A 205 has no content (RFC 9110), but Go relays whatever body an
		// upstream sends with one, and clients read it. An endpoint:
		// route's 205 is relayed only empty.
		var one [1]byte
		n, err := io.ReadFull(res.Body, one[:])
		_ = res.Body.Close()
		if n > 0 || !errors.Is(err, io.EOF) {
			c.errDetail = "upstream answered 205 with content"
			return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
				"Upstream %q answered 205 Reset Content with content, which a 205 never has, so the call failed. Retry; if it persists an administrator should check the upstream.", c.up.name), err)
		}
		res.Body, res.ContentLength = http.NoBody, 0
		h.Del("Content-Length")
	}
	if ce := strings.TrimSpace(h.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		// The transport decodes the gzip it asked for; anything else
		// (br, deflate, gzip unasked) could not be masked or scrubbed.
		_ = res.Body.Close()
		c.errDetail = "upstream answer encoded as " + quoteUpstream(ce)
		return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
			"Upstream %q sent its answer with Content-Encoding %s, which the proxy cannot inspect, so it is withheld. Retry; if it persists an administrator should check the upstream.", c.up.name, quoteUpstream(ce)), nil)
	}
	ct := h.Get("Content-Type")
	if cs, ok := foreignCharset(ct); ok {
		// A client decodes the answer in the charset it declares: text in
		// UTF-16 or Latin-1 is text the proxy's masking and key scrubbing
		// (which read UTF-8) never saw.
		_ = res.Body.Close()
		c.errDetail = "upstream answer in charset " + clip(cs, 40)
		return errUpstream(http.StatusBadGateway, CodeUpstreamEncoding, fmt.Sprintf(
			"Upstream %q declared a charset other than UTF-8 for its answer; the proxy inspects only UTF-8, so the answer is withheld. Retry; if it persists an administrator should check the upstream.", c.up.name), nil)
	}
	mt, _, _ := mime.ParseMediaType(ct)
	// Streams and passed-through answers are rewritten on the way (keys
	// scrubbed, text masked): their length is no longer the upstream's.
	unsized := func() {
		res.ContentLength = -1
		h.Del("Content-Length")
	}
	switch {
	case res.StatusCode < 300 && (c.kind == epChat || c.kind == epResponses) && (mt == "text/event-stream" || c.stream):
		// A stream request's answer goes through the SSE relay whatever
		// its type: the SDKs parse SSE framing in an answer labelled
		// x-ndjson, text/plain, JSON or nothing, and join its deltas, so
		// it is masked and scrubbed per field like any stream. An answer
		// without SSE framing relays nothing and ends in an error event.
		// Embeddings never stream: events there are refused below
		// (bufferedAnswer), as the relay reads no embeddings shape.
		unsized()
		if mt != "text/event-stream" {
			h.Set("Content-Type", "text/event-stream")
		}
		// pamctl writes the stream itself (relayStream, once ReverseProxy
		// returns): ReverseProxy is told to stand down.
		body := scrubbedChunks(newStreamBody(c.clientContext(res.Request.Context()), p, c, res.Body), c.keys, &res.Trailer)
		c.taken = &takenStream{res: res, body: body}
		res.Body = http.NoBody
		return errStreamTaken
	case res.StatusCode >= 400 || mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		c.kind.hasModelBody() || c.kind == epModel || c.kind.stored():
		// A model call's answer in a type pamctl does not parse (text/plain,
		// x-ndjson, none) is read as JSON all the same, never passed
		// through verbatim: one that is not a JSON object is withheld,
		// and so is one in SSE framing (bufferedAnswer). One
		// model's description is a few hundred bytes whatever its type:
		// read whole, a bad one is a clean 502, never a cut connection.
		if c.kind == epOther && res.StatusCode < 300 {
			res.Body = withoutBOM(res.Body) // judged as without it (sniff.go)
		}
		return p.bufferedAnswer(c, res)
	case res.StatusCode < 300 && mt == "text/event-stream" && storedPath(c.path):
		// Another method on a stored answer's path (DELETE, QUERY, ...)
		// answered with events: a stored answer replayed past the
		// stored routes' masking and tool checks.
		_ = res.Body.Close()
		c.errDetail = "upstream answered a stored answer's path with a stream"
		return errUpstream(http.StatusBadGateway, CodeUpstreamUnexpectedStream, fmt.Sprintf(
			"Upstream %q answered %s %s with a Server-Sent Events stream; pamctl does not relay a stored answer as events (it could not mask it or judge its tool calls), so it is withheld. Fetch it whole with GET.", c.up.name, c.method, c.path), nil)
	default:
		if c.kind == epOther && res.StatusCode < 300 && p.sniffOther(c, res) {
			// It opens as JSON, whatever its label: checked as a
			// JSON-labelled answer is (sniff.go).
			return p.bufferedAnswer(c, res)
		}
		unsized()
		src := res.Body
		if textual(mt) {
			src = &utf8Body{src: src}
		}
		res.Body = newScrubBody(&tailBody{src: src, c: c, finish: func(err error) error {
			relayableTrailers(res.Trailer) // all of them are in now
			return p.finishPassThrough(c.clientContext(res.Request.Context()), c, err)
		}}, c.keys, &res.Trailer)
		return nil
	}
}

// bufferedAnswer reads a JSON (or error) answer whole, masks it, counts its
// usage and writes the audit event, all before the first byte is sent.
func (p *Proxy) bufferedAnswer(c *call, res *http.Response) error {
	ctx := c.clientContext(res.Request.Context())
	size := res.ContentLength
	if size < 0 || size > 64<<10 {
		size = 4 << 10 // grow as it comes
	}
	limit := int64(maxResponseBody)
	if c.kind.answerPath() == "" {
		limit = maxOtherBody // only scanned for usage, never decoded whole
	}
	body, err := readBuffered(res.Body, size, limit)
	_ = res.Body.Close()
	c.release()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("client went away: %w", ctx.Err())
		}
		return errUpstream(http.StatusBadGateway, CodeUpstreamError,
			fmt.Sprintf("Upstream %q broke off its answer. Retry the request.", c.up.name), err)
	}
	if int64(len(body)) > limit {
		c.errDetail = "upstream answer too large"
		return errUpstream(http.StatusBadGateway, CodeUpstreamTooLarge,
			fmt.Sprintf("Upstream %q answered with more than %d MiB, more than the proxy buffers to inspect an answer; the answer is withheld. Ask for a shorter answer (max_tokens, fewer choices) or stream it.", c.up.name, limit>>20), nil)
	}
	if !utf8Text(body) {
		// UTF-16/32 (with or without a BOM), Latin-1, binary: JSON
		// decoders such as Python's detect UTF-16/32 and read it, but
		// masking and key scrubbing read UTF-8.
		c.errDetail = "upstream answer not UTF-8"
		return errUpstream(http.StatusBadGateway, CodeUpstreamEncoding, fmt.Sprintf(
			"Upstream %q answered with text that is not UTF-8 (or holds NUL bytes); the proxy inspects only UTF-8, so the answer is withheld. Retry; if it persists an administrator should check the upstream.", c.up.name), nil)
	}
	if res.StatusCode < 300 && (c.kind.hasModelBody() || c.kind.stored()) && sseFramed(body) {
		// A non-stream call answered with SSE framing: a client that parses
		// it joins deltas that were masked and scrubbed apart, as text.
		c.errDetail = "upstream answered a non-stream call with a stream"
		return errUpstream(http.StatusBadGateway, CodeUpstreamUnexpectedStream, fmt.Sprintf(
			"Upstream %q answered a request without \"stream\": true with a Server-Sent Events stream, so the answer is withheld. Retry; set \"stream\": true to stream.", c.up.name), nil)
	}
	if res.StatusCode < 300 {
		// Nothing of an answer in another shape than its route's is
		// masked, judged or relayed (answershape.go).
		if err := answerShapeError(c, body); err != nil {
			c.errDetail = err.Error()
			return errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf(
				"Upstream %q answered %s %s with something that is not that route's answer, so it is withheld. Retry; if it persists an administrator should check the upstream.", c.up.name, c.method, c.path), nil)
		}
	}
	body = c.keys.Bytes(body)
	// A key only the agent's second decode of a call's arguments yields
	// (escapes whose letters are escaped too), masking on or off, judged
	// or not: before masking, so no finding splits a key.
	body = payload.ScrubArguments(body, c.keys)
	res.Trailer = nil // trailers of a buffered answer are not relayed
	if res.StatusCode >= 400 {
		// Errors may quote the prompt; placeholders keep the JSON valid.
		if masked, _ := c.ResponseMask.Mask(payload.ValidText(string(body), c.ResponseMask)); masked != string(body) {
			body = []byte(masked)
		}
		body = upstreamErrorBody(c, res.StatusCode, body)
		res.Header.Set("Content-Type", "application/json")
		c.errDetail = "upstream answered " + strconv.Itoa(res.StatusCode)
	} else if body, err = p.maskAnswer(c, body); err != nil {
		return errUpstream(http.StatusBadGateway, CodeUpstreamError,
			fmt.Sprintf("Upstream %q sent an answer the proxy could not mask, so it is withheld.", c.up.name), err)
	} else if body, err = p.judgeAnswer(ctx, c, body); err != nil {
		// Judged after masking, as streams are (their buffer sits behind
		// the streaming masker): a rule sees what the agent would see.
		return p.toolJudgeError(ctx, c, err)
	}
	p.countUsage(c)
	if err := p.audit(ctx, c); err != nil {
		return p.auditError(err)
	}
	body = c.keys.Bytes(body) // re-encoding could not spell a key, but check what leaves
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	res.Header.Set("Content-Length", strconv.Itoa(len(body)))
	res.Header.Del("Content-Encoding")
	res.TransferEncoding = nil
	return nil
}

// maskAnswer masks a non-streamed answer of a model call, or a stored one
// read back, and reads its usage and summary. Answers of other endpoints
// (granted by endpoint: scopes) pass unmasked, only their usage read,
// unless they hold a stored model answer (readBackShape).
func (p *Proxy) maskAnswer(c *call, body []byte) ([]byte, error) {
	shape := c.kind.answerPath()
	var top answerTop
	if shape == "" || c.kind.stored() {
		// Vectors hold no model-written text; an embeddings answer may be
		// tens of MiB, read here for its usage only.
		_ = json.Unmarshal(body, &top)
	}
	if shape == "" && c.kind == epOther {
		var err error
		if shape, err = top.readBackShape(); err != nil {
			c.errDetail = err.Error()
			return nil, err
		}
		if r := answerShape(shape); r != nil {
			// A stored chat completion or Response is judged where that
			// shape keeps its calls: none may sit in the other's members.
			if err := r.checkBody(body); err != nil {
				c.errDetail = err.Error()
				return nil, err
			}
		}
		if shape == "" && (c.ResponseMask.Enabled() || p.toolJudge(c) != nil) {
			if err := otherReading(body); err != nil {
				c.errDetail = err.Error()
				return nil, err
			}
		}
	}
	if c.kind.stored() && top.Object != "" && storedObject(top.Object, shape) != shape {
		// These routes answer with one stored object (the item lists with
		// a "list"); anything else would be masked and judged in the wrong shape.
		err := fmt.Errorf("the answer is %s, not the stored object this endpoint returns: withheld", quoteUpstream(top.Object))
		c.errDetail = err.Error()
		return nil, err
	}
	c.shape = shape
	if c.kind == epModel && c.ResponseMask.Enabled() {
		// One model's description: every string masked (it has no
		// answer shape; a few hundred bytes, read whole).
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			c.errDetail = "upstream's model description is not JSON"
			return nil, err
		}
		counts := mask.Counts{}
		out, err := json.Marshal(payload.MaskStrings(v, func(s string) string {
			m, n := c.ResponseMask.Mask(s)
			counts.Add(n)
			return m
		}, nil))
		if err != nil {
			return nil, err
		}
		if counts.Total() > 0 {
			c.maskedOut = counts
		}
		return out, nil
	}
	if shape == "" {
		if top.Usage != nil {
			c.usage, c.hasUsage = top.Usage.usage(), true
		}
		return body, nil
	}
	p.stageBegin(c, StageMask)
	out, res, err := payload.MaskResponse(shape, body, c.ResponseMask)
	p.stageEnd(c, StageMask)
	if err != nil {
		return nil, err
	}
	c.summary = res.Summary
	// A stored answer read back (by GET, or another route that answers
	// with it) had its usage counted when it was made, unless it was a
	// background response: its POST answered "queued", without usage,
	// so the read that finds it done counts it (each such read does).
	if res.HasUsage && (c.kind.hasModelBody() || top.Background) {
		c.usage = tokenUsage{Input: res.Usage.InputTokens, Output: res.Usage.OutputTokens, Total: res.Usage.TotalTokens}
		c.hasUsage = true
	}
	if res.Counts.Total() > 0 {
		c.maskedOut = res.Counts
	}
	return out, nil
}

// answerTop is what the top of an answer says of itself.
type answerTop struct {
	Object     string     `json:"object"`
	Type       string     `json:"type"`
	Background bool       `json:"background"`
	Usage      *usageJSON `json:"usage"`
	Data       []struct {
		Object string `json:"object"`
		Type   string `json:"type"`
		// A chat message's calls (matched in any letter case, as
		// encoding/json matches names).
		ToolCalls    json.RawMessage `json:"tool_calls"`
		FunctionCall json.RawMessage `json:"function_call"`
	} `json:"data"`
}

// storedObjects are the stored model answers other endpoints may answer
// with, and the POST path whose answer shape each has.
var storedObjects = map[string]string{"response": "/v1/responses", "chat.completion": "/v1/chat/completions"}

// readBackShape is the answer shape of an endpoint: answer (of a route
// classify does not know as a stored one) that is a stored model answer
// all the same. Such an answer is masked and judged like the GET's; a list
// holding one (GET /v1/chat/completions) is withheld, as pamctl does not
// mask lists. Responses items are judged wherever they come from: an
// answer whose data holds a call item is masked and judged as an item
// list, one that is a call item as one item (another method on an item
// route, a method override a framework reads from the body, a route
// OpenAI adds). So are chat messages: an answer whose data holds a
// message with tool_calls or a function_call (in any letter case) is
// masked and judged as a chat completion's messages.
func (t *answerTop) readBackShape() (string, error) {
	if shape, ok := storedObjects[t.Object]; ok {
		return shape, nil
	}
	for _, d := range t.Data {
		if _, ok := storedObjects[d.Object]; ok {
			return "", fmt.Errorf("a list of stored model answers (%s) is withheld: pamctl does not mask or judge lists; read each by its id", d.Object)
		}
	}
	for _, d := range t.Data {
		if callItem(d.Type) {
			return payload.EndpointItems, nil
		}
	}
	for _, d := range t.Data {
		if present(d.ToolCalls) || present(d.FunctionCall) {
			return payload.EndpointChatMessages, nil
		}
	}
	if callItem(t.Type) {
		return payload.EndpointItem, nil
	}
	return "", nil
}

// otherReading refuses an endpoint: answer that readBackShape found no
// stored answer, call item or chat message with calls in, but that may
// hold a call another decoder reads: one whose first JSON value (an agent
// decoding with json.Decoder stops there) readBackShape would take for
// one, is ambiguous (a "data" and a "Data", duplicate keys, a read key in
// another letter case: encoding/json reads one of them, other decoders
// the other) or is an object encoding/json does not read at all (NaN,
// which Python's json reads). An answer without a call's marker, or text
// that is not a JSON object, passes.
func otherReading(body []byte) error {
	if !mayHoldTool(body, false) {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	var first json.RawMessage
	if err := d.Decode(&first); err != nil {
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			return errors.New("an answer that may hold tool calls is not JSON pamctl reads: withheld")
		}
		return nil
	}
	var top answerTop
	_ = json.Unmarshal(first, &top)
	if shape, err := top.readBackShape(); err != nil || shape != "" {
		return errors.New("an answer whose first JSON value holds tool calls has trailing data: withheld")
	}
	if err := strictToolJSON(first); err != nil {
		return fmt.Errorf("an answer that may hold tool calls reads differently to other decoders (%v): withheld", err)
	}
	return nil
}

// present reports whether a member was there and not null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// callItem reports whether typ is a Responses item type that proposes a
// call (or a letter-case variant of one).
func callItem(typ string) bool {
	k, call := toolcall.ItemKind(typ)
	return call && k != toolcall.Unknown || toolcall.CaseVariant(typ) != ""
}

// upstreamErrorBody rebuilds an upstream error that is in OpenAI's shape
// from its decoded message, type, code and param, each masked (the raw
// body's masking does not see text spelled with JSON escapes, which the
// client's decoder reads), and wraps anything else (an HTML 502 page, a
// bare string) in pamctl's own. Other members of the error go.
func upstreamErrorBody(c *call, status int, body []byte) []byte {
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Type    any    `json:"type"`
			Code    any    `json:"code"`
			Param   any    `json:"param"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Message != "" {
		m := c.ResponseMask
		text := func(s string) string {
			out, _ := m.Mask(payload.ValidText(s, m))
			return out
		}
		// A string is masked; a number, bool or null kept; anything else
		// (an object, a list) is not an OpenAI error's and goes.
		scalar := func(v any) any {
			switch x := v.(type) {
			case string:
				return text(x)
			case float64, bool, nil:
				return x
			}
			return nil
		}
		b, err := json.Marshal(map[string]any{"error": map[string]any{
			"message": text(e.Error.Message), "type": scalar(e.Error.Type),
			"code": scalar(e.Error.Code), "param": scalar(e.Error.Param),
		}})
		if err == nil {
			return b
		}
	}
	ae := errUpstream(status, CodeUpstreamError, fmt.Sprintf("Upstream %q answered %d %s.", c.up.name, status, http.StatusText(status)), nil)
	if status < 500 {
		ae.Type = "invalid_request_error"
	}
	return ae.body()
}

// readDoubling reads r to its end into buf, doubling buf as it fills:
// a large answer costs about twice its size in allocations (append's
// slower growth for large slices costs five times).
func readDoubling(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), max(2*cap(buf), 4<<10))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// onceBody is a request body that lets go of its bytes once read: a
// stream's request must not hold the prompt for as long as the answer runs.
// Read and Close may run at once (net/http's contract for request bodies:
// the HTTP/2 transport closes a body from another goroutine when the
// upstream resets the stream while it is written).
type onceBody struct {
	mu sync.Mutex
	b  []byte
}

func (o *onceBody) Read(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.b) == 0 {
		o.b = nil
		return 0, io.EOF
	}
	n := copy(p, o.b)
	o.b = o.b[n:]
	if len(o.b) == 0 {
		o.b = nil
	}
	return n, nil
}

func (o *onceBody) Close() error {
	o.mu.Lock()
	o.b = nil
	o.mu.Unlock()
	return nil
}

// drainAfterClient is how long the upstream call outlives a client that
// went away mid-stream, so that the usage the upstream sends at the end
// is still read and charged (docs/performance.md).
const drainAfterClient = 2 * time.Second

// detachUpstream gives the upstream call a context of its own: canceled
// drainAfterClient after the client's, or at once by c.release, so a
// stream abandoned by its client can still be read to its usage.
func (p *Proxy) detachUpstream(pr *httputil.ProxyRequest, c *call) {
	in := pr.In.Context()
	c.client = in
	ctx, cancel := context.WithCancel(context.WithoutCancel(in))
	// One call goes upstream at most maxUpstreamAttempts times in quick
	// succession (noInformational.RoundTrip). An attempt counts once its
	// headers are written: looking a connection up is not one (HTTP/2
	// looks again while every stream of its connections is taken). A
	// retry the transport backs off for (HTTP/2's after a refused stream:
	// 1 s, 2 s, ...) starts the count again: the loop this stops is the
	// one without a pause, on an upstream that resets every stream. The
	// next quick attempt is stopped before it takes a connection (HTTP/2's
	// retries do not all look one up).
	capAttempts := func() {
		if c.upAttempts.Load() >= maxUpstreamAttempts && time.Now().UnixNano()-c.upLast.Load() < int64(quickRetry) {
			cancel()
		}
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { capAttempts() },
		GotConn: func(httptrace.GotConnInfo) { capAttempts() },
		WroteHeaders: func() {
			now := time.Now().UnixNano()
			if last := c.upLast.Swap(now); last != 0 && now-last >= int64(quickRetry) {
				c.upAttempts.Store(1)
			} else {
				c.upAttempts.Add(1)
			}
		},
	})
	var once sync.Once
	var timer *time.Timer
	var mu sync.Mutex
	stop := context.AfterFunc(in, func() {
		mu.Lock()
		timer = time.AfterFunc(drainAfterClient, cancel)
		mu.Unlock()
	})
	c.cancelUpstream = func() {
		once.Do(func() {
			stop()
			mu.Lock()
			if timer != nil {
				timer.Stop()
			}
			mu.Unlock()
			cancel()
		})
	}
	*pr.Out = *pr.Out.WithContext(ctx)
}

// countUsage charges the call's usage to its grant's token budget.
func (p *Proxy) countUsage(c *call) {
	if c.hasUsage && c.claims != nil {
		p.limits.record(c.claims.Req, c.usage.Total)
	}
}

// auditError is what a client gets when its call could not be recorded:
// pamctl fails closed rather than answer a call the trail does not hold.
func (p *Proxy) auditError(err error) *apiError {
	return errUpstream(http.StatusServiceUnavailable, CodeAuditUnavailable,
		"The call could not be recorded in the audit trail, so its answer is withheld. Retry shortly; an administrator should check the pamctl logs.", err)
}

// finishPassThrough audits a non-JSON answer (audio, files) once its last
// byte is read from upstream and before that byte goes to the client.
func (p *Proxy) finishPassThrough(ctx context.Context, c *call, err error) error {
	c.release()
	switch {
	case err != nil && ctx.Err() != nil:
		c.status, c.errDetail = statusClientClosed, "client went away before the answer ended"
	case err != nil:
		c.errDetail = "upstream answer broke off"
		c.err = errUpstream(http.StatusBadGateway, CodeStreamInterrupted, "The upstream answer broke off.", err)
	}
	return p.audit(ctx, c)
}

// upstreamError answers a call the upstream did not answer.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if err == errStreamTaken {
		return // not an error: relayStream writes the answer
	}
	c := callFrom(r.Context())
	client := r.Context() // r is the upstream request: its context is detached
	if c.client != nil {
		client = c.client
	}
	c.release()
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case client.Err() != nil:
		c.status, c.errDetail = statusClientClosed, "client closed the request"
		c.err = &apiError{Status: statusClientClosed, Code: CodeClientClosed, Message: "client closed the request", cause: err}
		return
	case isTimeout(err):
		ae = errUpstream(http.StatusGatewayTimeout, CodeUpstreamTimeout, fmt.Sprintf(
			"Upstream %q did not answer in time. Retry later, or with a smaller request.", c.up.name), err)
	default:
		ae = errUpstream(http.StatusBadGateway, CodeUpstreamUnreachable, fmt.Sprintf(
			"Upstream %q could not be reached. Retry later; if it persists an administrator should check the upstream URL in the pamctl config.", c.up.name), err)
	}
	p.fail(w, c, ae)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tailBody passes an answer through unchanged but holds back its last
// chunk until finish (the audit append) has run, so the client never sees
// the end of an answer the trail does not hold.
type tailBody struct {
	src      io.ReadCloser
	c        *call
	finish   func(err error) error
	held     []byte
	buf      []byte
	out      []byte
	err      error // what Read ends with once out is drained: nil is io.EOF
	done     bool
	finished bool
}

func (t *tailBody) Read(p []byte) (int, error) {
	for len(t.out) == 0 {
		if t.done {
			if t.err != nil {
				return 0, t.err
			}
			return 0, io.EOF
		}
		if t.buf == nil {
			t.buf = make([]byte, 32<<10)
		}
		n, err := t.src.Read(t.buf)
		if n > 0 {
			// Release what was held; hold the new chunk.
			t.out = append(t.out[:0], t.held...)
			t.held = append(t.held[:0], t.buf[:n]...)
		}
		if err != nil {
			t.done = true
			if errors.Is(err, io.EOF) {
				err = nil
			}
			t.finished = true
			if ferr := t.finish(err); ferr != nil {
				// Not recorded: withhold the end, so the client sees a
				// broken answer rather than a complete unaudited one.
				return 0, ferr
			}
			if errors.Is(err, errUpstreamEncoding) {
				// Text that is not UTF-8: nothing more of it goes out,
				// and the client sees a broken answer.
				t.held = nil
				return 0, err
			}
			t.out = append(t.out, t.held...)
			t.held = nil
			if err != nil {
				// Cut short (a bad chunk, a connection closed early, a
				// Content-Length not honoured): once what came is out,
				// the read fails, so ReverseProxy aborts the client's
				// connection instead of ending the answer cleanly.
				t.err = errUpstreamCut
			}
		}
	}
	n := copy(p, t.out)
	t.out = t.out[n:]
	return n, nil
}

// Close ends the upstream read; an answer closed before its end means the
// client went away, which the call's audit event (written by begin) says.
func (t *tailBody) Close() error {
	if !t.finished {
		t.finished = true
		t.c.status, t.c.errDetail = statusClientClosed, "client went away before the answer ended"
	}
	return t.src.Close()
}

// errUpstreamCut ends a passed-through answer the upstream broke off (the
// trail holds why): ReverseProxy, failing to copy it, aborts the client's
// connection (http.ErrAbortHandler), so the client sees a broken answer,
// not the last chunk of a whole one.
var errUpstreamCut = errors.New("proxy: the upstream answer broke off")

// errUpstreamEncoding ends an answer that turned out not to be UTF-8 text.
var errUpstreamEncoding = errors.New("upstream answer is not UTF-8 text (invalid UTF-8 or a NUL byte)")

// foreignCharset returns the charset a Content-Type declares when it is
// not UTF-8 (or its subset US-ASCII). It reads the parameters itself, so a
// Content-Type mime.ParseMediaType rejects is still judged.
func foreignCharset(ct string) (string, bool) {
	_, params, _ := strings.Cut(ct, ";")
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(name), "charset") {
			continue
		}
		v = strings.ToLower(strings.Trim(strings.TrimSpace(v), `"' `))
		switch v {
		case "utf-8", "utf8", "us-ascii":
		default:
			return v, true
		}
	}
	return "", false
}

// textual reports whether a media type is text a client decodes (and so
// must be UTF-8 to be inspected): JSON, SSE, text/*, XML, or none at all.
// Binary types (audio/*, image/*, application/octet-stream…) are scrubbed
// as bytes only.
func textual(mt string) bool {
	switch {
	case mt == "", strings.HasPrefix(mt, "text/"),
		mt == "application/json", strings.HasSuffix(mt, "+json"),
		strings.HasSuffix(mt, "ndjson"), strings.HasSuffix(mt, "jsonl"), strings.HasSuffix(mt, "json-seq"),
		mt == "application/xml", strings.HasSuffix(mt, "+xml"), mt == "application/javascript":
		return true
	}
	return false
}

// utf8Text reports whether b is valid UTF-8 without NUL bytes: text in
// UTF-16 or UTF-32 (BOM or not) always fails, for its ASCII holds NULs.
func utf8Text(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// sseFramed reports whether a body that is not JSON holds a line an SSE
// parser reads as data or an event name.
func sseFramed(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	for rest := b; len(rest) > 0; {
		line := rest
		if i := bytes.IndexAny(rest, "\r\n"); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if bytes.HasPrefix(line, []byte("data:")) || bytes.HasPrefix(line, []byte("event:")) ||
			bytes.Equal(line, []byte("data")) {
			// JSON cannot hold such a line (its strings hold no raw line
			// breaks); checked all the same.
			return !payload.ValidJSON(b)
		}
	}
	return false
}

// utf8Body passes a textual answer through while checking it is UTF-8
// without NUL bytes; it fails with errUpstreamEncoding, returning none of
// the offending read, at the first read that is not. A rune split between
// reads is judged when its end arrives.
type utf8Body struct {
	src  io.ReadCloser
	tail [utf8.UTFMax]byte // the start of a rune the last read ended in
	nt   int
	err  error
}

func (u *utf8Body) Read(p []byte) (int, error) {
	if u.err != nil {
		return 0, u.err
	}
	n, err := u.src.Read(p)
	if !u.check(p[:n]) || errors.Is(err, io.EOF) && u.nt > 0 {
		u.err = errUpstreamEncoding
		return 0, u.err
	}
	return n, err
}

func (u *utf8Body) check(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	i := 0
	for u.nt > 0 && i < len(b) {
		u.tail[u.nt] = b[i]
		u.nt++
		i++
		if utf8.FullRune(u.tail[:u.nt]) {
			if !utf8.Valid(u.tail[:u.nt]) {
				return false
			}
			u.nt = 0
		}
	}
	if u.nt > 0 {
		return true // b ended inside the pending rune
	}
	rest := b[i:]
	cut := len(rest)
	for k := len(rest) - 1; k >= 0 && k >= len(rest)-(utf8.UTFMax-1); k-- {
		if utf8.RuneStart(rest[k]) {
			if !utf8.FullRune(rest[k:]) {
				cut = k
			}
			break
		}
	}
	if !utf8.Valid(rest[:cut]) {
		return false
	}
	u.nt = copy(u.tail[:], rest[cut:])
	return true
}

func (u *utf8Body) Close() error { return u.src.Close() }

// upstreamAuthError is the answer to an upstream's 401: it refused the
// vaulted key, or, for an upstream with an extra_key, one of the two keys
// (which one, the 401 does not say; its text, which may quote a key, is
// not read). It names the vault entries, never a value, in the answer
// (and so the trail) and, as its cause, the log.
func upstreamAuthError(up *upstream) *apiError {
	if up.extraHeader == "" {
		return errUpstream(http.StatusBadGateway, CodeUpstreamAuth, fmt.Sprintf(
			"Upstream %q refused the vaulted provider key. An administrator should check it with `pamctl vault set %s`.",
			up.name, up.keyName), fmt.Errorf("upstream answered 401 to the provider key (vault entry %s)", up.keyName))
	}
	return errUpstream(http.StatusBadGateway, CodeUpstreamAuth, fmt.Sprintf(
		"Upstream %q refused the vaulted keys: the provider key (vault entry %s) or the extra key (extra_key, vault entry %s); its answer does not say which. An administrator should check both with `pamctl vault set %s` and `pamctl vault set %s`.",
		up.name, up.keyName, up.extraKeyName, up.keyName, up.extraKeyName),
		fmt.Errorf("upstream answered 401 to the provider key (vault entry %s) and the extra key (vault entry %s): one of them, it does not say which", up.keyName, up.extraKeyName))
}
