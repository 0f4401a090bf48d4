package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/toolcall"
)

// maxPath bounds a request's path.
const maxPath = 2048

// classify names the endpoint of method and p (a clean path without path
// parameters: route refuses a ';').
func classify(method, p string) endpointKind {
	switch {
	case method == http.MethodPost && p == "/v1/chat/completions":
		return epChat
	case method == http.MethodPost && p == "/v1/responses":
		return epResponses
	case method == http.MethodPost && p == "/v1/embeddings":
		return epEmbeddings
	case method == http.MethodGet && p == "/v1/models":
		return epModels
	case method == http.MethodGet && strings.HasPrefix(p, "/v1/models/"):
		return epModel
	case method == http.MethodPost && p == "/v1/traces/ingest":
		return epTraces
	case method == http.MethodGet && oneSegmentUnder(p, "/v1/responses/"),
		method == http.MethodPost && strings.HasSuffix(p, "/cancel") && oneSegmentUnder(strings.TrimSuffix(p, "/cancel"), "/v1/responses/"):
		return epStoredResponse
	case (method == http.MethodGet || method == http.MethodPost) && oneSegmentUnder(p, "/v1/chat/completions/"):
		// POST updates a stored completion's metadata and answers with it.
		return epStoredChat
	}
	if k := classifyItems(method, p); k != epOther {
		return k
	}
	if chatMessagesRoute(method, p) {
		return epChatMessages
	}
	return epOther
}

// storedPath reports whether p is a stored answer's path, whatever the
// method: a response or chat completion by id, or a response's cancel.
func storedPath(p string) bool {
	return classify(http.MethodGet, p).stored() || classify(http.MethodPost, p).stored()
}

// streamAsked reports whether a raw query might ask for a stream: a
// stream key in any case with anything but "false" does, and so does a
// query Go does not parse (a ';' separator, a bad escape), whose pairs
// Query drops but which is forwarded verbatim (fail closed on spellings
// an upstream might read as true).
func streamAsked(rawQuery string) bool {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return true
	}
	for k, values := range q {
		if !strings.EqualFold(strings.TrimSpace(k), "stream") {
			continue
		}
		for _, v := range values {
			if v != "false" {
				return true
			}
		}
	}
	return false
}

// overrideInQuery returns a query key that asks for another method or
// path (_method, x-http-method-override, ...; see routeOverride), read as
// leniently as any server would: both separators, escapes undone when
// they parse.
func overrideInQuery(raw string) (string, bool) {
	for _, part := range strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' }) {
		k, _, _ := strings.Cut(part, "=")
		if u, err := url.QueryUnescape(k); err == nil {
			k = u
		}
		if routeOverride(k) {
			return k, true
		}
	}
	return "", false
}

// modelRouteQuery reports whether the raw query of a call of kind k may
// go upstream, and if not the key that may not. On the routes whose model
// pamctl checks (chat, Responses, embeddings, one model's description)
// the query may hold only api-version (Azure OpenAI), in any letter case:
// an OpenAI-compatible gateway may read the model, a deployment or any
// body parameter from the query instead of the body pamctl checked. Keys
// are read as leniently as any server would (both separators, escapes
// undone when they parse); other routes' queries are their scope's.
func modelRouteQuery(k endpointKind, raw string) (string, bool) {
	switch k {
	case epChat, epResponses, epEmbeddings, epModel:
	default:
		return "", true
	}
	for _, part := range strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' }) {
		key, _, _ := strings.Cut(part, "=")
		if u, err := url.QueryUnescape(key); err == nil {
			key = u
		}
		if !strings.EqualFold(key, "api-version") {
			return key, false
		}
	}
	return "", true
}

// canonicalMethod reports whether m has no lower-case letter. net/http
// takes any token as a method and passes it on as written.
func canonicalMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			return false
		}
	}
	return true
}

// oneSegmentUnder reports whether p is prefix followed by one non-empty
// path segment (an object's id).
func oneSegmentUnder(p, prefix string) bool {
	id, ok := strings.CutPrefix(p, prefix)
	return ok && id != "" && !strings.Contains(id, "/")
}

