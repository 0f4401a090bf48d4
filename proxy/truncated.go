package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pamctl/pamctl/proxy/toolcall"
)

// A model that reaches its answer's token limit (the request's
// max_completion_tokens or max_tokens, a Response's max_output_tokens, or
// the model's own) in the middle of a tool call leaves the call's
// arguments cut short: `{"command":"ls`. pamctl never relays such a call
// (LangChain's streaming parser closes what is open and would run it;
// errLenientArguments), but it tells the client what happened, with a
// status the SDKs do not retry: the same request is cut at the same place,
// and each retry is paid.

// cutShortError is errLenientArguments for arguments that are the start
// of a JSON value cut off at its end (not NaN, not trailing text): what
// the token limit leaves.
type cutShortError struct{ args string }

func (e *cutShortError) Error() string { return errLenientArguments.Error() }
func (e *cutShortError) Unwrap() error { return errLenientArguments }

// cutShortJSON reports whether args are a standard JSON value's start
// that ends before the value does.
func cutShortJSON(args string) bool {
	if strings.TrimSpace(args) == "" || json.Valid([]byte(args)) {
		return false
	}
	var v any
	return errors.Is(json.NewDecoder(strings.NewReader(args)).Decode(&v), io.ErrUnexpectedEOF)
}

// truncatedCallError: a tool call was cut short by the answer's token
// limit (tokenLimitCut, streamBody.limit).
type truncatedCallError struct {
	tool, limit string // the tool's name; the setting to raise
	// itemOnly: a Responses stream showed the call's item "incomplete"
	// and ended there, before the event that says why (the token limit,
	// or a content filter).
	itemOnly bool
	cause    error
}

func (e *truncatedCallError) Error() string {
	return "the answer reached its token limit inside a call of tool " + toolcall.QuoteName(e.tool) + ": " + e.cause.Error()
}
func (e *truncatedCallError) Unwrap() error { return e.cause }

// tokenLimitCut returns a truncatedCallError when err refused arguments
// cut short and the answer says it stopped at its token limit in the
// call that holds them: a chat choice whose finish_reason is "length", or
// a Response whose status is "incomplete" for max_output_tokens. Else
// err as it is: an answer cut short otherwise is the upstream's fault.
func tokenLimitCut(ep string, body []byte, tool string, err error) error {
	var cs *cutShortError
	if !errors.As(err, &cs) {
		return err
	}
	var limit string
	switch ep {
	case toolcall.EndpointChat:
		var a struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
				Message      struct {
					ToolCalls []struct {
						Function struct {
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
					FunctionCall *struct {
						Arguments string `json:"arguments"`
					} `json:"function_call"`
				} `json:"message"`
			} `json:"choices"`
		}
		if json.Unmarshal(body, &a) != nil {
			return err
		}
		for _, ch := range a.Choices {
			if ch.FinishReason != "length" {
				continue
			}
			if fc := ch.Message.FunctionCall; fc != nil && fc.Arguments == cs.args {
				limit = limitChat
			}
			for _, tc := range ch.Message.ToolCalls {
				if tc.Function.Arguments == cs.args {
					limit = limitChat
				}
			}
		}
	case toolcall.EndpointResponses:
		var a struct {
			Status            string `json:"status"`
			IncompleteDetails *struct {
				Reason string `json:"reason"`
			} `json:"incomplete_details"`
			Output []struct {
				Type      string `json:"type"`
				Arguments string `json:"arguments"`
			} `json:"output"`
		}
		if json.Unmarshal(body, &a) != nil || a.Status != "incomplete" || a.IncompleteDetails == nil || a.IncompleteDetails.Reason != "max_output_tokens" {
			return err
		}
		for _, it := range a.Output {
			if (it.Type == "function_call" || it.Type == "mcp_call") && it.Arguments == cs.args {
				limit = limitResponses
			}
		}
	}
	if limit == "" {
		return err
	}
	return &truncatedCallError{tool: tool, limit: limit, cause: err}
}

// errTruncatedCall is what the client gets for a truncatedCallError: 400,
// not 5xx. The OpenAI SDKs (openai-python, -node, -go) retry 408, 409,
// 429 and every 5xx, and so do most retry wrappers around them: a 502
// would pay for the same cut-off answer up to three times more. OpenAI
// itself answers 400 when an answer it must complete (structured output)
// hits max_tokens. x-should-retry false says so to the SDKs that read it.
func errTruncatedCall(e *truncatedCallError) *apiError {
	what := "The model's answer reached its token limit inside a call of tool " + toolcall.QuoteName(e.tool)
	if e.itemOnly {
		what = "The model's answer stopped inside a call of tool " + toolcall.QuoteName(e.tool) + " (its item is \"incomplete\": the token limit, or a content filter)"
	}
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: CodeToolCallTruncated, NoRetry: true, cause: e,
		Message: fmt.Sprintf("%s, so the call's arguments are cut short and pamctl withheld the answer (a call cut short is never run). Raise %s, or ask for less, and send the request again; the same request would stop at the same place.", what, e.limit)}
}

const (
	limitChat      = "max_completion_tokens (or max_tokens)"
	limitResponses = "max_output_tokens"
)

// limitEvent reads one raw stream event for the token limit: a chat
// chunk with a choice whose finish_reason is "length" (limitChat), a
// Responses response.incomplete for max_output_tokens (limitResponses),
// or a function or MCP call's item done "incomplete" (limitResponses,
// item true). Most events are ruled out without decoding them.
func limitEvent(ev []byte) (limit string, item bool) {
	if !bytes.Contains(ev, []byte(`"length"`)) && !bytes.Contains(ev, []byte(`incomplete`)) {
		return "", false
	}
	_, data := sseFields(ev)
	var e struct {
		Type    string `json:"type"`
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Response struct {
			IncompleteDetails *struct {
				Reason string `json:"reason"`
			} `json:"incomplete_details"`
		} `json:"response"`
		Item struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"item"`
	}
	if json.Unmarshal([]byte(data), &e) != nil {
		return "", false
	}
	for _, ch := range e.Choices {
		if ch.FinishReason == "length" {
			return limitChat, false
		}
	}
	switch {
	case e.Type == "response.incomplete" && e.Response.IncompleteDetails != nil && e.Response.IncompleteDetails.Reason == "max_output_tokens":
		return limitResponses, false
	case e.Type == "response.output_item.done" && e.Item.Status == "incomplete" && (e.Item.Type == "function_call" || e.Item.Type == "mcp_call"):
		return limitResponses, true
	}
	return "", false
}

// streamCut returns the truncatedCallError of a stream the firewall ended
// (toolErr) for arguments cut short, after the stream showed its token
// limit (limitEvent); nil otherwise.
func streamCut(toolErr error, limit string, itemOnly bool) *truncatedCallError {
	var u *unreadableCall
	var cs *cutShortError
	if limit == "" || !errors.As(toolErr, &u) || !errors.As(toolErr, &cs) {
		return nil
	}
	return &truncatedCallError{tool: u.tool, limit: limit, itemOnly: itemOnly, cause: toolErr}
}
