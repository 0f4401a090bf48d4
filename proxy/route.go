package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/pamctl/pamctl/broker/token"
)

// classify names the endpoint of method and p (a clean path).
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
	}
	return epOther
}

// route decides which endpoint the call is for. The default endpoints are
// open to every grant (their model is checked later); anything else needs an
// endpoint:PATH scope.
func (p *Proxy) route(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callFrom(r.Context())
		raw := r.URL.Path
		if raw == "" || path.Clean(raw) != raw || !strings.HasPrefix(raw, "/v1/") {
			p.fail(w, c, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url", NoRetry: true,
				Message: fmt.Sprintf("Unknown path %q. The pamctl proxy serves the OpenAI API under /v1; set your client's base URL to http://<proxy>/v1.", raw)})
			return
		}
		c.kind = classify(r.Method, raw)
		if c.kind == epOther && !token.Covers(c.scopes, token.KindEndpoint+":"+raw) {
			p.fail(w, c, errForbidden(CodeEndpointNotAllowed, fmt.Sprintf(
				"%s %s is not allowed by this token's scope. Ask for it with `pamctl request --scope endpoint:%s`.", r.Method, raw, raw)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readBody reads the whole (size-limited) request body before anything is
// forwarded: the proxy needs the model and the prompt, and ReverseProxy can
// cut an SSE answer while a request body is still being copied.
func (p *Proxy) readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callFrom(r.Context())
		if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		tooLarge := &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: CodeRequestTooLarge, NoRetry: true,
			Message: fmt.Sprintf("The request body is larger than the proxy's limit of %d bytes. Send a smaller request.", p.maxBody)}
		if r.ContentLength > p.maxBody {
			p.fail(w, c, tooLarge)
			return
		}
		size := r.ContentLength
		if size < 0 || size > 64<<10 {
			size = 64 << 10 // grow as it comes
		}
		buf := make([]byte, 0, size+1)
		body, err := readAllInto(buf, io.LimitReader(r.Body, p.maxBody+1))
		if err != nil {
			if r.Context().Err() != nil {
				c.status, c.errDetail = statusClientClosed, "client went away while sending the body"
				return
			}
			p.fail(w, c, errBadRequest("invalid_body", "", "The request body could not be read. Retry the request.", err))
			return
		}
		if int64(len(body)) > p.maxBody {
			p.fail(w, c, tooLarge)
			return
		}
		c.body = body
		next.ServeHTTP(w, r)
	})
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
func (p *Proxy) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callFrom(r.Context())
		switch c.kind {
		case epModels, epTraces:
			next.ServeHTTP(w, r)
			return
		case epOther:
			c.up = p.ups[0]
			c.decision, c.reasons = "allow", []string{"scope endpoint:" + c.path}
			next.ServeHTTP(w, r)
			return
		case epModel:
			c.clientModel = strings.TrimPrefix(c.path, "/v1/models/")
		default:
			if e := p.parseRequest(c); e != nil {
				p.fail(w, c, e)
				return
			}
		}
		c.up, c.model = p.resolveModel(c.clientModel)
		if !token.CoversModel(c.scopes, c.up.name, c.model) {
			p.fail(w, c, errForbidden(CodeModelNotInScope, fmt.Sprintf(
				"Model %q is not in this token's scope (%s). Ask for it with `pamctl request --scope model:%s`.",
				c.clientModel, strings.Join(c.scopes, " "), c.clientModel)))
			return
		}
		c.decision, c.reasons = "allow", []string{"scope model:" + c.clientModel}
		next.ServeHTTP(w, r)
	})
}

// limit enforces the grant's requests-per-minute and token budget.
func (p *Proxy) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callFrom(r.Context())
		if c.kind == epModels || c.kind == epTraces || c.kind == epModel {
			next.ServeHTTP(w, r)
			return
		}
		if le := p.limits.admit(c.claims.Req, c.claims.Limits, c.claims.ExpiresAt.Time); le != nil {
			c.reasons = append(c.reasons, "limit "+le.code)
			p.fail(w, c, le.apiError(c.claims.Req))
			return
		}
		next.ServeHTTP(w, r)
	})
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
	}
}