// route decides which endpoint the call is for. The default endpoints are
// open to every grant (their model is checked later); the trace ingest
// needs traces:write and anything else an endpoint:PATH scope.
func (p *Proxy) route(w http.ResponseWriter, r *http.Request) bool {
	c := callFrom(r.Context())
	raw := r.URL.Path
	if len(raw) > maxPath {
		// An API route with its ids is a few dozen bytes; a path travels
		// into the trail, held calls, rules and logs.
		p.fail(w, c, &apiError{Status: http.StatusRequestURITooLong, Type: "invalid_request_error", Code: CodeURITooLong, NoRetry: true,
			Message: fmt.Sprintf("The path is %d bytes; pamctl takes paths of at most %d. Send the API route as the OpenAI SDKs do.", len(raw), maxPath)})
		return false
	}
	if raw == "" || path.Clean(raw) != raw || !strings.HasPrefix(raw, "/v1/") {
		p.fail(w, c, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url", NoRetry: true,
			Message: fmt.Sprintf("Unknown path %s. The pamctl proxy serves the OpenAI API under /v1; set your client's base URL to http://<proxy>/v1.", audit.Quote(raw))})
		return false
	}
	if strings.ContainsRune(raw, ';') {
		// No OpenAI route has one, and an upstream that drops path
		// parameters (servlet containers) serves items;x as items and
		// responses/..;/files as files: past the route pamctl checked
		// and the endpoint scope it matched.
		p.fail(w, c, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url", NoRetry: true,
			Message: fmt.Sprintf("Unknown path %s: pamctl forwards no path with a ';' (path parameters), which no OpenAI API route has. Remove it.", audit.Quote(clip(raw, 200)))})
		return false
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f }) {
		// Forwarded re-escaped (%5C, %00, ...): a server that reads a
		// backslash as a separator (IIS, frameworks that normalise
		// Windows paths) serves /v1/models/x\..\..\files as /v1/files,
		// past the route and scope pamctl matched; one that stops at a
		// NUL or drops control characters serves another path too.
		p.fail(w, c, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url", NoRetry: true,
			Message: fmt.Sprintf("Unknown path %s: pamctl forwards no path with a backslash or a control character, which no OpenAI API route or id has. Remove it.", audit.Quote(clip(raw, 200)))})
		return false
	}
	if !canonicalMethod(r.Method) {
		// Methods are case-sensitive: pamctl's routes (and its stored
		// answer and stream checks) know GET and POST, but an upstream
		// that folds case would serve "get" as GET, past them.
		p.fail(w, c, &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: CodeMethodNotAllowed, NoRetry: true,
			Message: fmt.Sprintf("Method %s is not an upper-case HTTP method; pamctl forwards only methods spelled as the standard defines them (GET, POST, DELETE, ...). Send the method in upper case, as every OpenAI SDK does.", audit.Quote(clip(r.Method, 40)))})
		return false
	}
	c.kind = classify(r.Method, raw)
	if c.kind == epOther && classify(r.Method, strings.ToLower(raw)) != epOther {
		// Paths are case-sensitive too, and an upstream that folds
		// them would serve a model or stored-answer route pamctl
		// did not check as one.
		p.fail(w, c, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url", NoRetry: true,
			Message: fmt.Sprintf("Unknown path %s: it differs from an OpenAI API route only in letter case, and paths are case-sensitive. Spell it as the API does (lower case), as every OpenAI SDK does.", audit.Quote(clip(raw, 200)))})
		return false
	}
	if c.kind == epTraces && !token.Covers(c.scopes, ScopeTracesWrite) {
		p.fail(w, c, errForbidden(CodeTracesNotInScope, fmt.Sprintf(
			"Storing traces needs the %s scope, which this token lacks. Ask for it with `pamctl request --scope %s` "+
				"(a policy must grant it), or turn the SDK's trace export off.", ScopeTracesWrite, ScopeTracesWrite)))
		return false
	}
	if (c.kind == epOther || c.kind.stored()) && !token.Covers(c.scopes, token.KindEndpoint+":"+raw) {
		p.fail(w, c, errForbidden(CodeEndpointNotAllowed, fmt.Sprintf(
			"%s %s is not allowed by this token's scope. Ask for it with `pamctl request --scope endpoint:%s`.", r.Method, raw, raw)))
		return false
	}
	if k, ok := overrideInQuery(r.URL.RawQuery); ok {
		p.fail(w, c, &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: CodeMethodNotAllowed, NoRetry: true,
			Message: fmt.Sprintf("The query names a method or path override (%s); pamctl forwards only the method and path it checked. Remove it from the URL.", audit.Quote(clip(k, 40)))})
		return false
	}
	if k, ok := modelRouteQuery(c.kind, r.URL.RawQuery); !ok {
		p.fail(w, c, errBadRequest(CodeQueryNotAllowed, "", fmt.Sprintf(
			"The query names %s, which pamctl does not forward on %s %s: the model and the call's options go in the JSON body, where pamctl checks them "+
				"(a gateway that reads a model or deployment from the query would serve one the token's scope does not cover). Only api-version may be in the query; remove the rest from the URL.",
			audit.Quote(clip(k, 40)), r.Method, clip(raw, 200)), nil))
		return false
	}
	if c.kind.stored() && streamAsked(r.URL.RawQuery) {
		// A stored response replayed as events would bypass the
		// stream relay's masking and held tool calls.
		p.fail(w, c, errBadRequest(CodeUnsupportedShape, "stream", fmt.Sprintf(
			"pamctl does not relay a stored answer as a stream: it could not mask it or judge its tool calls on the way. Fetch it whole (GET %s without stream=true), or stream the original request.", raw), nil))
		return false
	}
	return true
}

