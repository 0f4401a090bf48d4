package proxy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
)

var _ AuditSink = audit.Sink(nil)

// actorOf describes the token's holder for the trail.
func actorOf(claims *token.Claims) *audit.Actor {
	if claims == nil {
		return nil
	}
	a := &audit.Actor{Subject: claims.Subject, Email: claims.Email, Groups: claims.Groups, Issuer: claims.IdP, TokenID: claims.ID}
	switch claims.Kind {
	case string(audit.KindUser), string(audit.KindService):
		a.Kind = audit.ActorKind(claims.Kind)
	}
	if claims.Act != nil {
		a.Act = claims.Act.Sub
	}
	return a
}

// callDetails are the details every audit event of call c starts with
// (proxy.call, tool.call, trace.span): pamctl's id of the call and, when
// the client sent one, its own X-Request-Id as client_request_id (escaped
// and bounded once, by clientRequestID, when the call arrived).
func callDetails(c *call) map[string]string {
	d := map[string]string{"request_id": c.id}
	if c.clientID != "" {
		d["client_request_id"] = c.clientID
	}
	return d
}

// event renders the call as its proxy.call audit event.
func (p *Proxy) event(c *call) *audit.Event {
	e := &audit.Event{
		Type:         audit.TypeProxyCall,
		Actor:        actorOf(c.claims),
		Decision:     c.decision,
		Reasons:      c.reasons,
		Model:        c.model,
		Endpoint:     c.method + " " + c.path,
		Prompt:       c.prompt,
		PromptSHA256: c.promptSHA,
		Unscanned:    c.unscanned,
		Response:     clip(c.summary, p.summaryBytes),
		Status:       c.status,
		LatencyMS:    time.Since(c.start).Milliseconds(),
		Client:       &audit.Client{RemoteAddr: c.remote, UserAgent: c.userAgent},
		Details:      callDetails(c),
	}
	if c.claims != nil {
		e.Grant, e.Request = c.claims.Req, c.claims.Req
	}
	if c.up != nil {
		e.Target = c.up.name
		e.Details["upstream"] = c.up.name
	}
	if c.clientModel != "" && c.clientModel != c.model {
		e.Details["client_model"] = c.clientModel
	}
	if c.stream {
		e.Details["stream"] = "true"
	}
	if c.upstreamID != "" {
		e.Details["upstream_request_id"] = c.upstreamID
	}
	if c.rule != "" {
		e.Details["rule"] = c.rule
	}
	if c.hasUsage {
		e.Usage = &audit.Usage{InputTokens: c.usage.Input, OutputTokens: c.usage.Output, TotalTokens: c.usage.Total}
		if c.usageEstimated {
			e.Details["usage"] = "estimated"
		}
	}
	if masked := mergeCounts(c.maskedIn, c.maskedOut); len(masked) > 0 {
		e.Masked = masked
	}
	if c.err != nil {
		e.Error = c.err.Code + ": " + c.err.Message
	}
	if c.errDetail != "" {
		e.Details["detail"] = c.maskQuoted(c.errDetail)
	}
	return e
}

// Caps on what one proxy event may hold. Much of an event comes from the
// client (path, user agent, X-Request-Id, model, span fields), so every
// field is bounded here, in the one place every proxy event passes through
// (appendEvent); Prompt and Response are bounded by the audit package.
const (
	capShort    = 256  // ids, names, model, endpoint, user agent, actor fields
	capError    = 1024 // Error
	capDetail   = 1024 // each Details value but the span
	capReasons  = 16   // Reasons entries
	capGroups   = 64   // Actor.Groups entries
	capDetails  = 32   // Details entries
	capMaskKeys = 64   // Masked entries
)

// capEvent bounds every field of a proxy event.
func capEvent(e *audit.Event) {
	for _, f := range []*string{&e.Grant, &e.Request, &e.Review, &e.Target, &e.Decision, &e.Model, &e.Endpoint, &e.PromptSHA256} {
		*f = clip(*f, capShort)
	}
	e.Error = clip(e.Error, capError)
	if len(e.Reasons) > capReasons {
		e.Reasons = e.Reasons[:capReasons]
	}
	for i := range e.Reasons {
		e.Reasons[i] = clip(e.Reasons[i], capShort)
	}
	if a := e.Actor; a != nil {
		for _, f := range []*string{&a.Subject, &a.Email, &a.Issuer, &a.TokenID, &a.Act} {
			*f = clip(*f, capShort)
		}
		// Groups is the verified token's slice, shared with the token
		// cache: copy before changing it.
		if long := len(a.Groups) > capGroups || slices.ContainsFunc(a.Groups, func(g string) bool { return len(g) > capShort }); long {
			gs := slices.Clone(a.Groups[:min(len(a.Groups), capGroups)])
			for i := range gs {
				gs[i] = clip(gs[i], capShort)
			}
			a.Groups = gs
		}
	}
	if cl := e.Client; cl != nil {
		cl.RemoteAddr = clip(cl.RemoteAddr, capShort)
		cl.UserAgent = clip(cl.UserAgent, capShort)
	}
	if len(e.Details) > 0 {
		kept := 0
		for k, v := range e.Details {
			if kept >= capDetails || len(k) > capShort {
				delete(e.Details, k)
				continue
			}
			kept++
			limit := capDetail
			if k == "span" {
				limit = maxSpanBytes
			}
			e.Details[k] = clip(v, limit)
		}
	}
	if len(e.Masked) > capMaskKeys {
		n := 0
		for k := range e.Masked {
			if n >= capMaskKeys {
				delete(e.Masked, k)
			}
			n++
		}
	}
}

// appendEvent bounds e's fields and appends it to the trail.
func (p *Proxy) appendEvent(ctx context.Context, e *audit.Event) error {
	capEvent(e)
	return p.sink.Append(ctx, e)
}

func mergeCounts(a, b map[string]int) map[string]int {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make(map[string]int, len(a)+len(b))
	for k, v := range a {
		out[k] += v
	}
	for k, v := range b {
		out[k] += v
	}
	return out
}

// audit appends the call's event once. The request's cancellation does not
// stop it: a client that went away still leaves its trace.
func (p *Proxy) audit(ctx context.Context, c *call) error {
	if c.audited {
		return nil
	}
	c.audited = true
	if c.status == 0 && c.err != nil {
		c.status = c.err.Status
	}
	p.stageBegin(c, StageAudit)
	err := p.appendEvent(context.WithoutCancel(ctx), p.event(c))
	p.stageEnd(c, StageAudit)
	if err != nil {
		c.auditFailed = true
		p.log.Error("audit append failed", "request_id", c.id, "err", err)
		return fmt.Errorf("proxy: audit: %w", err)
	}
	return nil
}
