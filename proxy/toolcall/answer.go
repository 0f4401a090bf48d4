package toolcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Endpoints whose answers RewriteAnswer understands.
const (
	EndpointChat      = "/v1/chat/completions"
	EndpointResponses = "/v1/responses"
)

// MaxCallsPerAnswer bounds the tool calls of one answer pamctl judges
// (each is an audit event, and may be a hold): an answer proposing more is
// withheld (ErrAnswerShape). Models propose a handful at a time.
const MaxCallsPerAnswer = 128

// ErrAnswerShape is wrapped when an answer holds a tool call pamctl
// cannot read (a name or arguments of the wrong JSON type): the answer is
// withheld rather than relayed unjudged.
var ErrAnswerShape = errors.New("toolcall: unreadable tool call in the answer")

// RewriteAnswer judges every tool call a whole (non-streamed) answer of
// endpoint proposes, in order, and returns the answer as the client may
// see it:
//
//   - chat completions: choices[].message.tool_calls (function and custom)
//     and the legacy message.function_call. A denied call is removed; the
//     message's content says which tool was blocked and why (after any
//     text the model wrote), and when no call is left the choice's
//     finish_reason becomes "stop". Redacted calls carry the masked
//     arguments; allowed calls stay as they are.
//   - Responses: output[] items of type function_call, custom_tool_call,
//     mcp_call, mcp_approval_request, local_shell_call, computer_call,
//     shell_call and apply_patch_call, and items of a type pamctl does not
//     know (ItemKind), which are always denied. A denied item is replaced,
//     in place, by an assistant message item with the explanation. An item
//     whose type is a letter-case variant of a call's ("Shell_Call") makes
//     the answer unreadable (ErrAnswerShape).
//
// An answer without tool calls (or of another endpoint) comes back as it
// is; one with tool calls is re-encoded (keys sorted, duplicates gone) so
// that the client reads exactly what was judged. A Judge error ends the
// rewrite: the caller withholds the answer.
func RewriteAnswer(ctx context.Context, endpoint string, body []byte, j Judge) ([]byte, error) {
	if j == nil {
		return body, nil
	}
	var marker []string
	switch endpoint {
	case EndpointChat:
		marker = []string{`"tool_calls"`, `"function_call"`}
	case EndpointResponses:
		// Every output item is classified (an unknown type is denied), so
		// any answer with an output is read.
		marker = []string{`"output"`}
	default:
		return body, nil
	}
	// Cheap test first: a key or type name is spelled plainly in JSON
	// unless escaped, and an escaped spelling is caught by the decode below
	// only when a marker is present; so look for the unescaped and the
	// escaped forms of the distinctive letters.
	if !containsAny(body, marker) && !bytes.Contains(body, []byte(`\u`)) {
		return body, nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var root map[string]any
	if err := d.Decode(&root); err != nil || root == nil {
		return body, nil // not an object: nothing to judge; the masker refuses it
	}
	r := &rewriter{ctx: ctx, j: j}
	var err error
	if endpoint == EndpointChat {
		err = r.chat(root)
	} else {
		err = r.responses(root)
	}
	if err != nil {
		return nil, err
	}
	if !r.changed {
		return body, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("toolcall: encode answer: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func containsAny(b []byte, subs []string) bool {
	for _, s := range subs {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

type rewriter struct {
	ctx     context.Context
	j       Judge
	changed bool
	n       int // denial messages inserted (for their ids)
	judged  int
}

func (r *rewriter) judge(c Call) (Verdict, error) {
	if r.judged++; r.judged > MaxCallsPerAnswer {
		return Verdict{}, fmt.Errorf("%w: more than %d tool calls in one answer", ErrAnswerShape, MaxCallsPerAnswer)
	}
	v, err := r.j.Judge(r.ctx, c)
	if err != nil {
		return Verdict{}, err
	}
	if c.Kind == Unknown {
		v = UnknownVerdict(c, v)
	}
	// An answer with a judged call is always written anew, even when every
	// verdict is Allow: the client then reads exactly what was judged (a
	// duplicated key, which decoders resolve differently, is gone).
	r.changed = true
	if v.Action == Deny && v.Message == "" {
		v.Message = DeniedMessage(c, "")
	}
	return v, nil
}

// DeniedMessage is the text an agent sees in place of a denied call when
// the Judge gave none: it names the tool, never the arguments.
func DeniedMessage(c Call, why string) string {
	msg := "pamctl blocked a call of tool " + QuoteName(c.Tool())
	if why != "" {
		msg += ": " + why
	}
	return msg + "."
}

// QuoteName quotes a tool name for a message: ASCII only (look-alike
// letters show as \u escapes) and at most 128 bytes of it.
func QuoteName(name string) string {
	if len(name) > MaxNameLen {
		cut := MaxNameLen
		for cut > 0 && name[cut]&0xC0 == 0x80 {
			cut--
		}
		return strconv.QuoteToASCII(name[:cut]) + "…"
	}
	return strconv.QuoteToASCII(name)
}

func str(m map[string]any, k string) (string, bool) {
	v, present := m[k]
	if !present || v == nil {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

// chat judges the tool calls of every choice.
func (r *rewriter) chat(root map[string]any) error {
	choices, _ := root["choices"].([]any)
	for ci, cv := range choices {
		choice, _ := cv.(map[string]any)
		msg, _ := choice["message"].(map[string]any)
		if msg == nil {
			continue
		}
		var denied []string
		if raw, present := msg["tool_calls"]; present && raw != nil {
			calls, ok := raw.([]any)
			if !ok {
				return fmt.Errorf("%w: choices[%d].message.tool_calls is not an array", ErrAnswerShape, ci)
			}
			kept := make([]any, 0, len(calls))
			for ti, tv := range calls {
				tc, _ := tv.(map[string]any)
				c, fields, err := chatCall(tc)
				if err != nil {
					return fmt.Errorf("%w: choices[%d].message.tool_calls[%d]: %v", ErrAnswerShape, ci, ti, err)
				}
				v, err := r.judge(c)
				if err != nil {
					return err
				}
				switch v.Action {
				case Deny:
					denied = append(denied, v.Message)
					continue
				case Redact:
					fields[c.argKey()] = v.Arguments
				}
				kept = append(kept, tv)
			}
			if len(kept) < len(calls) {
				if len(kept) == 0 {
					delete(msg, "tool_calls")
				} else {
					msg["tool_calls"] = kept
				}
			}
		}
		if raw, present := msg["function_call"]; present && raw != nil {
			fc, _ := raw.(map[string]any)
			name, okN := str(fc, "name")
			args, okA := str(fc, "arguments")
			if fc == nil || !okN || !okA {
				return fmt.Errorf("%w: choices[%d].message.function_call", ErrAnswerShape, ci)
			}
			v, err := r.judge(Call{Kind: Function, Name: name, Arguments: args})
			if err != nil {
				return err
			}
			switch v.Action {
			case Deny:
				denied = append(denied, v.Message)
				delete(msg, "function_call")
			case Redact:
				fc["arguments"] = v.Arguments
			}
		}
		if len(denied) == 0 {
			continue
		}
		text, _ := msg["content"].(string)
		if text != "" {
			text += "\n\n"
		}
		msg["content"] = text + strings.Join(denied, "\n")
		if msg["tool_calls"] == nil && msg["function_call"] == nil {
			choice["finish_reason"] = "stop"
		}
	}
	return nil
}

// argKey names the field of a call's wire form that holds its arguments.
func (c Call) argKey() string {
	if c.Kind == Custom {
		return "input"
	}
	return "arguments"
}

// chatCall reads a chat tool_calls entry; fields is the object holding its
// name and arguments.
func chatCall(tc map[string]any) (Call, map[string]any, error) {
	if tc == nil {
		return Call{}, nil, errors.New("not an object")
	}
	id, _ := tc["id"].(string)
	typ, _ := tc["type"].(string)
	c := Call{Kind: Function, ID: id}
	key := "function"
	if typ == "custom" || (tc["function"] == nil && tc["custom"] != nil) {
		c.Kind, key = Custom, "custom"
	}
	f, _ := tc[key].(map[string]any)
	if f == nil {
		return Call{}, nil, fmt.Errorf("no %s object", key)
	}
	name, okN := str(f, "name")
	args, okA := str(f, c.argKey())
	if !okN || !okA {
		return Call{}, nil, errors.New("name or arguments is not a string")
	}
	c.Name, c.Arguments = name, args
	return c, f, nil
}

// responses judges the tool call items of output.
func (r *rewriter) responses(root map[string]any) error {
	raw, present := root["output"]
	if !present || raw == nil {
		return nil
	}
	items, ok := raw.([]any)
	if !ok {
		return nil // not an answer pamctl reads; the masker decides
	}
	for i, iv := range items {
		item, _ := iv.(map[string]any)
		if item == nil {
			continue
		}
		typ, okT := item["type"].(string)
		if !okT && item["type"] != nil {
			return fmt.Errorf("%w: output[%d]: type is not a string", ErrAnswerShape, i)
		}
		if k := CaseVariant(typ); k != "" {
			return fmt.Errorf("%w: output[%d]: type %.40q differs from %q only in letter case", ErrAnswerShape, i, typ, k)
		}
		c, argKey, ok, err := responsesCall(typ, item)
		if err != nil {
			return fmt.Errorf("%w: output[%d]: %v", ErrAnswerShape, i, err)
		}
		if !ok {
			continue
		}
		v, err := r.judge(c)
		if err != nil {
			return err
		}
		switch v.Action {
		case Deny:
			r.n++
			items[i] = map[string]any{
				"id": fmt.Sprintf("msg_pamctl_%d", r.n), "type": "message", "role": "assistant", "status": "completed",
				"content": []any{map[string]any{"type": "output_text", "text": v.Message, "annotations": []any{}}},
			}
		case Redact:
			if argKey == ObjectArguments(typ) {
				var obj any
				d := json.NewDecoder(strings.NewReader(v.Arguments))
				d.UseNumber()
				if err := d.Decode(&obj); err != nil {
					return fmt.Errorf("toolcall: redacted %s of output[%d] is not JSON: %w", argKey, i, err)
				}
				item[argKey] = obj
			} else {
				item[argKey] = v.Arguments
			}
		}
	}
	return nil
}

// responsesCall reads an output item that proposes a tool call; ok is
// false for items that propose nothing (ItemKind).
func responsesCall(typ string, item map[string]any) (c Call, argKey string, ok bool, err error) {
	kind, call := ItemKind(typ)
	if !call {
		return c, "", false, nil
	}
	id, _ := item["call_id"].(string)
	if id == "" {
		id, _ = item["id"].(string)
	}
	c = Call{ID: id, Kind: kind}
	switch kind {
	case Unknown:
		// Always denied; the item is what the audit records.
		text, err := actionText(item)
		if err != nil {
			return c, "", false, err
		}
		c.Name, c.Arguments = typ, text
		return c, "", true, nil
	case Custom:
		argKey = "input"
	case MCP:
		argKey = "arguments"
		server, okS := str(item, "server_label")
		if !okS {
			return c, "", false, errors.New("server_label is not a string")
		}
		c.Server = server
	default:
		argKey = "arguments"
	}
	if field := ObjectArguments(typ); field != "" {
		text, err := actionText(item[field])
		if err != nil {
			return c, "", false, fmt.Errorf("%s: %w", field, err)
		}
		if obj, _ := item[field].(map[string]any); obj != nil {
			if err := CheckObjectKeys(typ, obj); err != nil {
				return c, "", false, fmt.Errorf("%s: %w", field, err)
			}
		}
		c.Arguments = text
		return c, field, true, nil
	}
	name, okN := str(item, "name")
	args, okA := str(item, argKey)
	if !okN || !okA {
		return c, "", false, errors.New("name or arguments is not a string")
	}
	c.Name, c.Arguments = name, args
	return c, argKey, true, nil
}

// actionText renders the object that is a call's arguments (the action of
// a local_shell_call, computer_call or shell_call, the operation of an
// apply_patch_call) as the JSON text rules match: keys sorted, numbers as
// written, "{}" when absent.
func actionText(v any) (string, error) {
	if v == nil {
		return "{}", nil
	}
	if _, ok := v.(map[string]any); !ok {
		return "", errors.New("not an object")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
