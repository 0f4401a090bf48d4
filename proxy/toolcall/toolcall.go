// Package toolcall is the tool-call firewall's vocabulary: a tool call the
// model proposes in an answer (chat tool_calls; Responses function_call,
// mcp_call, local_shell_call, computer_call and custom_tool_call items), and
// the verdict pamctl reaches on it before the agent may see it.
//
// The response path (whole answers and streams) extracts Calls and asks a
// Judge; the Judge applies the grant's tool scopes and the tool_call rules,
// holds the call for a person when a rule says so, and records the
// tool.call audit event. Whoever relays the answer only acts on the Verdict.
package toolcall

import "context"

// Kind says which wire shape proposed the call.
type Kind string

const (
	// Function is a chat tool_calls entry or a Responses function_call item.
	Function Kind = "function"
	// Custom is a Responses custom_tool_call item (free-form input).
	Custom Kind = "custom"
	// MCP is a Responses mcp_call item; Server is its server_label.
	MCP Kind = "mcp"
	// LocalShell is a Responses local_shell_call item; Arguments is its action.
	LocalShell Kind = "local_shell"
	// Computer is a Responses computer_call item; Arguments is its action.
	Computer Kind = "computer"
)

// Call is one proposed tool call, complete: its name and its whole
// arguments. Arguments is the JSON text the model wrote (for Custom, the
// raw input) after response masking (masking.response): whole answers and
// streams are judged as the agent would see them. It may still hold what
// no detector knows; a Judge audits it masked with the prompt masker.
type Call struct {
	Kind      Kind
	ID        string // call id (tool_calls[].id, item call_id or id)
	Name      string // function name; for MCP the tool name on Server
	Server    string // MCP server_label, empty otherwise
	Arguments string
}

// Tool is the name scopes and rules match: Name, or "mcp:SERVER/NAME" for
// MCP calls, "local_shell" and "computer_use" for the built-in tools.
func (c Call) Tool() string {
	switch c.Kind {
	case MCP:
		return "mcp:" + c.Server + "/" + c.Name
	case LocalShell:
		return "local_shell"
	case Computer:
		return "computer_use"
	}
	return c.Name
}

// Action is what happens to a call.
type Action int

const (
	// Allow relays the call as the model wrote it.
	Allow Action = iota
	// Redact relays the call with Verdict.Arguments in place of the
	// model's arguments (matching text masked).
	Redact
	// Deny removes the call: the client never sees any part of it, and
	// the answer ends with an assistant message carrying Verdict.Message.
	Deny
)

// Verdict is the Judge's decision on one call. A call a rule holds for
// approval comes back as Allow (released) or Deny (refused or timed out)
// once decided: Judge blocks meanwhile, and a streaming relay keeps the
// client's connection alive while it waits.
type Verdict struct {
	Action Action
	// Rule names the rule or scope that decided, empty for a plain allow.
	Rule string
	// Arguments replaces Call.Arguments when Action is Redact.
	Arguments string
	// Message is the text the agent sees in place of a denied call, safe
	// to show (it names the tool and why, never the arguments).
	Message string
}

// Judge decides on proposed tool calls. Judge is called once per call, in
// the order the model proposed them, after the call is complete. It returns
// an error only when no decision can be made (the context ended, the audit
// trail refused the event); the relay then fails closed and drops the call.
type Judge interface {
	Judge(ctx context.Context, c Call) (Verdict, error)
}

// JudgeFunc adapts a function to Judge.
type JudgeFunc func(ctx context.Context, c Call) (Verdict, error)

// Judge calls f.
func (f JudgeFunc) Judge(ctx context.Context, c Call) (Verdict, error) { return f(ctx, c) }
