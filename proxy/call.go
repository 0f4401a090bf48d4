package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/scrub"
	"github.com/pamctl/pamctl/proxy/toolcall"
)

// endpointKind says what the proxy knows about a request's endpoint.
type endpointKind int

const (
	epOther      endpointKind = iota // forwarded only when an endpoint: scope grants it
	epChat                           // POST /v1/chat/completions
	epResponses                      // POST /v1/responses
	epEmbeddings                     // POST /v1/embeddings
	epModels                         // GET /v1/models
	epModel                          // GET /v1/models/{model}
	epTraces                         // POST /v1/traces/ingest (stored, never forwarded)
	// Stored model answers, read back under an endpoint: scope: their
	// answers are masked and tool-judged like the POST's (a background
	// response's tool calls arrive only this way).
	epStoredResponse // GET /v1/responses/{id}, POST /v1/responses/{id}/cancel
	epStoredChat     // GET and POST (metadata) /v1/chat/completions/{id}
	// Stored Responses items, read back (or, by POST, added and echoed)
	// under an endpoint: scope: masked and judged item by item like a
	// stored Response's output (items.go).
	epItems // GET /v1/responses/{id}/input_items, GET and POST /v1/conversations/{id}/items
	epItem  // GET /v1/conversations/{id}/items/{item_id}
	// A stored chat completion's messages, read back under an endpoint:
	// scope: masked and judged message by message like the stored chat
	// completion's (chatmessages.go).
	epChatMessages // GET /v1/chat/completions/{id}/messages
)

// hasModelBody reports whether the endpoint's JSON body names the model.
func (k endpointKind) hasModelBody() bool {
	return k == epChat || k == epResponses || k == epEmbeddings
}

// stored reports whether the endpoint reads back a stored model answer.
func (k endpointKind) stored() bool {
	return k == epStoredResponse || k == epStoredChat || k == epItems || k == epItem || k == epChatMessages
}

// answersObject reports whether every answer of the endpoint is one
// JSON object: a model call's (streams aside), a stored answer's, or a
// model's description. An answer without content (204, 205, 304) or that
// is not an object is none of them.
func (k endpointKind) answersObject() bool {
	return k.hasModelBody() || k.stored() || k == epModel
}

// answerPath is the POST path whose answer shape the endpoint's answer
// has (chat completion or Response), or the list shape of the item and
// message routes (payload.EndpointItems, payload.EndpointItem,
// payload.EndpointChatMessages), for masking and the tool judge; "" for
// the others.
func (k endpointKind) answerPath() string {
	switch k {
	case epChat, epStoredChat:
		return "/v1/chat/completions"
	case epResponses, epStoredResponse:
		return "/v1/responses"
	case epItems:
		return payload.EndpointItems
	case epItem:
		return payload.EndpointItem
	case epChatMessages:
		return payload.EndpointChatMessages
	}
	return ""
}

// tokenUsage is the token usage an upstream reported for one call.
type tokenUsage struct {
	Input  int64 `json:"input"`
	Output int64 `json:"output"`
	Total  int64 `json:"total"`
}

