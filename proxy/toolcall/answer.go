package toolcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pamctl/pamctl/broker/audit"
)

// Endpoints whose answers RewriteAnswer understands.
const (
	EndpointChat      = "/v1/chat/completions"
	EndpointResponses = "/v1/responses"
	// EndpointItems is an item list ({"object":"list","data":[ITEM,...]}:
	// a response's input items, a conversation's items), EndpointItem
	// one conversation item; both are payload's shapes of the same names.
	EndpointItems = "/v1/conversations/{id}/items"
	EndpointItem  = "/v1/conversations/{id}/items/{item_id}"
	// EndpointChatMessages is a stored chat completion's messages read
	// back ({"object":"list","data":[MESSAGE,...]}); payload's shape of
	// the same name.
	EndpointChatMessages = "/v1/chat/completions/{id}/messages"
)

// ReasonCallIDTwice is why a call is refused unjudged when another call of
// the same answer has its call id (Withholder).
const ReasonCallIDTwice = "call_id twice"

// ReasonOtherChoice is why a chat call is refused unjudged when it is on
// a choice other than the first of an answer to a request that asked for
// one choice (Withholder).
const ReasonOtherChoice = "choice not asked for"

// Withholder is a Judge that also records a call the rewrite refuses
// without asking it (why: ReasonCallIDTwice): one audit event, deny.
type Withholder interface {
	Withheld(ctx context.Context, c Call, why string) error
}

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
//     shell_call, apply_patch_call, tool_search_call and program, and items
//     of a type pamctl does not know (ItemKind), which are always denied.
//     A computer_call's action and each of its actions are judged as calls
//     of their own; one denied denies the item. A denied item is replaced,
//     in place, by an assistant message item with the explanation. An item
//     whose type is a letter-case variant of a call's ("Shell_Call") makes
//     the answer unreadable (ErrAnswerShape).
//   - item lists (EndpointItems): every item of data[] is judged as a
//     Responses output item, a denied one replaced in place the same way;
//     data that is not an array of objects, or a top-level key that is a
//     case variant of "data" or "object", makes the answer unreadable.
//   - one item (EndpointItem): the answer is the item, judged so; a denied
//     one is replaced by the message item.
//   - a chat completion's messages (EndpointChatMessages): the tool_calls
//     and function_call of every message of data[], whatever its role,
//     are judged as a choice's message's, a denied call removed and
//     explained in the message's content the same way (there is no
//     finish_reason to change); data that is not an array of objects, or
//     a top-level key that is a case variant of "data" or "object", makes
//     the answer unreadable.
//
// An answer without tool calls (or of another endpoint) comes back as it
// is; one with tool calls is re-encoded (keys sorted, duplicates gone) so
// that the client reads exactly what was judged. A Judge error ends the
// rewrite: the caller withholds the answer. A chat choice, or a
// Response's output, with two calls under one call id is refused before
// anything is judged (callIDsOnce).
func RewriteAnswer(ctx context.Context, endpoint string, body []byte, j Judge) ([]byte, error) {
	return RewriteAnswerChoices(ctx, endpoint, body, j, 0)
}