// byteBudget is the proxy-wide budget of request-body bytes held by calls
// in flight (Options.MaxInflight). One grant may hold at most perGrant of
// it, so a single token stalling bodies cannot lock every other grant out.
type byteBudget struct {
	max      int64
	perGrant int64

	mu      sync.Mutex
	used    int64
	byGrant map[string]int64
}

// Why a reservation was refused.
var (
	errBudget      = errors.New("proxy: in-flight body budget spent")
	errGrantBudget = errors.New("proxy: the grant's share of the in-flight body budget is spent")
)

// reserve takes n bytes for grant, or says why it cannot.
func (b *byteBudget) reserve(grant string, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byGrant[grant]+n > b.perGrant {
		return errGrantBudget
	}
	if b.used+n > b.max {
		return errBudget
	}
	if b.byGrant == nil {
		b.byGrant = make(map[string]int64)
	}
	b.used += n
	b.byGrant[grant] += n
	return nil
}

func (b *byteBudget) release(grant string, n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if left := b.byGrant[grant] - n; left > 0 {
		b.byGrant[grant] = left
	} else {
		delete(b.byGrant, grant)
	}
}

// inUse is the bytes reserved now.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// readBody reads the whole (size-limited) request body before anything is
// forwarded: the proxy needs the model and the prompt, and ReverseProxy can
// cut an SSE answer while a request body is still being copied. It runs
// after the caller is authenticated and charged, holds the body's bytes in
// the in-flight budget until the upstream answers or the call ends, and gives the client
// BodyTimeout to send it.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) bool {
	c := callFrom(r.Context())
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	tooLarge := &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: CodeRequestTooLarge, NoRetry: true,
		Message: fmt.Sprintf("The request body is larger than the proxy's limit of %d bytes. Send a smaller request.", p.maxBody)}
	if r.ContentLength > p.maxBody {
		p.fail(w, c, tooLarge)
		return false
	}
	// Wall clock: the deadline is the connection's. Where the writer
	// cannot set one, the server's ReadTimeout still bounds the read.
	rd := readDeadliner(w)
	deadline := rd != nil && rd.SetReadDeadline(time.Now().Add(p.bodyTimeout)) == nil
	body, err := p.readLimited(c, r)
	if deadline && err == nil {
		_ = rd.SetReadDeadline(time.Time{}) // a stream may run for minutes
	}
	switch {
	case errors.Is(err, errBudget):
		p.fail(w, c, &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: CodeProxyBusy, RetryAfter: 1,
			Message: "The proxy is holding as many request bodies as it may (proxy.max_inflight_bytes). Retry in a moment."})
		return false
	case errors.Is(err, errGrantBudget):
		p.fail(w, c, &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: CodeTooManyBodies, RetryAfter: 1,
			Message: fmt.Sprintf("Grant %s is sending more request bodies at once than the proxy holds for one grant "+
				"(half of proxy.max_inflight_bytes). Wait for its calls in flight to finish, then retry.", c.claims.Req)})
		return false
	case err != nil && bodyTimedOut(err):
		w.Header().Set("Connection", "close")
		c.errDetail = "the body did not arrive within " + p.bodyTimeout.String()
		p.fail(w, c, &apiError{Status: http.StatusRequestTimeout, Type: "invalid_request_error", Code: CodeBodyTimeout,
			Message: fmt.Sprintf("The request body did not arrive within %s. Check the network between the client and the proxy, and retry.", p.bodyTimeout)})
		return false
	case err != nil && r.Context().Err() != nil:
		c.status, c.errDetail = statusClientClosed, "client went away while sending the body"
		return false
	case err != nil:
		p.fail(w, c, errBadRequest("invalid_body", "", "The request body could not be read. Retry the request.", err))
		return false
	}
	if int64(len(body)) > p.maxBody {
		p.fail(w, c, tooLarge)
		return false
	}
	c.body, c.unreadBody = body, false
	return true
}

// deadliner is what net/http's own ResponseWriter offers.
type deadliner interface{ SetReadDeadline(time.Time) error }

