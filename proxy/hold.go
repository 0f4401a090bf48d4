package proxy

import (
	"context"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/rules"
)

// HoldRequest describes a call a require_approval prompt rule holds, or a
// tool call a require_approval tool_call rule holds. It carries the masked
// prompt excerpt (or tool arguments) and the digest, never the raw text.
type HoldRequest struct {
	// GrantID is the grant whose token made the call.
	GrantID string
	// Claims are the caller's token claims (subject, email, groups, jti).
	// They are shared with other calls of the same token: read only.
	Claims *token.Claims
	// Rule is the first matching require_approval rule and Approvers who
	// may release it; Approvals lists every require_approval rule that
	// matched (a release must satisfy all of them, see rules.Result).
	Rule      string
	Approvers rules.Approvers
	Approvals []rules.Approval
	// Model, Method and Endpoint describe the call: the model as the
	// client names it, and the HTTP method and path it was sent with
	// (POST /v1/chat/completions/{id} updates a stored completion, DELETE
	// deletes it: an approver is shown both).
	Model    string
	Method   string
	Endpoint string
	// Excerpt is the prompt as it would go upstream (masked): whole when
	// short, else around each of the rule's first matches, "…" where it
	// is cut, each piece after a line naming where in the call the rule
	// matched in it (holdExcerpt);
	// PromptSHA256 is the digest of that whole prompt (of the whole body
	// as it would go upstream when the call carries content pamctl cannot
	// read), so an approval can be matched to a retry of the same call.
	Excerpt      string
	PromptSHA256 string
	// Matches are the pieces of the prompt the Excerpt shows, as data:
	// each with where in the request the rule matched in it, so that a
	// surface can show the place apart from the text, where no prompt
	// text can pass for one (the Excerpt has them as lines of its own,
	// "[found in messages[2] (system)]", for surfaces that show text).
	// MatchSummary is the Excerpt's first line, without its brackets,
	// when the rule matched in more than one piece: "prompt of 48213
	// bytes; rule "destructive-sql" matches 9 times; the first 6 are
	// shown". Both are empty when the Excerpt names no place: a tool
	// call, an unscanned rule, a rule that matches nothing of the masked
	// prompt.
	Matches      []HeldMatch
	MatchSummary string
	// CallSHA256 is the digest of the call as it would go upstream: its
	// method, query string, Content-Type and Content-Encoding, and its
	// whole body after redaction and masking (roles, message boundaries,
	// tools, every parameter). A late approval's retry must match it as
	// well as PromptSHA256, which is of the prompt's words only. Empty
	// for a held tool call.
	CallSHA256 string
	// Tool and Arguments are set when a tool_call rule holds a tool call
	// the model proposed: the tool's name (toolcall.Call.Tool) and its
	// arguments masked and whole, at most maxArgumentsShown (the Excerpt
	// shows both; longer ones are refused, not held).
	Tool      string
	Arguments string
}

// HeldMatch is one piece of a held prompt an approver is shown: Text, the
// masked prompt around one or more matches of the rule ("…" where it is
// cut), and Where, the places in the request those matches are in
// (payload.Place.Where: "messages[2] (system)",
// "tools[1].function.description"; a match running over two places
// names both, "messages[1] (user) to messages[2] (assistant)").
type HeldMatch struct {
	Where []string
	Text  string
}

// maxHoldMethod bounds the method of a call that can be held. net/http
// takes any token as a method, of any length (the standard ones have at
// most 17 bytes); an approver is shown the method whole, so a call with a
// longer one (only an endpoint: scope lets one through; tool calls are
// judged on GET and POST routes only) is refused rather than held.
const maxHoldMethod = 32

// HoldDecision is an approver's answer to a held call.
type HoldDecision struct {
	// Approved releases the call upstream.
	Approved bool
	// ID names the hold (the broker's request id) for messages and the trail.
	ID string
	// Reason is what the approver or the broker said, safe to show.
	Reason string
}

// Holder asks a person to release or refuse a held call. Hold blocks until
// someone decides or ctx ends (the client gave up or the hold timeout ran
// out); an approval that arrives later may let the same prompt through on a
// retry, as the broker decides.
type Holder interface {
	Hold(ctx context.Context, req HoldRequest) (HoldDecision, error)
}
