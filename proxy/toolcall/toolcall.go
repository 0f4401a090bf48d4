// Package toolcall is the tool-call firewall's vocabulary: a tool call the
// model proposes in an answer (chat tool_calls; Responses function_call,
// mcp_call, local_shell_call, shell_call, apply_patch_call, computer_call,
// custom_tool_call, tool_search_call and program items, and output items of a
// type pamctl does not know), and
// the verdict pamctl reaches on it before the agent may see it.
//
// The response path (whole answers and streams) extracts Calls and asks a
// Judge; the Judge applies the grant's tool scopes and the tool_call rules,
// holds the call for a person when a rule says so, and records the
// tool.call audit event. Whoever relays the answer only acts on the Verdict.
package toolcall

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

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
	// Computer is a Responses computer_call item; Arguments is its action,
	// or one action of its actions batch: each is judged as a call of its
	// own, and the item is denied when any of them is.
	Computer Kind = "computer"
	// Shell is a Responses shell_call item (the shell tool); Arguments is
	// its action ({"commands":[...],"timeout_ms":...}).
	Shell Kind = "shell"
	// ApplyPatch is a Responses apply_patch_call item (the apply_patch
	// tool); Arguments is its operation ({"type":"update_file","path":...,
	// "diff":...}).
	ApplyPatch Kind = "apply_patch"
	// ToolSearch is a Responses tool_search_call item (tool search, run by
	// the client or the server); Arguments is its arguments (an object as
	// JSON, or the string as written).
	ToolSearch Kind = "tool_search"
	// Program is a Responses program item (programmatic tool calling);
	// Arguments is its code (JavaScript source).
	Program Kind = "program"
	// Unknown is a Responses output item of a type pamctl does not know
	// (ItemKind): an agent might execute it, so it is always denied. Name
	// is the item's type, Arguments the item as JSON.
	Unknown Kind = "unknown_item"
)

// Output item types (Responses) that propose nothing for the agent to
// execute: text, reasoning, calls the API ran itself (hosted tools), and
// results. Every other type is a call (ItemKind).
var inertItems = map[string]bool{
	"message": true, "reasoning": true, "compaction": true, "additional_tools": true,
	"web_search_call": true, "file_search_call": true, "code_interpreter_call": true,
	"image_generation_call": true, "mcp_list_tools": true, "mcp_approval_response": true,
	"function_call_output": true, "custom_tool_call_output": true, "computer_call_output": true,
	"local_shell_call_output": true, "shell_call_output": true, "apply_patch_call_output": true,
	"tool_search_output": true, "program_output": true,
}

// callItems are the output item types that propose a call pamctl reads.
var callItems = map[string]Kind{
	"function_call":    Function,
	"custom_tool_call": Custom,
	"mcp_call":         MCP,
	// An approval the agent may grant for a hosted MCP call: judged
	// before the agent can approve it.
	"mcp_approval_request": MCP,
	"local_shell_call":     LocalShell,
	"computer_call":        Computer,
	"shell_call":           Shell,
	"apply_patch_call":     ApplyPatch,
	"tool_search_call":     ToolSearch,
	"program":              Program,
}

// ItemKind classifies a Responses output item by its type (exact bytes):
// the Kind of call it proposes and call true; call false for an item that
// proposes nothing (a message, reasoning, a hosted tool's call or a
// result); Unknown and call true for every other type, letter-case
// variants of known ones included. Fail closed: a type OpenAI adds later
// may be a tool the agent runs, so it is denied until pamctl knows it.
func ItemKind(typ string) (k Kind, call bool) {
	if k, ok := callItems[typ]; ok {
		return k, true
	}
	if inertItems[typ] {
		return "", false
	}
	return Unknown, true
}

// CaseVariant returns the call item type typ equals only under letter
// case ("Shell_Call" is "shell_call"), or "": decoders that fold case
// could read it as that call.
func CaseVariant(typ string) string {
	for k := range callItems {
		if typ != k && strings.EqualFold(typ, k) {
			return k
		}
	}
	return ""
}

// objectKeys are the keys of an arguments object (ObjectArguments, and
// each element of BatchArguments) that the agents' SDKs read, per item
// type, at any depth (a computer_call's drag path is a list of {x, y}).
var objectKeys = map[string][]string{
	"shell_call":       {"commands", "timeout_ms", "max_output_length"},
	"apply_patch_call": {"type", "path", "diff"},
	"local_shell_call": {"type", "command", "env", "timeout_ms", "user", "working_directory"},
	"computer_call":    {"type", "x", "y", "button", "keys", "path", "scroll_x", "scroll_y", "text"},
}

// freeObjects are the members of an arguments object whose keys are data,
// not fields (a local_shell_call's env names environment variables: PATH
// is not path).
var freeObjects = map[string]bool{"env": true}

