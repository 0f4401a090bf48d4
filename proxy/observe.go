package proxy

import (
	"context"
	"net/http"
)

// Stage is one of the proxy's stages of a call, as an Observer sees it.
type Stage uint8

// The stages of a call, in the order they run.
const (
	StageAuth     Stage = iota // token verification and revocation check
	StageRules                 // prompt rules and prompt masking
	StageHold                  // waiting for an approver (require_approval)
	StageUpstream              // forwarded until the upstream's answer was read
	StageMask                  // masking a buffered answer
	StageAudit                 // appending the call's audit event
	NumStages
)

var stageNames = [NumStages]string{"auth", "rules", "hold", "upstream", "mask", "audit"}

// String is the stage's short name ("auth", "rules", ...).
func (s Stage) String() string {
	if s < NumStages {
		return stageNames[s]
	}
	return "unknown"
}

// CallStats is what an Observer learns when a call ends. It carries no
// prompt or answer text and no subject or grant id.
type CallStats struct {
	// Endpoint is the kind of endpoint: chat, responses, embeddings,
	// models, model, traces or other.
	Endpoint string
	// Upstream is the name of the upstream the call was routed to ("" if
	// none).
	Upstream string
	// Model is the model as sent upstream ("" if none); not bounded: an
	// Observer that labels by it must bound it itself.
	Model    string
	Status   int
	Decision string // allow, deny, held...; "" when no rule decided
	Rule     string // the rule that decided, if any
	// Code is the OpenAI-shaped error code the client got ("" on success),
	// e.g. rate_limit_exceeded.
	Code      string
	Stream    bool
	HasUsage  bool
	TokensIn  int64
	TokensOut int64
	// MaskedIn and MaskedOut count masking findings by detector.
	MaskedIn, MaskedOut map[string]int
	// AuditFailed is set when the call's event could not be appended.
	AuditFailed bool
}

// Observer watches calls at stage boundaries (metrics, tracing). Every
// method must be safe for concurrent use and must not block. The proxy
// calls none of them when Options.Observer is nil.
type Observer interface {
	// CallBegin is called when a call arrives, with the client's request
	// headers (to honour a traceparent); the context it returns is the
	// one passed to the call's other methods.
	CallBegin(ctx context.Context, h http.Header) context.Context
	// StageBegin and StageEnd bracket a stage. StageUpstream is only
	// begun: it ends when StageMask or StageAudit begins, or the call ends.
	StageBegin(ctx context.Context, s Stage)
	StageEnd(ctx context.Context, s Stage)
	// Forward is called with the upstream request's headers just before it
	// is sent (to propagate a traceparent); FirstByte when the upstream's
	// response headers arrive.
	Forward(ctx context.Context, h http.Header)
	FirstByte(ctx context.Context)
	// CallEnd is called once, after the call's audit event was written.
	CallEnd(ctx context.Context, st *CallStats)
	// TokenVerified reports one access token check: cached when the
	// verified-token cache answered, ok when the token verified.
	TokenVerified(cached, ok bool)
}

func (k endpointKind) String() string {
	switch k {
	case epChat:
		return "chat"
	case epResponses:
		return "responses"
	case epEmbeddings:
		return "embeddings"
	case epModels:
		return "models"
	case epModel:
		return "model"
	case epTraces:
		return "traces"
	case epStoredResponse:
		return "stored_response"
	case epStoredChat:
		return "stored_chat"
	case epItems:
		return "stored_items"
	case epItem:
		return "stored_item"
	case epChatMessages:
		return "stored_chat_messages"
	}
	return "other"
}

// stageBegin and stageEnd are the nil-safe hooks the chain calls.
func (p *Proxy) stageBegin(c *call, s Stage) {
	if p.obs != nil && c.octx != nil {
		p.obs.StageBegin(c.octx, s)
	}
}

func (p *Proxy) stageEnd(c *call, s Stage) {
	if p.obs != nil && c.octx != nil {
		p.obs.StageEnd(c.octx, s)
	}
}

// observeEnd reports the finished call.
func (p *Proxy) observeEnd(c *call) {
	if p.obs == nil || c.octx == nil {
		return
	}
	st := CallStats{Endpoint: c.kind.String(), Model: c.model, Status: c.status, Decision: c.decision, Rule: c.rule,
		Stream: c.stream, HasUsage: c.hasUsage, TokensIn: c.usage.Input, TokensOut: c.usage.Output,
		MaskedIn: c.maskedIn, MaskedOut: c.maskedOut, AuditFailed: c.auditFailed}
	if c.up != nil {
		st.Upstream = c.up.name
	}
	if c.err != nil {
		st.Code = c.err.Code
		if st.Status == 0 {
			st.Status = c.err.Status
		}
	}
	p.obs.CallEnd(c.octx, &st)
}

// Observers combines observers (nil ones are dropped) into one; it
// returns nil when none is left.
func Observers(obs ...Observer) Observer {
	var all multiObserver
	for _, o := range obs {
		if o != nil {
			all = append(all, o)
		}
	}
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return all
}

type multiObserver []Observer

func (m multiObserver) CallBegin(ctx context.Context, h http.Header) context.Context {
	for _, o := range m {
		ctx = o.CallBegin(ctx, h)
	}
	return ctx
}

func (m multiObserver) StageBegin(ctx context.Context, s Stage) {
	for _, o := range m {
		o.StageBegin(ctx, s)
	}
}

func (m multiObserver) StageEnd(ctx context.Context, s Stage) {
	for _, o := range m {
		o.StageEnd(ctx, s)
	}
}

func (m multiObserver) Forward(ctx context.Context, h http.Header) {
	for _, o := range m {
		o.Forward(ctx, h)
	}
}

func (m multiObserver) FirstByte(ctx context.Context) {
	for _, o := range m {
		o.FirstByte(ctx)
	}
}

func (m multiObserver) CallEnd(ctx context.Context, st *CallStats) {
	for _, o := range m {
		o.CallEnd(ctx, st)
	}
}

func (m multiObserver) TokenVerified(cached, ok bool) {
	for _, o := range m {
		o.TokenVerified(cached, ok)
	}
}
