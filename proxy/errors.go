package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/pamctl/pamctl/broker/audit"
)

// Error codes the proxy answers with, in OpenAI's error shape. Clients and
// tests match on these; the messages around them may change.
const (
	CodeInvalidAPIKey       = "invalid_api_key"
	CodeModelNotInScope     = "model_not_in_scope"
	CodeEndpointNotAllowed  = "endpoint_not_allowed"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodePromptBlocked       = "prompt_blocked"
	CodeApprovalRequired    = "approval_required"
	CodeUnscannedContent    = "unscanned_content"
	CodeRequestTooLarge     = "request_too_large"
	CodeInvalidJSON         = "invalid_json"
	CodeAmbiguousJSON       = "ambiguous_json"
	CodeUnsupportedShape    = "unsupported_shape"
	CodeRequestTooComplex   = "request_too_complex"
	CodeMissingModel        = "missing_model"
	CodeInvalidModel        = "invalid_model"
	CodeURITooLong          = "uri_too_long"
	CodeRateLimitExceeded   = "rate_limit_exceeded"
	CodeTokenBudgetExceeded = "token_budget_exceeded"
	CodeUpstreamUnreachable = "upstream_unreachable"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeUpstreamError       = "upstream_error"
	CodeUpstreamTooLarge    = "upstream_response_too_large"
	// An answer refused for its shape: not UTF-8, or SSE where JSON was asked.
	CodeUpstreamEncoding         = "upstream_bad_encoding"
	CodeUpstreamUnexpectedStream = "upstream_unexpected_stream"
	CodeUpstreamAuth             = "upstream_auth_failed"
	CodeStreamInterrupted        = "upstream_stream_interrupted"
	CodeProviderKey              = "provider_key_unavailable"
	CodeAuditUnavailable         = "audit_unavailable"
	CodeClientClosed             = "client_closed_request"
	CodeInternal                 = "internal_error"
	CodeLimitsUnavailable        = "limits_unavailable"
	CodeProxyBusy                = "proxy_busy"
	CodeTooManyBodies            = "too_many_concurrent_bodies"
	CodeBodyTimeout              = "request_timeout"
	CodeHostNotAllowed           = "host_not_allowed"
	CodeTracesNotInScope         = "traces_not_in_scope"
	CodeTooManySpans             = "too_many_spans"
	CodeQueryNotAllowed          = "query_not_allowed"
	CodeToolNotInScope           = "tool_not_in_scope"
	CodeHeaderTooLarge           = "header_too_large"
	// A whole answer reached its token limit inside a tool call: the
	// call's arguments are cut short, so the answer is withheld (400, not
	// retried: the same request is cut at the same place).
	CodeToolCallTruncated = "tool_call_truncated"
)

// statusClientClosed is logged and audited when the client went away before
// the answer (nginx's 499); it is never written to a client.
const statusClientClosed = 499

// quoteUpstream quotes text the upstream wrote for an error's detail (the
// log line, the audit event): whole when it is at most maxQuote bytes, so
// the key scrub and the masker read all of it; otherwise only its length.
// A quote cut short could hold all of a vaulted key but its last bytes,
// or an address cut in its domain, which neither finds. The text is kept
// raw in quotes, a quote of it doubled (audit.Quote): the log's
// handler, the CLI and the web page escape it, once. (Go's %q here made
// a view show \\u202e for a U+202E.)
func quoteUpstream(s string) string {
	if len(s) <= maxQuote {
		return audit.Quote(s)
	}
	return fmt.Sprintf("(%d bytes)", len(s))
}

// quoteUpstreamJSON is quoteUpstream of a raw JSON value the upstream
// sent: a string's text (its escapes decoded, as every decoder reads
// them), anything else as it was written.
func quoteUpstreamJSON(v string) string {
	if strings.HasPrefix(v, `"`) {
		return quoteUpstream(unquoteJSON(v))
	}
	return quoteUpstream(v)
}

const maxQuote = 64

// apiError is an error a client sees: an HTTP status and OpenAI's error
// object. Message says what to do next and never holds a secret; cause is
// the detail for logs and the audit trail.
type apiError struct {
	Status     int
	Type       string
	Code       string
	Message    string
	Param      string
	RetryAfter int  // seconds; 0 omits the header
	NoRetry    bool // sets x-should-retry: false so SDKs do not retry in vain
	cause      error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.Message + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *apiError) Unwrap() error { return e.cause }

// errorBody is OpenAI's error envelope.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Code    string  `json:"code"`
	Param   *string `json:"param"`
}

func (e *apiError) body() []byte {
	obj := errorObject{Message: e.Message, Type: e.Type, Code: e.Code}
	if e.Param != "" {
		p := e.Param
		obj.Param = &p
	}
	b, err := json.Marshal(errorBody{Error: obj})
	if err != nil { // only strings inside: cannot happen
		return []byte(`{"error":{"message":"internal error","type":"server_error","code":"internal_error","param":null}}`)
	}
	return b
}

// write sends e to the client.
func (e *apiError) write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.NoRetry {
		h.Set("X-Should-Retry", "false")
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(e.body())
}

func errUnauthorized(msg string, cause error) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: CodeInvalidAPIKey, Message: msg, NoRetry: true, cause: cause}
}

func errForbidden(code, msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: "invalid_request_error", Code: code, Message: msg, NoRetry: true}
}

func errBadRequest(code, param, msg string, cause error) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: code, Param: param, Message: msg, NoRetry: true, cause: cause}
}

func errUpstream(status int, code, msg string, cause error) *apiError {
	return &apiError{Status: status, Type: "server_error", Code: code, Message: msg, cause: cause}
}