// RewriteAnswerChoices is RewriteAnswer for the answer to a request that
// asked for choices chat choices (its n; 0 when not known, as for a
// stored completion read back): when it asked for one (choices 1), tool
// calls on any choice but the first (choices[0], with index 0 or none)
// are refused before anything is judged, each recorded (Withholder,
// ReasonOtherChoice): SDKs read the first choice (by position, or by
// index), so which calls run would depend on the reader.
func RewriteAnswerChoices(ctx context.Context, endpoint string, body []byte, j Judge, choices int) ([]byte, error) {
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
	case EndpointItems, EndpointItem, EndpointChatMessages:
		// The answer is items (or one, or messages): always read, so that
		// one without a plain "data" ("Data", "d\u0061ta") is refused,
		// never passed.
	default:
		return body, nil
	}
	// Cheap test first: a key or type name is spelled plainly in JSON
	// unless escaped, and an escaped spelling is caught by the decode below
	// only when a marker is present; so look for the unescaped and the
	// escaped forms of the distinctive letters.
	if marker != nil && !containsAny(body, marker) && !bytes.Contains(body, []byte(`\u`)) {
		return body, nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var root map[string]any
	if err := d.Decode(&root); err != nil || root == nil {
		return body, nil // not an object: nothing to judge; the masker refuses it
	}
	r := &rewriter{ctx: ctx, j: j, choices: choices}
	var out any = root
	var err error
	switch endpoint {
	case EndpointChat:
		err = r.chat(root)
	case EndpointResponses:
		err = r.responses(root)
	case EndpointItems:
		err = r.list(root)
	case EndpointItem:
		out, err = r.single(root)
	case EndpointChatMessages:
		err = r.messages(root)
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
	if err := enc.Encode(out); err != nil {
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
	choices int // chat choices the request asked for (0: not known)
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

// QuoteName quotes a tool name (or an item type) for a message, an
// error's detail or a held call's excerpt, at most MaxNameLen bytes of
// it ("…" after the quote when cut): raw in quotes, a quote doubled and a
// line feed written ⏎ outside the quotes (audit.QuoteLine), so no name
// ends its quote early or starts a line. A look-alike letter, a bidi or
// an invisible character stays raw: whatever shows the text to a person
// escapes it there, once.
func QuoteName(name string) string {
	if len(name) > MaxNameLen {
		cut := MaxNameLen
		for cut > 0 && name[cut]&0xC0 == 0x80 {
			cut--
		}
		return audit.QuoteLine(name[:cut]) + "…"
	}
	return audit.QuoteLine(name)
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
	if err := r.otherChoices(choices); err != nil {
		return err
	}
	var read []idCall // every choice's: one id in two choices is ambiguous too
	for _, cv := range choices {
		choice, _ := cv.(map[string]any)
		msg, _ := choice["message"].(map[string]any)
		calls, _ := msg["tool_calls"].([]any)
		for _, tv := range calls {
			tc, _ := tv.(map[string]any)
			if c, _, err := chatCall(tc); err == nil {
				read = append(read, idCall{Call: c})
			}
		}
	}
	if err := r.callIDsOnce(read, "choices[].message.tool_calls"); err != nil {
		return err
	}
	for ci, cv := range choices {
		choice, _ := cv.(map[string]any)
		msg, _ := choice["message"].(map[string]any)
		if msg == nil {
			continue
		}
		denied, err := r.message(msg, fmt.Sprintf("choices[%d].message", ci))
		if err != nil {
			return err
		}
		if denied && msg["tool_calls"] == nil && msg["function_call"] == nil {
			choice["finish_reason"] = "stop"
		}
	}
	return nil
}

// otherChoices refuses, for a request that asked for one choice, an
// answer with tool calls (tool_calls or a legacy function_call) on a
// choice other than the first: after choices[0], or with an index other
// than 0. Each such call is recorded (Withholder, ReasonOtherChoice)
// before the answer is refused (ErrAnswerShape).
func (r *rewriter) otherChoices(choices []any) error {
	if r.choices != 1 {
		return nil
	}
	var refused []Call
	where := ""
	for ci, cv := range choices {
		choice, _ := cv.(map[string]any)
		msg, _ := choice["message"].(map[string]any)
		if msg == nil {
			continue
		}
		if idx, has := choice["index"]; ci == 0 && (!has || idx == nil || fmt.Sprint(idx) == "0") {
			continue
		}
		calls, _ := msg["tool_calls"].([]any)
		for _, tv := range calls {
			tc, _ := tv.(map[string]any)
			c, _, _ := chatCall(tc) // as far as it reads
			refused = append(refused, c)
		}
		if fc, _ := msg["function_call"].(map[string]any); fc != nil {
			name, _ := str(fc, "name")
			args, _ := str(fc, "arguments")
			refused = append(refused, Call{Kind: Function, Name: name, Arguments: args})
		}
		if len(refused) > 0 && where == "" {
			where = fmt.Sprintf("choices[%d]", ci)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	if w, ok := r.j.(Withholder); ok {
		for _, c := range refused {
			if err := w.Withheld(r.ctx, c, ReasonOtherChoice); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("%w: %s holds tool calls, and the request asked for one choice", ErrAnswerShape, where)
}

// messages judges the tool calls of every message of a chat completion's
// messages read back (EndpointChatMessages).
func (r *rewriter) messages(root map[string]any) error {
	msgs, err := listData(root)
	if err != nil {
		return err
	}
	for i, mv := range msgs {
		if _, err := r.message(mv.(map[string]any), fmt.Sprintf("data[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

// message judges the tool_calls and the legacy function_call of one chat
// message (where names it in errors): a denied call is removed and its
// explanation appended to the message's content; a redacted one carries
// the masked arguments. denied reports whether a call was removed.
func (r *rewriter) message(msg map[string]any, where string) (denied bool, err error) {
	var reasons []string
	if raw, present := msg["tool_calls"]; present && raw != nil {
		calls, ok := raw.([]any)
		if !ok {
			return false, fmt.Errorf("%w: %s.tool_calls is not an array", ErrAnswerShape, where)
		}
		kept := make([]any, 0, len(calls))
		for ti, tv := range calls {
			tc, _ := tv.(map[string]any)
			c, fields, err := chatCall(tc)
			if err != nil {
				return false, fmt.Errorf("%w: %s.tool_calls[%d]: %v", ErrAnswerShape, where, ti, err)
			}
			v, err := r.judge(c)
			if err != nil {
				return false, err
			}
			switch v.Action {
			case Deny:
				reasons = append(reasons, v.Message)
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
			return false, fmt.Errorf("%w: %s.function_call", ErrAnswerShape, where)
		}
		v, err := r.judge(Call{Kind: Function, Name: name, Arguments: args})
		if err != nil {
			return false, err
		}
		switch v.Action {
		case Deny:
			reasons = append(reasons, v.Message)
			delete(msg, "function_call")
		case Redact:
			fc["arguments"] = v.Arguments
		}
	}
	if len(reasons) == 0 {
		return false, nil
	}
	text, _ := msg["content"].(string)
	if text != "" {
		text += "\n\n"
	}
	msg["content"] = text + strings.Join(reasons, "\n")
	return true, nil
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
	var read []idCall
	for _, iv := range items {
		item, _ := iv.(map[string]any)
		typ, _ := item["type"].(string)
		if parts, err := ItemCalls(typ, item); err == nil && len(parts) > 0 {
			read = append(read, idCall{Call: parts[0].Call, item: item})
		}
	}
	if err := r.callIDsOnce(read, "output"); err != nil {
		return err
	}
	return r.items(items, "output")
}

// idCall is a call callIDsOnce reads, and the Responses item it is of
// (nil for a chat call).
type idCall struct {
	Call
	item map[string]any
}

// callIDsOnce refuses calls (of one chat choice, or of a Response's
// output: each item's first call) two of which have one call id (a
// Responses item without a call_id: its id): the SDKs key a call's
// output by it, so which call ran, and which one a result answers, is
// ambiguous. Before anything is judged, each call under such an id is
// recorded (Withholder; an item repeated as it is, once) and the answer
// refused (ErrAnswerShape).
func (r *rewriter) callIDsOnce(calls []idCall, where string) error {
	seen := make(map[string]int, len(calls))
	twice := ""
	for _, c := range calls {
		if c.ID == "" {
			continue
		}
		if seen[c.ID]++; seen[c.ID] == 2 && twice == "" {
			twice = c.ID
		}
	}
	if twice == "" {
		return nil
	}
	if w, ok := r.j.(Withholder); ok {
		recorded := map[string]bool{}
		for _, c := range calls {
			if seen[c.ID] < 2 {
				continue
			}
			if c.item != nil {
				key, err := jsonText(c.item)
				if err == nil && recorded[key] {
					continue // the same item again: one call
				}
				recorded[key] = true
			}
			if err := w.Withheld(r.ctx, c.Call, ReasonCallIDTwice); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("%w: %s holds more than one call with the call id %.80q", ErrAnswerShape, where, twice)
}

// list judges the items of an item list (EndpointItems).
func (r *rewriter) list(root map[string]any) error {
	items, err := listData(root)
	if err != nil {
		return err
	}
	return r.items(items, "data")
}

// listData is the data of a list answer (an item list, a chat
// completion's messages): an array of objects, under a "data" and an
// "object" no other top-level key is a case variant of.
func listData(root map[string]any) ([]any, error) {
	for k := range root {
		for _, read := range []string{"data", "object"} {
			if k != read && strings.EqualFold(k, read) {
				return nil, fmt.Errorf("%w: the key %.40q differs from %q only in letter case", ErrAnswerShape, k, read)
			}
		}
	}
	data, ok := root["data"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: data is not an array of objects", ErrAnswerShape)
	}
	for i, v := range data {
		if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("%w: data[%d] is not an object", ErrAnswerShape, i)
		}
	}
	return data, nil
}

// single judges an answer that is one item (EndpointItem) and returns the
// answer as the client may see it: the item, or the message replacing it.
func (r *rewriter) single(root map[string]any) (any, error) {
	items := []any{root}
	if err := r.items(items, "item"); err != nil {
		return nil, err
	}
	return items[0], nil
}

// items judges a list of Responses items (a Response's output, an item
// list's data) in place; where names the list in errors.
func (r *rewriter) items(items []any, where string) error {
	for i, iv := range items {
		item, _ := iv.(map[string]any)
		if item == nil {
			continue
		}
		typ, okT := item["type"].(string)
		if !okT && item["type"] != nil {
			return fmt.Errorf("%w: %s[%d]: type is not a string", ErrAnswerShape, where, i)
		}
		if k := CaseVariant(typ); k != "" {
			return fmt.Errorf("%w: %s[%d]: type %.40q differs from %q only in letter case", ErrAnswerShape, where, i, typ, k)
		}
		parts, err := ItemCalls(typ, item)
		if err != nil {
			return fmt.Errorf("%w: %s[%d]: %v", ErrAnswerShape, where, i, err)
		}
		var denied *Verdict
		var redacted []int
		verdicts := make([]Verdict, len(parts))
		for pi, p := range parts {
			v, err := r.judge(p.Call)
			if err != nil {
				return err
			}
			verdicts[pi] = v
			switch v.Action {
			case Deny:
				if denied == nil {
					denied = &verdicts[pi]
				}
			case Redact:
				redacted = append(redacted, pi)
			}
		}
		if denied != nil {
			// One denied action of a batch denies the item: the agent
			// runs a computer_call's actions together.
			r.n++
			items[i] = map[string]any{
				"id": fmt.Sprintf("msg_pamctl_%d", r.n), "type": "message", "role": "assistant", "status": "completed",
				"content": []any{map[string]any{"type": "output_text", "text": denied.Message, "annotations": []any{}}},
			}
			continue
		}
		for _, pi := range redacted {
			if err := parts[pi].Set(item, verdicts[pi].Arguments); err != nil {
				return fmt.Errorf("toolcall: redacted %s[%d]: %w", where, i, err)
			}
		}
	}
	return nil
}

// ItemCall is one call an output item proposes, and where its arguments
// are in the item.
type ItemCall struct {
	Call
	Field  string // the item's member holding the arguments
	Index  int    // element of Field (a computer_call's actions), or -1
	Object bool   // the arguments are JSON (an object), not a string
}

// Set writes redacted arguments back into the item (decoded with
// UseNumber, as ItemCalls read it).
func (p ItemCall) Set(item map[string]any, args string) error {
	var v any = args
	if p.Object {
		d := json.NewDecoder(strings.NewReader(args))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return fmt.Errorf("%s is not JSON: %w", p.Field, err)
		}
	}
	if p.Index < 0 {
		item[p.Field] = v
		return nil
	}
	list, _ := item[p.Field].([]any)
	if p.Index >= len(list) {
		return fmt.Errorf("%s[%d] is gone", p.Field, p.Index)
	}
	list[p.Index] = v
	return nil
}

// ItemCalls reads the calls an output item of type typ proposes (the item
// decoded with UseNumber): none for items that propose nothing
// (ItemKind), one for most calls, one per action for a computer_call with
// a batch of actions (its action first, when it has one). An error says
// why the item is unreadable: a member of the wrong JSON type, or a key of
// its arguments object that is a case variant of one the SDKs read
// (CheckObjectKeys).
func ItemCalls(typ string, item map[string]any) ([]ItemCall, error) {
	kind, call := ItemKind(typ)
	if !call {
		return nil, nil
	}
	id, _ := item["call_id"].(string)
	if id == "" {
		id, _ = item["id"].(string)
	}
	c := Call{ID: id, Kind: kind}
	if kind == Unknown {
		// Always denied; the item is what the audit records.
		text, err := actionText(item)
		if err != nil {
			return nil, err
		}
		c.Name, c.Arguments = typ, text
		return []ItemCall{{Call: c, Index: -1}}, nil
	}
	if kind == MCP {
		server, okS := str(item, "server_label")
		if !okS {
			return nil, errors.New("server_label is not a string")
		}
		c.Server = server
	}
	name, okN := str(item, "name")
	if !okN {
		return nil, errors.New("name is not a string")
	}
	c.Name = name
	if field := StringArguments(typ); field != "" {
		args, okA := str(item, field)
		if !okA {
			return nil, fmt.Errorf("%s is not a string", field)
		}
		c.Arguments = args
		return []ItemCall{{Call: c, Field: field, Index: -1}}, nil
	}
	field := ObjectArguments(typ)
	var out []ItemCall
	batch := BatchArguments(typ)
	if v := item[field]; v != nil || batch == "" || item[batch] == nil {
		// The single arguments object, "{}" when absent (unless a batch
		// stands in its place).
		if s, isStr := v.(string); isStr && kind == ToolSearch {
			c.Arguments = s
			out = append(out, ItemCall{Call: c, Field: field, Index: -1})
		} else {
			if err := CheckObjectKeys(typ, v); err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			text, err := argumentsText(kind, v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			c.Arguments = text
			out = append(out, ItemCall{Call: c, Field: field, Index: -1, Object: true})
		}
	}
	if batch != "" && item[batch] != nil {
		list, ok := item[batch].([]any)
		if !ok {
			return nil, fmt.Errorf("%s is not an array", batch)
		}
		if err := CheckObjectKeys(typ, list); err != nil {
			return nil, fmt.Errorf("%s: %w", batch, err)
		}
		for ai, av := range list {
			text, err := actionText(av)
			if err != nil || av == nil {
				return nil, fmt.Errorf("%s[%d] is not an object", batch, ai)
			}
			c.Arguments = text
			out = append(out, ItemCall{Call: c, Field: batch, Index: ai, Object: true})
		}
	}
	return out, nil
}

// argumentsText renders an item's arguments value: an object as actionText
// does; a tool_search_call's may also be any other JSON value.
func argumentsText(kind Kind, v any) (string, error) {
	if _, isObj := v.(map[string]any); kind != ToolSearch || isObj || v == nil {
		return actionText(v)
	}
	return jsonText(v)
}

// actionText renders the object that is a call's arguments (the action of
// a local_shell_call, computer_call or shell_call, each of a
// computer_call's actions, the operation of an apply_patch_call) as the
// JSON text rules match: keys sorted, numbers as written, "{}" when absent.
func actionText(v any) (string, error) {
	if v == nil {
		return "{}", nil
	}
	if _, ok := v.(map[string]any); !ok {
		return "", errors.New("not an object")
	}
	return jsonText(v)
}

// jsonText is v as compact JSON, keys sorted, without HTML escaping: the
// characters the agent will read.
func jsonText(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
