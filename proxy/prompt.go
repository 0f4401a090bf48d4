package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// excerptBytes bounds the prompt excerpt shown to an approver.
const excerptBytes = 1024

// DefaultHoldTimeout is how long a held call waits for an approver.
const DefaultHoldTimeout = 2 * time.Minute

// applyRules runs the prompt rules and prompt masking on a model call:
// deny refuses it (403 prompt_blocked), require_approval holds it for an
// approver (403 approval_required unless released in time), and redact
// rules and prompt masking rewrite the prompt fields before anything goes
// upstream. The trail gets the forwarded prompt, masked again with the
// response masker so no detector's finding is ever stored, and the SHA-256
// of the forwarded prompt.
func (p *Proxy) applyRules(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callFrom(r.Context())
		if c.req == nil {
			next.ServeHTTP(w, r)
			return
		}
		in := rules.Input{Text: c.req.Text, Model: c.model, Endpoint: c.path}
		if c.claims != nil {
			in.Subject, in.Groups = c.claims.Subject, c.claims.Groups
		}
		res := c.Rules.Evaluate(in)
		for _, name := range res.Matched {
			c.reasons = append(c.reasons, "rule "+name)
		}
		c.rule = res.Rule

		forwarded := c.req.Text
		if res.Redactions > 0 || c.PromptMask.Enabled() {
			var ae *apiError
			if forwarded, ae = p.rewritePrompt(c, in, res); ae != nil {
				p.fail(w, c, ae)
				return
			}
		}
		c.promptSHA = audit.PromptDigest(forwarded)
		c.prompt, _ = c.ResponseMask.Mask(forwarded)

		switch res.Action {
		case rules.Deny:
			p.fail(w, c, errForbidden(CodePromptBlocked, fmt.Sprintf(
				"Prompt rule %q blocks this prompt. Rephrase it, or ask a pamctl administrator about the rule.", res.Rule)))
			return
		case rules.RequireApproval:
			if e := p.hold(r.Context(), c, res); e != nil {
				p.fail(w, c, e)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// rewritePrompt rewrites the prompt fields of the body: redact rules
// first, then prompt masking. It returns the prompt text as forwarded.
func (p *Proxy) rewritePrompt(c *call, in rules.Input, res rules.Result) (string, *apiError) {
	var parts []string
	counts := mask.Counts{}
	body, err := c.req.Rewrite(func(s string) string {
		if res.Redactions > 0 {
			field := in
			field.Text = s
			s = c.Rules.Evaluate(field).Text
		}
		if c.PromptMask.Enabled() {
			var n mask.Counts
			s, n = c.PromptMask.Mask(s)
			counts.Add(n)
		}
		if s != "" {
			parts = append(parts, s)
		}
		return s
	})
	if err != nil {
		return "", errBadRequest(CodeInvalidJSON, "", "The request body could not be rewritten; send the same JSON you would send to OpenAI.", err)
	}
	c.body = body
	if counts.Total() > 0 {
		c.maskedIn = counts
	}
	return strings.Join(parts, "\n"), nil
}

// hold asks an approver to release the call and waits (at most the hold
// timeout, less if the client gives up). It returns nil once released.
func (p *Proxy) hold(ctx context.Context, c *call, res rules.Result) *apiError {
	c.decision = "hold"
	refuse := func(id, why string) *apiError {
		msg := fmt.Sprintf("Prompt rule %q holds this call for approval by %s.", res.Rule, res.Approvers)
		if id != "" {
			msg += fmt.Sprintf(" It waits as %s: an approver runs `pamctl approve %s`, then send the same prompt again.", id, id)
		}
		if why != "" {
			msg += " " + why
		}
		return errForbidden(CodeApprovalRequired, msg)
	}
	if p.holds == nil {
		return refuse("", "This proxy has no approval channel configured, so the call is refused.")
	}
	hctx, cancel := context.WithTimeout(ctx, p.holdTimeout)
	defer cancel()
	d, err := p.holds.Hold(hctx, HoldRequest{
		CallID: c.id, GrantID: c.claims.Req, Claims: c.claims, Rule: res.Rule, Approvers: res.Approvers, Approvals: res.Approvals,
		Model: c.model, Endpoint: c.path, Excerpt: clip(c.prompt, excerptBytes), PromptSHA256: c.promptSHA,
	})
	if d.ID != "" {
		c.reasons = append(c.reasons, "hold "+d.ID)
	}
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		e := refuse(d.ID, "The approval channel failed; retry later.")
		e.cause = err
		return e
	case d.Approved:
		c.decision = "allow"
		c.reasons = append(c.reasons, "released")
		return nil
	case ctx.Err() != nil:
		c.errDetail = "client gave up while the call was held"
		return refuse(d.ID, "")
	case d.Reason != "":
		return refuse(d.ID, "Refused: "+d.Reason)
	}
	return refuse(d.ID, "No approver released it in time.")
}