// CheckObjectKeys refuses an arguments object (or an array of them) of an
// item of type typ holding, at any depth, a key that differs from one the
// SDKs read only under case folding ("Commands", "X", "te\u212Axt" with a
// Kelvin sign): encoding/json would run it as that key, while a rule's
// selector ($.commands) would not see it.
func CheckObjectKeys(typ string, v any) error {
	keys := objectKeys[typ]
	if len(keys) == 0 {
		return nil
	}
	got, want, err := FoldedKeyIn(v, keys, freeObjects, 64)
	if err == nil && got != "" {
		err = fmt.Errorf("the key %.40q differs from %q only in letter case", got, want)
	}
	return err
}

// FoldedKeyIn walks v (decoded JSON) and returns the first key, at any
// depth, that equals one of keys only under case folding (FoldedKey), and
// the key it folds to; "" when there is none. Members named in skip are
// not entered (their keys are data). Deeper than maxDepth is an error.
func FoldedKeyIn(v any, keys []string, skip map[string]bool, maxDepth int) (got, want string, err error) {
	return foldedKeyIn(v, keys, skip, 0, maxDepth)
}

func foldedKeyIn(v any, keys []string, skip map[string]bool, depth, maxDepth int) (string, string, error) {
	if depth > maxDepth {
		return "", "", errors.New("nested too deep")
	}
	switch t := v.(type) {
	case map[string]any:
		for key, val := range t {
			if k := FoldedKey(key, keys); k != "" {
				return key, k, nil
			}
			if skip[key] {
				continue
			}
			if got, want, err := foldedKeyIn(val, keys, skip, depth+1, maxDepth); got != "" || err != nil {
				return got, want, err
			}
		}
	case []any:
		for _, val := range t {
			if got, want, err := foldedKeyIn(val, keys, skip, depth+1, maxDepth); got != "" || err != nil {
				return got, want, err
			}
		}
	}
	return "", "", nil
}

// FoldedKey returns the key of keys that key equals only under Unicode
// simple case folding (strings.EqualFold, as encoding/json matches keys to
// fields: "NAME", "argumentſ" with a long s, "\u212Aeys" with a Kelvin
// sign), or "" when key is one of keys or folds to none.
func FoldedKey(key string, keys []string) string {
	for _, k := range keys {
		if key != k && len(key) <= 3*len(k) && strings.EqualFold(key, k) {
			return k
		}
	}
	return ""
}

// ObjectArguments names the field of an output item type whose value
// (an object; for a tool_search_call also a string) is the call's
// arguments ("action", "operation", "arguments"), "" for types whose
// arguments are a string field (StringArguments).
func ObjectArguments(typ string) string {
	switch typ {
	case "local_shell_call", "computer_call", "shell_call":
		return "action"
	case "apply_patch_call":
		return "operation"
	case "tool_search_call":
		return "arguments"
	}
	return ""
}

// BatchArguments names the field of an output item type that holds a list
// of arguments objects, each judged as a call of its own (a computer_call's
// actions, besides its action), or "".
func BatchArguments(typ string) string {
	if typ == "computer_call" {
		return "actions"
	}
	return ""
}

// StringArguments names the string field of an output item type that is
// the call's arguments: "arguments", a custom_tool_call's "input", a
// program's "code"; "" for types whose arguments are an object.
func StringArguments(typ string) string {
	switch typ {
	case "function_call", "mcp_call", "mcp_approval_request":
		return "arguments"
	case "custom_tool_call":
		return "input"
	case "program":
		return "code"
	}
	return ""
}

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
// MCP calls, "local_shell", "computer_use", "shell", "apply_patch",
// "tool_search" and "programmatic_tool_calling" for the built-in tools (as
// payload.DeclaredTools names their declarations {"type":"shell"},
// {"type":"tool_search"}...), and "item:TYPE" for an
// Unknown item (no tool scope covers it: ValidName refuses the ':').
func (c Call) Tool() string {
	switch c.Kind {
	case MCP:
		return "mcp:" + c.Server + "/" + c.Name
	case LocalShell:
		return "local_shell"
	case Computer:
		return "computer_use"
	case Shell:
		return "shell"
	case ApplyPatch:
		return "apply_patch"
	case ToolSearch:
		return "tool_search"
	case Program:
		return "programmatic_tool_calling"
	case Unknown:
		return "item:" + c.Name
	}
	return c.Name
}

// UnknownVerdict is the verdict on an Unknown item, whatever a Judge said:
// denied, with the Judge's message when it denied too.
func UnknownVerdict(c Call, v Verdict) Verdict {
	if v.Action == Deny && v.Message != "" {
		return v
	}
	return Verdict{Action: Deny, Rule: v.Rule, Message: UnknownMessage(c.Name)}
}

// UnknownMessage is what the agent reads in place of an output item of a
// type pamctl does not know.
func UnknownMessage(typ string) string {
	return "pamctl blocked an output item of type " + QuoteName(typ) +
		": pamctl does not know this item type, and an agent may execute it. Ask an administrator to update pamctl, or send the request without the tool that produces it."
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