// readDeadliner finds the connection's read deadline behind w, without
// the allocation of an http.ResponseController on the common path.
func readDeadliner(w http.ResponseWriter) deadliner {
	if d, ok := w.(deadliner); ok {
		return d
	}
	if _, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		return http.NewResponseController(w)
	}
	return nil
}

// bodyTimedOut reports whether reading a body hit its deadline.
func bodyTimedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// readLimited reads at most maxBody+1 bytes of r's body, reserving each
// buffer in the in-flight budget before it is allocated: by Content-Length
// when the client sent one, else in growing steps as the body arrives.
func (p *Proxy) readLimited(c *call, r *http.Request) ([]byte, error) {
	limit := p.maxBody + 1
	size := int64(64 << 10)
	if r.ContentLength >= 0 {
		size = r.ContentLength + 1
	}
	size = min(size, limit)
	if err := p.inflight.reserve(c.claims.Req, size); err != nil {
		return nil, err
	}
	c.reserved += size
	buf := make([]byte, 0, size)
	src := io.LimitReader(r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= limit {
				return buf, nil // over the limit; the caller refuses it
			}
			grow := min(int64(cap(buf)), limit-int64(cap(buf)))
			if err := p.inflight.reserve(c.claims.Req, grow); err != nil {
				return nil, err
			}
			c.reserved += grow
			nb := make([]byte, len(buf), int64(cap(buf))+grow)
			copy(nb, buf)
			buf = nb
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// resolveModel splits a client's model name into the upstream it names (a
// configured upstream's name before the first '/') and the model to send
// there. Unqualified names, and names whose prefix is no upstream (such as
// meta-llama/Llama-3), go to the default upstream unchanged.
func (p *Proxy) resolveModel(name string) (*upstream, string) {
	if prefix, rest, ok := strings.Cut(name, "/"); ok && rest != "" {
		if up, ok := p.byName[prefix]; ok {
			return up, rest
		}
	}
	return p.ups[0], name
}

// authorize checks the model against the token's scope and picks the
// upstream.
func (p *Proxy) authorize(w http.ResponseWriter, r *http.Request) bool {
	c := callFrom(r.Context())
	switch c.kind {
	case epModels, epTraces:
		return true
	case epOther, epStoredResponse, epStoredChat, epItems, epItem, epChatMessages:
		// A stored answer's tool calls go to the same judge as the
		// original call's (an endpoint: answer may be one too).
		c.up = p.ups[0]
		c.decision, c.reasons = "allow", []string{"scope endpoint:" + c.path}
		c.toolScopes = toolcall.Scopes(c.scopes)
		if e := p.parseItemsRequest(c); e != nil {
			p.fail(w, c, e)
			return false
		}
		return true
	case epModel:
		c.clientModel = strings.TrimPrefix(c.path, "/v1/models/")
		if e := checkModelName(c.clientModel); e != nil {
			p.fail(w, c, e)
			return false
		}
	default:
		if e := p.parseRequest(c); e != nil {
			p.fail(w, c, e)
			return false
		}
	}
	c.up, c.model = p.resolveModel(c.clientModel)
	if !token.CoversModel(c.scopes, c.up.name, c.model) {
		p.fail(w, c, errForbidden(CodeModelNotInScope, fmt.Sprintf(
			"Model %s is not in this token's scope (%s). Ask for it with `pamctl request --scope model:%s`.",
			audit.Quote(c.clientModel), strings.Join(c.scopes, " "), c.clientModel)))
		return false
	}
	c.decision, c.reasons = "allow", []string{"scope model:" + c.clientModel}
	if e := p.checkTools(c); e != nil {
		c.reasons = append(c.reasons, "tool scope")
		p.fail(w, c, e)
		return false
	}
	return true
}

// limit enforces the grant's requests-per-minute and token budget on
// every call, before its body is read: a limited grant costs the proxy
// nothing but its headers.
func (p *Proxy) limit(w http.ResponseWriter, r *http.Request) bool {
	c := callFrom(r.Context())
	if le := p.limits.admit(c.claims.Req, c.claims.Limits, c.claims.ExpiresAt.Time); le != nil {
		c.reasons = append(c.reasons, "limit "+le.code)
		p.fail(w, c, le.apiError(c.claims.Req))
		return false
	}
	return true
}

// endpoint is the end of the chain.
func (p *Proxy) endpoint(w http.ResponseWriter, r *http.Request) {
	c := callFrom(r.Context())
	switch c.kind {
	case epTraces:
		p.ingestTraces(w, r, c)
	case epModels:
		p.listModels(w, r, c)
	default:
		c.up.rp.ServeHTTP(w, r)
		if c.taken != nil {
			p.relayStream(w, c)
		}
	}
}

// readAllInto is io.ReadAll appending to buf.
func readAllInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
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