// call is the per-request scope every handler of the chain shares through
// the request context. Each handler fills in what it learns; the audit
// event is built from it once, at the end.
type call struct {
	*Inspection // snapshot taken when the call began

	id        string    // pamctl's id of the call (newRequestID)
	clientID  string    // the client's X-Request-Id, escaped and bounded (clientRequestID)
	start     time.Time // wall clock, for latency (not the injected clock)
	kind      endpointKind
	method    string
	path      string // cleaned request path, e.g. /v1/chat/completions
	remote    string
	userAgent string

	// taken is a stream's answer once modifyResponse has it: relayStream
	// writes it to the client.
	taken *takenStream

	claims *token.Claims
	scopes []string
	// toolScopes are the values of the grant's tool: scopes (nil: every
	// tool); set by authorize for model calls (tools.go).
	toolScopes []string

	up          *upstream
	req         *payload.Request // the parsed body of a model call
	clientModel string           // as the client named it, maybe upstream-qualified
	model       string           // as sent upstream
	stream      bool
	stripUsage  bool       // we asked upstream for stream usage the client did not want
	choices     int        // chat: the choices the request asked for (requestedChoices; 0 before it is read)
	body        []byte     // what goes upstream
	prompt      string     // the forwarded prompt text, masked again for the trail
	promptSHA   string     // SHA-256 of the forwarded prompt text
	unscanned   []string   // content pamctl could not read (payload.Request.Unscanned)
	key         secret     // vaulted provider key for this call
	extraKey    secret     // the upstream's extra key (Upstream.ExtraKey), if any
	keys        *scrub.Set // every known vaulted key, scrubbed from what leaves
	// tools, when set, judges the tool calls a streamed answer proposes
	// instead of p.toolJudge(c) (tests set a fake judge here).
	tools toolcall.Judge
	// cancelUpstream ends the upstream call (set when it is forwarded);
	// release calls it.
	cancelUpstream func()
	upAttempts     atomic.Int32    // attempts sent upstream in quick succession (detachUpstream)
	upLast         atomic.Int64    // when the last attempt's headers were written (Unix ns)
	client         context.Context // the client's request context, once forwarded
	usageEstimated bool            // usage estimated from the relayed text
	promptLen      int             // bytes of the forwarded prompt (c.prompt may be cut)

	decision string
	reasons  []string
	rule     string

	status   int
	usage    tokenUsage
	hasUsage bool
	summary  string // masked excerpt of the answer
	// shape is the POST path whose answer shape a whole answer has, once
	// maskAnswer found it (answerPath, or a stored answer another
	// endpoint answered with); "" when it was not masked as a model answer.
	shape       string
	upstreamID  string // upstream's x-request-id
	maskedIn    map[string]int
	maskedOut   map[string]int
	err         *apiError
	errDetail   string // detail for the trail; never a secret
	audited     bool
	auditFailed bool
	reserved    int64 // bytes of the in-flight body budget this call holds
	unreadBody  bool  // the client sent a body the proxy has not read (yet)
	// octx is the Observer's context for this call (nil without one).
	octx context.Context
}

// release ends the upstream call, if any; the answer is no longer read.
func (c *call) release() {
	if c.cancelUpstream != nil {
		c.cancelUpstream()
	}
}

// clientContext is the client's request context once the call was
// forwarded (the upstream request's own is detached from it), else ctx.
func (c *call) clientContext(ctx context.Context) context.Context {
	if c.client != nil {
		return c.client
	}
	return ctx
}

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// callFrom returns the request's scope; the first handler of the chain
// always installs one.
func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// secret is a provider key in memory; every fmt verb prints it redacted.
type secret struct{ v string }

func (secret) String() string   { return "[redacted]" }
func (secret) GoString() string { return "proxy.secret([redacted])" }

// MarshalJSON keeps a secret out of JSON by accident.
func (secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// newRequestID returns a fresh request id in OpenAI's style.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return "req_" + hex.EncodeToString(b[:])
}

// maxClientRequestID bounds the client's X-Request-Id as the trail keeps
// it (escaped bytes).
const maxClientRequestID = 128

// clientRequestID is the client's X-Request-Id for the trail, or "": it is
// attacker input, so every byte but visible ASCII (and '%' and ',') is
// percent-encoded, several lines are joined by ',' (so the commas count
// the lines: a comma in a value is %2C), and what passes
// maxClientRequestID is cut there (never inside an escape) and followed
// by its length. It is never the call's id: pamctl mints that
// (newRequestID), so no agent can give two calls one id in the trail.
func clientRequestID(r *http.Request) string {
	vs := r.Header.Values("X-Request-Id")
	if len(vs) == 0 {
		return ""
	}
	raw := strings.Join(vs, ",")
	var b strings.Builder
	// sep is where the next line starts in raw: the ',' before it joins.
	sep, line := len(vs[0]), 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		joint := i == sep && line+1 < len(vs)
		if joint {
			line++
			sep += 1 + len(vs[line])
		}
		esc := c <= ' ' || c > '~' || c == '%' || c == ',' && !joint
		n := 1
		if esc {
			n = 3
		}
		if b.Len()+n > maxClientRequestID {
			return b.String() + "... (" + strconv.Itoa(len(raw)) + " bytes)"
		}
		if esc {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
