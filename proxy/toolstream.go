package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/toolcall"
)

// The tool-call firewall on streams.
//
// A toolBuffer sits between the payload relay (which has masked and
// scrubbed each event) and the client. With a Judge in force for the call,
// every fragment of a tool call the model proposes is taken out of the
// stream and held until the call is complete; the complete call is judged,
// and only then does the client see it, re-emitted whole (one fragment per
// call), with its arguments redacted, or not at all. Everything else (text
// before the call, usage, the terminal event) flows as it came.
//
// Chat completions: choices[].delta.tool_calls[] fragments (keyed by index,
// possibly interleaved: parallel calls) and the legacy delta.function_call
// are held per choice until that choice's finish_reason arrives, or "[DONE]"
// ends the stream. Allowed calls are re-emitted numbered 0..k-1 (the SDKs
// collect calls by index into a list, and a denied call must leave no
// gap), and no number twice in a stream (chatNext). A choice's calls end
// at its finish_reason: a call fragment of it after that ends the stream
// (reasonAfterEnd), as does one on a choice other than 0 when the request
// asked for one choice (reasonOtherChoice).
// When calls were denied an assistant content delta carries the verdicts'
// messages and, if no call of the choice survived, finish_reason becomes
// "stop", so the agent's run ends with the explanation; if some survived,
// finish_reason stays "tool_calls": an assistant message may hold content
// and tool calls together, the agent runs the allowed calls and the model
// reads the explanation on its next turn.
//
// Responses: an output item of a tool type (function_call,
// custom_tool_call, mcp_call, mcp_approval_request, local_shell_call,
// computer_call, shell_call, apply_patch_call, tool_search_call, program;
// a computer_call's batch of actions is one call per action), or of a type pamctl does not
// know (toolcall.ItemKind: always denied), and every event after it are
// held until the item's response.output_item.done; the
// call is judged and its events are then emitted anew from the judged item
// (output_item.added, one arguments delta, arguments done, output_item.done)
// or, for a denied call, replaced in place (same output_index) by a
// message item carrying the verdict's message. The upstream's events of the
// item are never relayed. Later events keep contiguous sequence_numbers, and
// the response.output of response.completed (and of every other response
// event) carries the judged items: a tool item the stream never showed is
// judged there before the terminal event is released, and so is one that
// says another call under the id of an item the stream showed; the same
// call twice there ends the stream (an SDK would run it twice), and so do
// two items under one call_id, streamed or final (claimCallID; the SDKs
// key a call's result by it), as two chat calls of the stream with one
// id do (chatIDOnce).
//
// Anything the buffer cannot read as the SDKs would (a fragment with a bad
// index or non-string arguments, a call past maxToolArguments, too many
// calls) ends the stream with an error event: fail closed. A Judge error
// does the same.
//
// Every call the stream began leaves one tool.call event: its verdict's,
// or, for a call the stream ends before it is complete and judged (the
// upstream's error or end, response.failed, the client leaving, the
// stream failing), one recorded without a verdict (withheldCalls).

// Bounds of the held calls of one stream.
const (
	// maxToolArguments bounds one call's held name and arguments.
	maxToolArguments = 1 << 20
	// maxToolHeld bounds everything held for tool calls in one stream
	// (fragments, and for Responses the events queued behind a call).
	maxToolHeld = 4 << 20
	// maxToolCalls bounds the calls one stream may propose, as for a
	// whole answer.
	maxToolCalls = toolcall.MaxCallsPerAnswer
	// maxToolIndex bounds a chat fragment's index.
	maxToolIndex = 1023
	// maxToolChoices bounds the chat choices that may hold calls.
	maxToolChoices = 128
)

// toolKeepalive is how often a stream whose tool call is held for a
// person's approval sends the client an SSE comment, so that proxies and
// SDK timeouts keep the connection open. Tests shorten it.
var toolKeepalive = 5 * time.Second

// toolWaitComment is the keep-alive sent while a call is held.
const toolWaitComment = ": pamctl: waiting for approval\n\n"

// Error codes of a stream the firewall ended.
const (
	// CodeToolCallUndecided: the Judge could not decide on a call.
	CodeToolCallUndecided = "tool_call_undecided"
	// CodeToolCallMalformed: the upstream streamed a tool call the proxy
	// cannot read safely (bad fragments, too large, too many).
	CodeToolCallMalformed = "upstream_tool_call_malformed"
)

// heldCall is one call the stream began: awaiting (or having) its
// verdict, or one the stream ended before it was complete and judged.
type heldCall struct {
	call    toolcall.Call
	verdict toolcall.Verdict
	judged  bool
	// asked: the judge has the call, and records it whatever happens
	// next (a verdict, the client leaving meanwhile).
	asked bool
	// withheld says why the call ends without a verdict ("never
	// finished", "call_id twice"), when the buffer decided so; a call
	// neither judged nor asked when the stream ends is "never finished".
	withheld string
	recorded bool // its tool.call event is written (withheldCalls)
}

// Reasons a call the stream began is recorded without a verdict
// (judge.Withheld): docs/audit.md.
const (
	reasonNeverFinished = "never finished"
	reasonCallIDTwice   = toolcall.ReasonCallIDTwice
	// reasonAfterEnd: a chat call's fragment came after its choice's
	// finish_reason (chatChunk).
	reasonAfterEnd = "after the end"
	// reasonOtherChoice: a chat call on a choice other than 0 of a
	// request that asked for one choice.
	reasonOtherChoice = toolcall.ReasonOtherChoice
	// reasonOutputIndexTwice: a Responses tool item at the output_index
	// of another (outputIndexOnce).
	reasonOutputIndexTwice = "output_index twice"
	// reasonJudgeFailed: the judge panicked or failed on the call
	// without a verdict (toolStream.wait).
	reasonJudgeFailed = "judge failed"
)

// toolBuffer is the firewall's state machine for one stream. It is
// synchronous: push gives it an event; when a call needs a verdict,
// pending returns it and nothing more is emitted (later events queue) until
// decide gives the verdict.
type toolBuffer struct {
	chat bool
	emit func(ev []byte)
	err  *apiError // set once: the stream must end with it
	off  bool      // stopped: events are swallowed

	need   []*heldCall // calls awaiting verdicts, in order
	resume func()      // finishes the event whose calls are judged
	queue  [][]byte    // events that arrived meanwhile
	held   int         // bytes held (fragments, queued events)
	calls  int         // calls seen

	// chat
	choices map[int]*chatChoiceState
	tmpl    map[string]json.RawMessage // top-level fields of the last chunk read
	chatEv  string                     // SSE event name of the last chunk read
	// chatEnded: an error chunk ended the stream; tool calls in it and
	// after it are never judged or shown, but each is recorded (never
	// finished); a fragment of a call begun before it (text the masker
	// released at the end) is part of that call.
	chatEnded bool
	// chatChoices is how many choices the request asked for (its n; 1
	// when absent): with fewer than 2, calls on a choice other than 0
	// end the stream (reasonOtherChoice).
	chatChoices int
	// chatIDs are the chat calls of the stream by id, every choice's,
	// released ones too: chatIDOnce.
	chatIDs map[string]*chatToolCall
	// chatNext numbers the next released tool call: across the stream,
	// so no two calls it relays share an index (releaseChoice).
	chatNext int

	// responses
	items    map[string]*respItem // tool items by id
	rqueue   []*respEvent         // events not yet emitted, in order
	shift    int64                // sequence_number out minus in
	evNames  bool                 // events carry SSE event names
	lastSeq  int64                // last sequence_number read
	seenSeq  bool
	nextAuto int // items without an id

	// onUnrelayed records a tool item removed from an event no SDK reads
	// calls from (nil: not recorded). unrelayed are the items seen so (by
	// id, or by their JSON when they have none); unrelayedQ those of them
	// not yet recorded: recorded when the stream ends, unless the stream
	// showed the item meanwhile (it is judged then, as one call).
	onUnrelayed func(toolcall.Call) error
	unrelayed   map[string]bool
	unrelayedQ  []unrelayedCall

	// onWithheld records a call the stream began that ends without a
	// verdict (withheldCalls; nil: not recorded). extra are calls held
	// outside choices and items (a chat choice's calls an error chunk
	// ended, a final output's items not yet judged).
	onWithheld func(c toolcall.Call, why string) error
	extra      []*heldCall
	itemSeq    int // items in the order the stream began them

	// callIDs are the Responses items the stream showed or is judging,
	// by call id (call_id, else the item's id): claimCallID.
	callIDs map[string]*respItem
}

// unrelayedCall is a tool item seen only where no SDK reads calls from.
type unrelayedCall struct {
	id   string // the item's id, "" if none
	call toolcall.Call
}

func newToolBuffer(chat bool, emit func([]byte)) *toolBuffer {
	return &toolBuffer{chat: chat, emit: emit, choices: map[int]*chatChoiceState{}, items: map[string]*respItem{}, chatChoices: 1}
}

// pending returns the call awaiting a verdict, or nil.
func (b *toolBuffer) pending() *toolcall.Call {
	if len(b.need) == 0 || b.err != nil || b.off {
		return nil
	}
	return &b.need[0].call
}

// push gives the buffer the next event of the stream (a complete raw SSE
// event, as the relay wrote it).
func (b *toolBuffer) push(ev []byte) {
	if b.err != nil || b.off {
		return
	}
	if len(b.need) > 0 || len(b.queue) > 0 {
		b.held += len(ev)
		if b.held > maxToolHeld {
			b.fail(errors.New("too many bytes held behind a tool call"))
			return
		}
		b.queue = append(b.queue, bytes.Clone(ev))
		return
	}
	b.process(ev)
}

// decide gives the verdict on the pending call, and goes on with the
// stream until the next call needs one.
func (b *toolBuffer) decide(v toolcall.Verdict) {
	if len(b.need) == 0 || b.err != nil {
		return
	}
	h := b.need[0]
	h.verdict, h.judged = v, true
	if v.Action != toolcall.Allow && v.Action != toolcall.Redact {
		h.verdict.Action = toolcall.Deny // anything unknown denies
	}
	if h.call.Kind == toolcall.Unknown {
		h.verdict = toolcall.UnknownVerdict(h.call, h.verdict) // whatever the judge said
	}
	b.need = b.need[1:]
	if len(b.need) > 0 {
		return
	}
	r := b.resume
	b.resume = nil
	if r != nil {
		r()
	}
	for len(b.queue) > 0 && len(b.need) == 0 && b.err == nil {
		ev := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.held -= len(ev)
		b.process(ev)
	}
}

// fail ends the stream: nothing more is emitted.
func (b *toolBuffer) fail(cause error) {
	if b.err != nil {
		return
	}
	b.err = errUpstream(http.StatusBadGateway, CodeToolCallMalformed,
		"The model proposed a tool call the proxy could not inspect safely, so it was withheld and the stream ends here. Retry the request.", cause)
	b.need, b.resume, b.queue, b.rqueue = nil, nil, nil, nil
}

// stall makes the calls wait for verdicts; then finishes the event.
func (b *toolBuffer) stall(calls []*heldCall, then func()) {
	if len(calls) == 0 {
		then()
		return
	}
	b.need, b.resume = calls, then
}

func (b *toolBuffer) process(ev []byte) {
	if b.chat {
		b.chatEvent(ev)
	} else {
		b.respEvent(ev)
	}
}

// eventData returns an event's name and data.
func eventData(ev []byte) (string, []byte) {
	if d, ok := plainData(ev); ok {
		return "", d
	}
	name, data := sseFields(ev)
	return name, []byte(data)
}

// sseEvent renders one event.
func sseEvent(name string, data []byte) []byte {
	var b []byte
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// toJSON encodes v without HTML escaping.
func toJSON(v any) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only maps of raw messages the decoder produced, strings and
		// numbers are encoded here.
		panic(fmt.Sprintf("proxy: encode tool stream event: %v", err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func isNull(r json.RawMessage) bool {
	r = bytes.TrimSpace(r)
	return len(r) == 0 || string(r) == "null"
}

// optString reads a string that may be absent or null.
func optString(r json.RawMessage) (string, bool) {
	if isNull(r) {
		return "", true
	}
	var s string
	if json.Unmarshal(r, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonInt reads an integer (a number, or a numeral in a string as the
// Python SDK's models accept).
func jsonInt(r json.RawMessage) (int64, bool) {
	var n json.Number
	if json.Unmarshal(r, &n) != nil {
		var s string
		if json.Unmarshal(r, &s) != nil {
			return 0, false
		}
		n = json.Number(s)
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil || f != float64(int64(f)) {
			return 0, false
		}
		i = int64(f)
	}
	return i, true
}

// deniedMessage is what the agent reads for a denied call.
func deniedMessage(h *heldCall) string {
	if m := strings.TrimSpace(h.verdict.Message); m != "" {
		return h.verdict.Message
	}
	return fmt.Sprintf("pamctl blocked the call to tool %q.", h.call.Tool())
}

// argumentsOf returns what the client sees of a call it may see.
func argumentsOf(h *heldCall) string {
	if h.verdict.Action == toolcall.Redact {
		return h.verdict.Arguments
	}
	return h.call.Arguments
}

// mayHoldTool is the fast test for an event of a stream holding no call:
// data that fails it cannot carry a tool call (a JSON key written with
// \u escapes is read like any other by the SDKs, so escapes go the slow
// way too).
func mayHoldTool(data []byte, chat bool) bool {
	// ſ (U+017F) folds to s and K (U+212A) to k: a key spelled with them
	// is read by case-insensitive decoders (encoding/json) as the ASCII one.
	if bytes.Contains(data, []byte(`\u`)) || bytes.Contains(data, []byte("\u017f")) || bytes.Contains(data, []byte("\u212a")) {
		return true
	}
	if chat {
		return containsFoldASCII(data, "tool_calls") || containsFoldASCII(data, "function_call")
	}
	// Every output item is classified (an unknown type is a call), so
	// every event that carries one (an "item", a response's "output") is
	// read; text deltas are not.
	return containsFoldASCII(data, "_call") || containsFoldASCII(data, "approval_request") ||
		containsFoldASCII(data, `"item"`) || containsFoldASCII(data, `"output"`)
}

// mayBeForeign is the fast test for an event of the other API's shape
// (chatChunkShape, responseEventShape), which the slow path refuses: in a
// chat stream a Responses event ("response.…") or item (a call's type,
// an "item", "output" or "data" holding one of a type pamctl does not
// know, a "program"); in a Responses stream a chat chunk ("choices"), a
// bare "program" item or a "data" list (a chat message's calls are
// "_call"s, which mayHoldTool catches). Text deltas of the other shape
// carry no call, but the relay masks them event by event only: text the
// client joins across them would pass.
func mayBeForeign(data []byte, chat bool) bool {
	if chat && (mayHoldTool(data, false) || containsFoldASCII(data, `"response.`)) ||
		!chat && containsFoldASCII(data, `"choices"`) {
		return true
	}
	return containsFoldASCII(data, `"program"`) || containsFoldASCII(data, `"data"`)
}

// containsFoldASCII reports whether data holds marker (lower-case ASCII)
// in any letter case. It does not allocate.
func containsFoldASCII(data []byte, marker string) bool {
	for i := 0; i+len(marker) <= len(data); i++ {
		j := 0
		for ; j < len(marker); j++ {
			c := data[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != marker[j] {
				break
			}
		}
		if j == len(marker) {
			return true
		}
	}
	return false
}

// readKeys are the keys the tool buffer reads from an event (and
// RewriteAnswer from a whole answer). A key of the event that equals one
// of them only under case folding would be read as it by case-insensitive
// decoders (encoding/json) and not by the buffer: such an event is
// refused, as are duplicate keys (payload.Validate).
var readKeys = []string{"choices", "delta", "message", "tool_calls", "function_call", "function", "custom", "name",
	"arguments", "input", "type", "index", "id", "call_id", "finish_reason", "content", "role", "item", "item_id",
	"output", "output_index", "response", "sequence_number", "server_label", "action", "operation", "usage", "status",
	"actions", "code", "namespace", "execution"}

// freeFormKeys hold objects whose keys are the caller's own (a tool's
// parameter schema echoed in a response, metadata, a text format's
// schema, prompt variables): the buffer reads nothing inside them, and
// their keys may be anything.
var freeFormKeys = map[string]bool{"tools": true, "metadata": true, "parameters": true, "schema": true,
	"text": true, "prompt": true, "reasoning": true, "tool_choice": true, "variables": true}

// strictToolJSON refuses JSON that decoders could read differently from
// the buffer: duplicate keys, case twins, invalid UTF-8, and keys that are
// case variants of readKeys.
func strictToolJSON(data []byte) error {
	if err := payload.Validate(data); err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	return foldedKeys(v, 0)
}

// foldedKeys walks v for a key that is a case variant of a read key.
func foldedKeys(v any, depth int) error {
	if depth > 64 {
		return errors.New("nested too deep")
	}
	switch t := v.(type) {
	case map[string]any:
		for key, val := range t {
			for _, k := range readKeys {
				if key != k && strings.EqualFold(key, k) {
					return fmt.Errorf("the key %s differs from %q only in letter case", quoteUpstream(key), k)
				}
			}
			if freeFormKeys[key] {
				continue // user-defined keys (schemas, metadata): nothing read there
			}
			if err := foldedKeys(val, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, val := range t {
			if err := foldedKeys(val, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- chat -----------------------------------------------------------------

type chatToolCall struct {
	heldCall
	typ    string // "function" or "custom"
	legacy bool   // delta.function_call
}

type chatChoiceState struct {
	calls    []*chatToolCall
	byIndex  map[int64]*chatToolCall
	legacy   *chatToolCall
	content  bool   // text went out for this choice
	lastKind string // finish_reason of the calls last released
	// ended: the choice's finish_reason came; a call fragment after it
	// ends the stream (reasonAfterEnd).
	ended bool
}

func (b *toolBuffer) openChoices() []int {
	var out []int
	for ci, st := range b.choices {
		if len(st.calls) > 0 {
			out = append(out, ci)
		}
	}
	slices.Sort(out)
	return out
}

func (b *toolBuffer) chatEvent(ev []byte) {
	name, data := eventData(ev)
	trimmed := bytes.TrimSpace(data)
	open := b.openChoices()
	if string(trimmed) == "[DONE]" {
		if len(open) == 0 {
			b.emit(ev)
			return
		}
		b.chatDone(bytes.Clone(ev), open)
		return
	}
	// A chunk that may end a choice or the stream (an error) is read:
	// calls after it are refused or recorded (chatChoiceState.ended,
	// chatEnded).
	if len(open) == 0 && !mayHoldTool(data, true) && !mayBeForeign(data, true) && !mayFinish(data) && !containsFoldASCII(data, `"error"`) {
		b.emit(ev)
		return
	}
	b.chatChunk(ev, name, trimmed)
}

// mayFinish is the fast test for a chunk that may end a choice (a
// finish_reason other than null): such a chunk is read, so that a call
// fragment of the choice after it is refused (chatChoiceState.ended).
func mayFinish(data []byte) bool {
	const key = "finish_reason"
	for i := 0; i+len(key) <= len(data); i++ {
		if !containsFoldASCII(data[i:i+len(key)], key) {
			continue
		}
		j := i + len(key)
		for j < len(data) && (data[j] == '"' || data[j] == ' ' || data[j] == '\t' || data[j] == ':' || data[j] == '\r' || data[j] == '\n') {
			j++
		}
		if !bytes.HasPrefix(data[j:], []byte("null")) {
			return true
		}
		i = j
	}
	return false
}

// chatDone judges the calls still held at "[DONE]" and ends their choices.
func (b *toolBuffer) chatDone(ev []byte, open []int) {
	var calls []*heldCall
	for _, ci := range open {
		calls = append(calls, b.unjudged(b.choices[ci])...)
	}
	b.stall(calls, func() {
		for _, ci := range open {
			fr := b.releaseChoice(ci)
			if fr == "" {
				fr = b.choices[ci].lastKind
			}
			b.emitChunk(ci, map[string]any{}, fr)
		}
		b.emit(ev)
	})
}

// chatChunk handles a chunk that may carry a call, or comes while calls
// are held (apart, so that the usual chunk costs no allocation).
func (b *toolBuffer) chatChunk(ev []byte, name string, trimmed []byte) {
	if err := strictToolJSON(trimmed); err != nil && !errors.Is(err, payload.ErrInvalidJSON) {
		b.fail(err) // not JSON at all is dropped below, as before
		return
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(trimmed, &top) != nil || top == nil {
		// Not a JSON object: no SDK reads a call from it, and it may be
		// a broken fragment of one. Dropped.
		return
	}
	if err := chatChunkShape.checkEvent(trimmed); err != nil {
		// A Responses item, event or list, or a bare message: calls
		// the buffer does not read from a chunk (answershape.go).
		b.fail(err)
		return
	}
	b.tmpl, b.chatEv = top, name
	if e, has := top["error"]; has && !isNull(e) {
		// The upstream's error: the stream ends, calls not yet finished
		// are never shown (withheldCalls records them).
		b.endChoices()
		b.chatEnded = true
	}
	rawChoices, ok := top["choices"]
	if !ok || isNull(rawChoices) {
		b.emit(ev)
		return
	}
	var choices []json.RawMessage
	if json.Unmarshal(rawChoices, &choices) != nil {
		return // choices no SDK reads as a list: dropped
	}
	modified := false
	decoded := make([]map[string]json.RawMessage, len(choices))
	indexes := make([]int, len(choices))
	emptied := make([]bool, len(choices))
	deltas := make([]map[string]json.RawMessage, len(choices)) // changed deltas, encoded if they go out
	var finishing []int
	for i, rc := range choices {
		var ch map[string]json.RawMessage
		if json.Unmarshal(rc, &ch) != nil || ch == nil {
			modified = true // not a choice: dropped
			continue
		}
		if m, has := ch["message"]; has && !isNull(m) {
			// A whole message in a chunk: not a chunk the buffer reads,
			// and a decoder that reads it would see calls never judged.
			b.fail(errors.New("a stream chunk carries a whole message"))
			return
		}
		ci := 0
		if n, ok := jsonInt(ch["index"]); ok && n >= 0 && n < maxToolChoices {
			ci = int(n)
		} else if r, has := ch["index"]; has && !isNull(r) {
			b.fail(fmt.Errorf("choice index %s", quoteUpstream(string(r))))
			return
		}
		indexes[i] = ci
		st := b.choices[ci]
		if st == nil {
			st = &chatChoiceState{byIndex: map[int64]*chatToolCall{}}
			b.choices[ci] = st
		}
		var delta map[string]json.RawMessage
		if d, has := ch["delta"]; has && json.Unmarshal(d, &delta) == nil && delta != nil {
			changed := false
			// Calls no SDK may read as this choice's: refused (each
			// recorded as why says), and the stream ends.
			why := ""
			switch {
			case st.ended:
				// After the choice's finish_reason: SDKs that merge
				// fragments by index and read on would glue them to
				// the calls released (another call than any judged).
				why = reasonAfterEnd
			case ci != 0 && b.chatChoices < 2:
				// A choice the request did not ask for: readers that
				// take each chunk's first choice by position merge
				// its calls into choice 0's.
				why = reasonOtherChoice
			}
			began := len(st.calls)
			ok := true
			if tc, has := delta["tool_calls"]; has {
				delete(delta, "tool_calls")
				changed = true
				ok = b.absorbToolCalls(st, tc)
			}
			if fc, has := delta["function_call"]; has && ok {
				delete(delta, "function_call")
				changed = true
				ok = b.absorbFunctionCall(st, fc)
			}
			if why != "" && len(st.calls) > began {
				for _, c := range st.calls[began:] {
					if !c.judged && !c.asked {
						c.withheld = why // whatever else it is (call_id twice)
					}
				}
				if ok {
					b.fail(fmt.Errorf("a tool call fragment of choice %d %s", ci, map[string]string{
						reasonAfterEnd:    "after its finish_reason",
						reasonOtherChoice: "of a request that asked for one choice",
					}[why]))
				}
				return
			}
			if !ok {
				return
			}
			if s, _ := optString(delta["content"]); s != "" {
				st.content = true
			}
			if changed {
				deltas[i] = delta
				modified = true
				emptied[i] = emptyDelta(delta)
			}
		}
		decoded[i] = ch
		if !isNull(ch["finish_reason"]) {
			st.ended = true
			if len(st.calls) > 0 {
				finishing = append(finishing, i)
			}
		}
	}
	if b.chatEnded {
		// After an error: calls this chunk began end unjudged (recorded
		// as never finished), whatever its finish_reason says.
		b.endChoices()
		finishing = nil
	}
	var calls []*heldCall
	for _, i := range finishing {
		calls = append(calls, b.unjudged(b.choices[indexes[i]])...)
	}
	if len(calls) > 0 {
		ev = bytes.Clone(ev)
	}
	b.stall(calls, func() {
		for _, i := range finishing {
			if fr := b.releaseChoice(indexes[i]); fr != "" {
				decoded[i]["finish_reason"] = toJSON(fr)
				modified = true
			}
		}
		if !modified {
			b.emit(ev)
			return
		}
		out := []json.RawMessage{}
		for i, ch := range decoded {
			if ch == nil || emptied[i] && isNull(ch["finish_reason"]) && onlyChoiceFrame(ch) {
				continue
			}
			if deltas[i] != nil {
				ch["delta"] = toJSON(deltas[i])
			}
			out = append(out, toJSON(ch))
		}
		if len(out) == 0 && len(choices) > 0 && isNull(top["usage"]) {
			return // only tool fragments: nothing left to say
		}
		top["choices"] = toJSON(out)
		b.emit(sseEvent(name, toJSON(top)))
	})
}

// emptyDelta reports whether a delta holds nothing but nulls.
func emptyDelta(d map[string]json.RawMessage) bool {
	for _, v := range d {
		if !isNull(v) {
			return false
		}
	}
	return true
}

// onlyChoiceFrame reports whether a choice holds nothing but its frame
// (index, delta, logprobs, finish_reason).
func onlyChoiceFrame(ch map[string]json.RawMessage) bool {
	for k, v := range ch {
		switch k {
		case "index", "delta", "logprobs", "finish_reason":
		default:
			if !isNull(v) {
				return false
			}
		}
	}
	return true
}

// endChoices ends the calls of every choice not yet finished: never
// shown, recorded as never finished when the stream ends. A choice's
// calls stay known by index (byIndex, legacy): a later fragment of one
// (text the masker releases at the end) adds to it, not a call of its
// own.
func (b *toolBuffer) endChoices() {
	for _, ci := range b.openChoices() {
		st := b.choices[ci]
		for _, c := range st.calls {
			b.held -= len(c.call.ID) + len(c.call.Name) + len(c.call.Arguments)
			if !c.judged && !c.asked {
				if c.withheld == "" {
					c.withheld = reasonNeverFinished
				}
				b.extra = append(b.extra, &c.heldCall)
			}
		}
		st.calls = nil
	}
}

func (b *toolBuffer) unjudged(st *chatChoiceState) []*heldCall {
	var out []*heldCall
	for _, c := range st.calls {
		if !c.judged {
			out = append(out, &c.heldCall)
		}
	}
	return out
}

// newChatCall starts a call of choice st.
func (b *toolBuffer) newChatCall(st *chatChoiceState) (*chatToolCall, bool) {
	b.calls++
	if b.calls > maxToolCalls {
		b.fail(fmt.Errorf("more than %d tool calls", maxToolCalls))
		return nil, false
	}
	c := &chatToolCall{typ: "function"}
	c.call.Kind = toolcall.Function
	st.calls = append(st.calls, c)
	return c, true
}

// grow adds a fragment to a call, within the bounds.
func (b *toolBuffer) grow(c *heldCall, id, name, args string) bool {
	if id != "" && c.call.ID == "" {
		c.call.ID = id
		b.held += len(id)
	}
	if name != "" && name != c.call.Name {
		if c.call.Name != "" {
			// SDKs disagree here (append or overwrite): the call could run
			// under a name other than the one judged.
			b.fail(errors.New("a tool call's name came in two fragments"))
			return false
		}
		c.call.Name = name
		b.held += len(name)
	}
	c.call.Arguments += args
	b.held += len(args)
	if len(c.call.Name)+len(c.call.Arguments) > maxToolArguments {
		b.fail(fmt.Errorf("a tool call's arguments passed %d bytes", maxToolArguments))
		return false
	}
	if b.held > maxToolHeld {
		b.fail(fmt.Errorf("tool calls held passed %d bytes", maxToolHeld))
		return false
	}
	return true
}

// absorbToolCalls takes the tool_calls fragments of a delta.
func (b *toolBuffer) absorbToolCalls(st *chatChoiceState, raw json.RawMessage) bool {
	if isNull(raw) {
		return true
	}
	var frags []map[string]json.RawMessage
	if json.Unmarshal(raw, &frags) != nil {
		b.fail(errors.New("tool_calls is not a list of objects"))
		return false
	}
	for pos, f := range frags {
		if f == nil {
			b.fail(errors.New("a tool_calls fragment is not an object"))
			return false
		}
		idx := int64(pos)
		if r, has := f["index"]; has && !isNull(r) {
			n, ok := jsonInt(r)
			if !ok || n < 0 || n > maxToolIndex {
				b.fail(fmt.Errorf("tool call index %s", quoteUpstream(string(r))))
				return false
			}
			idx = n
		}
		id, ok1 := optString(f["id"])
		typ, ok2 := optString(f["type"])
		body := f["function"]
		nameKey, argsKey := "name", "arguments"
		if typ == "custom" || isNull(body) && !isNull(f["custom"]) {
			body, argsKey, typ = f["custom"], "input", "custom"
		}
		var fn map[string]json.RawMessage
		if !isNull(body) && (json.Unmarshal(body, &fn) != nil || fn == nil) {
			b.fail(errors.New("a tool call's function is not an object"))
			return false
		}
		name, ok3 := optString(fn[nameKey])
		args, ok4 := optString(fn[argsKey])
		if !ok1 || !ok2 || !ok3 || !ok4 {
			b.fail(errors.New("a tool call's id, type, name or arguments is not a string"))
			return false
		}
		c := st.byIndex[idx]
		if c == nil || id != "" && c.call.ID != "" && id != c.call.ID {
			// A new call (a repeated index with another id is one too).
			var ok bool
			if c, ok = b.newChatCall(st); !ok {
				return false
			}
			st.byIndex[idx] = c
		}
		if typ == "custom" {
			c.typ, c.call.Kind = "custom", toolcall.Custom
		}
		hadID := c.call.ID != ""
		if !b.grow(&c.heldCall, id, name, args) {
			return false
		}
		if !hadID && c.call.ID != "" && !b.chatIDOnce(c) {
			return false
		}
	}
	return true
}

// chatIDOnce refuses a call whose id another call of the stream has (of
// any choice, released or not): the SDKs key a call's result by its id,
// so which call ran, and which one a result answers, is ambiguous, and
// readers that take each chunk's first choice merge choices. Both are
// recorded (reasonCallIDTwice; one judged already keeps its verdict's
// event), and the stream ends.
func (b *toolBuffer) chatIDOnce(c *chatToolCall) bool {
	o := b.chatIDs[c.call.ID]
	if o == nil || o == c {
		if b.chatIDs == nil {
			b.chatIDs = map[string]*chatToolCall{}
		}
		b.chatIDs[c.call.ID] = c
		return true
	}
	for _, h := range []*heldCall{&o.heldCall, &c.heldCall} {
		if !h.judged && !h.asked {
			h.withheld = reasonCallIDTwice
		}
	}
	b.fail(fmt.Errorf("two tool calls of the stream have the id %s", quoteUpstream(c.call.ID)))
	return false
}

// absorbFunctionCall takes a legacy delta.function_call fragment.
func (b *toolBuffer) absorbFunctionCall(st *chatChoiceState, raw json.RawMessage) bool {
	if isNull(raw) {
		return true
	}
	var fn map[string]json.RawMessage
	if json.Unmarshal(raw, &fn) != nil || fn == nil {
		b.fail(errors.New("function_call is not an object"))
		return false
	}
	name, ok1 := optString(fn["name"])
	args, ok2 := optString(fn["arguments"])
	if !ok1 || !ok2 {
		b.fail(errors.New("function_call's name or arguments is not a string"))
		return false
	}
	if st.legacy == nil || st.legacy.judged {
		c, ok := b.newChatCall(st)
		if !ok {
			return false
		}
		c.legacy = true
		st.legacy = c
	}
	return b.grow(&st.legacy.heldCall, "", name, args)
}

// releaseChoice emits the judged calls of choice ci (allowed ones whole,
// renumbered: chatNext, so no two calls of the stream share an index;
// denied ones not at all, their messages as content) and forgets them. It returns "stop" when every call was denied (the choice
// must end so), else "".
func (b *toolBuffer) releaseChoice(ci int) string {
	st := b.choices[ci]
	if st == nil {
		return ""
	}
	var msgs []string
	for _, c := range st.calls {
		b.held -= len(c.call.ID) + len(c.call.Name) + len(c.call.Arguments)
		if c.verdict.Action == toolcall.Deny {
			msgs = append(msgs, deniedMessage(&c.heldCall))
			continue
		}
		var delta map[string]any
		switch {
		case c.legacy:
			delta = map[string]any{"function_call": map[string]any{"name": c.call.Name, "arguments": argumentsOf(&c.heldCall)}}
			st.lastKind = "function_call"
		case c.typ == "custom":
			delta = map[string]any{"tool_calls": []any{map[string]any{"index": b.chatNext, "id": c.call.ID, "type": "custom",
				"custom": map[string]any{"name": c.call.Name, "input": argumentsOf(&c.heldCall)}}}}
			b.chatNext++
			st.lastKind = "tool_calls"
		default:
			delta = map[string]any{"tool_calls": []any{map[string]any{"index": b.chatNext, "id": c.call.ID, "type": "function",
				"function": map[string]any{"name": c.call.Name, "arguments": argumentsOf(&c.heldCall)}}}}
			b.chatNext++
			st.lastKind = "tool_calls"
		}
		b.emitChunk(ci, delta, "")
	}
	allowed := len(st.calls) - len(msgs)
	st.calls, st.byIndex, st.legacy = nil, map[int64]*chatToolCall{}, nil
	if len(msgs) == 0 {
		return ""
	}
	text := strings.Join(msgs, "\n")
	if st.content {
		text = "\n\n" + text
	}
	st.content = true
	b.emitChunk(ci, map[string]any{"content": text}, "")
	if allowed == 0 {
		return "stop"
	}
	return ""
}

// emitChunk emits a chunk of choice ci with delta and, if not empty, a
// finish_reason, and the top-level fields of the last chunk read.
func (b *toolBuffer) emitChunk(ci int, delta map[string]any, fr string) {
	c := map[string]any{"object": "chat.completion.chunk"}
	for k, v := range b.tmpl {
		switch k {
		case "choices", "usage", "obfuscation":
		default:
			c[k] = v
		}
	}
	var finish any
	if fr != "" {
		finish = fr
	}
	c["choices"] = []any{map[string]any{"index": ci, "delta": delta, "finish_reason": finish, "logprobs": nil}}
	b.emit(sseEvent(b.chatEv, toJSON(c)))
}

// ---- responses --------------------------------------------------------------

// Which output items are calls, and the kind of each: toolcall.ItemKind.

// respObjectStreams are the event kinds that stream part of a call whose
// arguments are an object: a shell_call's commands
// (response.shell_call_command.added/delta/done, which name the item by
// output_index only) and an apply_patch_call's diff
// (response.apply_patch_call_operation_diff.delta/done). The buffer judges
// the item's object as output_item.done shows it and never relays these.
var respObjectStreams = []string{"shell_call_command", "apply_patch_call_operation_diff"}

// isArgumentEvent reports whether a Responses event type streams a tool
// call's arguments or input (response.function_call_arguments.delta,
// response.custom_tool_call_input.done, response.mcp_call_arguments.delta,
// response.shell_call_command.delta...).
func isArgumentEvent(typ string) bool {
	rest, _ := strings.CutPrefix(typ, "response.")
	for _, spec := range respArgs {
		if spec.stream != "" && strings.HasPrefix(rest, spec.stream+".") {
			return true
		}
	}
	for _, kind := range respObjectStreams {
		if containsFoldASCII([]byte(rest), kind+".") {
			return true
		}
	}
	return containsFoldASCII([]byte(rest), "_arguments") || containsFoldASCII([]byte(rest), "_input.")
}

// respArgs names, per item type, the field holding the arguments and the
// event kind that streams them ("": not streamed; a program's code is
// read from its done item). local_shell_call, computer_call, shell_call,
// apply_patch_call and tool_search_call have an object instead
// (toolcall.ObjectArguments, toolcall.BatchArguments).
var respArgs = map[string]struct{ field, stream string }{
	"function_call":        {"arguments", "function_call_arguments"},
	"custom_tool_call":     {"input", "custom_tool_call_input"},
	"mcp_call":             {"arguments", "mcp_call_arguments"},
	"mcp_approval_request": {"arguments", ""},
	"program":              {"code", ""},
}

type respItem struct {
	heldCall
	// parts are the item's further calls (a computer_call's actions), and
	// places where each call's arguments are (places[0]: heldCall's);
	// places is nil for items with string arguments (respArgs).
	parts   []*heldCall
	places  []toolcall.ItemCall
	patched map[string]json.RawMessage // members redacted calls changed
	id      string
	typ     string
	outIdx  json.RawMessage
	added   map[string]json.RawMessage // item of output_item.added
	done    map[string]json.RawMessage // item of output_item.done, nil before
	args    string                     // from the deltas
	argsSet bool                       // args from a .done event
	closed  bool                       // complete: judged or awaiting its verdict
	emitted json.RawMessage            // the item the client was shown
	msgID   string
	order   int // when the stream began it (toolBuffer.itemSeq)
	// partial: partialCall filled its calls (once: withheldCalls runs at
	// the stream's end and again when the relay is closed, and calls
	// rebuilt would be recorded again).
	partial bool
}

// calls are the item's calls to judge, in order.
func (r *respItem) calls() []*heldCall {
	return append([]*heldCall{&r.heldCall}, r.parts...)
}

// settle combines the verdicts on an item's calls: one denied denies the
// item (the agent runs a computer_call's actions together); redacted
// arguments are written back into their members (patched). Arguments a
// redaction left unreadable deny the item.
func (r *respItem) settle() {
	if r.places == nil || r.patched != nil || r.verdict.Action == toolcall.Deny {
		return
	}
	all := r.calls()
	for _, h := range all {
		if h.verdict.Action == toolcall.Deny {
			r.verdict = h.verdict
			return
		}
	}
	var m map[string]any
	for i, h := range all {
		if h.verdict.Action != toolcall.Redact || i >= len(r.places) {
			continue
		}
		if m == nil {
			src := r.done
			if src == nil {
				src = r.added
			}
			d := json.NewDecoder(bytes.NewReader(toJSON(src)))
			d.UseNumber()
			if d.Decode(&m) != nil || m == nil {
				m = map[string]any{}
			}
		}
		pl := r.places[i]
		if err := pl.Set(m, h.verdict.Arguments); err != nil {
			// Redacted arguments that are not JSON: nothing of them shows.
			r.verdict = toolcall.Verdict{Action: toolcall.Deny, Rule: h.verdict.Rule,
				Message: toolcall.DeniedMessage(h.call, fmt.Sprintf("rule %q masked its arguments and they could not be shown", h.verdict.Rule))}
			return
		}
		if r.patched == nil {
			r.patched = map[string]json.RawMessage{}
		}
		r.patched[pl.Field] = toJSON(m[pl.Field])
	}
}

type respEvent struct {
	name   string
	obj    map[string]json.RawMessage // nil: raw goes out as it is
	raw    []byte
	item   *respItem // the tool item it belongs to
	anchor bool      // output_item.done of item: its replacement goes here
	seq    int64
	hasSeq bool
	size   int
}

func (b *toolBuffer) respEvent(ev []byte) {
	name, data := eventData(ev)
	trimmed := bytes.TrimSpace(data)
	if len(b.items) == 0 && len(b.rqueue) == 0 && !mayHoldTool(data, false) && !mayBeForeign(data, false) {
		b.emit(b.renumberRaw(ev, name, data))
		return
	}
	if name != "" {
		b.evNames = true
	}
	if err := strictToolJSON(trimmed); err != nil && !errors.Is(err, payload.ErrInvalidJSON) {
		b.fail(err) // not JSON at all is dropped below, as before
		return
	}
	var o map[string]json.RawMessage
	if json.Unmarshal(trimmed, &o) != nil || o == nil {
		if string(trimmed) == "[DONE]" {
			b.enqueue(&respEvent{raw: bytes.Clone(ev)})
			b.flushResp()
		}
		return // not a JSON object: dropped
	}
	if err := responseEventShape.checkEvent(trimmed); err != nil {
		// A chat chunk or message, a list, a bare item: calls the
		// buffer does not read from an event (answershape.go).
		b.fail(err)
		return
	}
	typ, _ := optString(o["type"])
	if typ == "" {
		typ = name
	}
	e := &respEvent{name: name, obj: o, raw: bytes.Clone(ev), size: len(ev)}
	if n, ok := jsonInt(o["sequence_number"]); ok && !isNull(o["sequence_number"]) {
		e.seq, e.hasSeq = n, true
		b.lastSeq, b.seenSeq = n, true
	}
	switch typ {
	case "response.output_item.added", "response.output_item.done",
		"response.completed", "response.incomplete", "response.failed":
	default:
		// Any other event that carries a tool item is not one the SDKs
		// read it from: dropped. A response's output shows only judged
		// items.
		var item struct {
			Type json.RawMessage `json:"type"`
		}
		if !isNull(o["item"]) && json.Unmarshal(o["item"], &item) == nil {
			if t, _ := optString(item.Type); isCallItem(t) {
				var full map[string]json.RawMessage
				_ = json.Unmarshal(o["item"], &full)
				b.removedItem(full)
				b.drop(e)
				return
			}
		}
		if _, has := o["response"]; has && !b.shownOutput(e) {
			b.drop(e)
			return
		}
	}
	switch typ {
	case "response.output_item.added", "response.output_item.done":
		var item map[string]json.RawMessage
		if json.Unmarshal(o["item"], &item) != nil || item == nil {
			return // an item no SDK reads: dropped
		}
		it, _ := optString(item["type"])
		kind, isTool := toolcall.ItemKind(it)
		id, _ := optString(item["id"])
		if k := toolcall.CaseVariant(it); k != "" {
			b.fail(fmt.Errorf("an output item's type %s differs from %q only in letter case", quoteUpstream(it), k))
			return
		}
		if cur := b.items[b.itemKey(id, o["output_index"])]; cur != nil && cur.typ != it && !cur.judged {
			// The SDKs take the done item for the added one: the call
			// judged would not be the call run.
			b.fail(fmt.Errorf("output item %s changed its type from %s to %s", quoteUpstream(id), quoteUpstream(cur.typ), quoteUpstream(it)))
			return
		}
		if !isTool {
			b.enqueue(e)
			b.flushResp()
			return
		}
		if typ == "response.output_item.added" {
			if cur := b.items[b.itemKey(id, o["output_index"])]; cur != nil && !cur.judged {
				b.fail(fmt.Errorf("output item %s added twice", quoteUpstream(id)))
				return
			}
			b.streamedItem(id)
			if !b.countCall() {
				return
			}
			b.itemSeq++
			r := &respItem{id: id, typ: it, outIdx: o["output_index"], added: item, order: b.itemSeq}
			r.call.Kind = kind
			if !b.outputIndexOnce(r) {
				return
			}
			b.items[b.itemKey(id, o["output_index"])] = r
			e.item = r
			b.enqueue(e)
			return
		}
		r := b.items[b.itemKey(id, o["output_index"])]
		if r == nil {
			// Done without added: it starts here.
			b.streamedItem(id)
			if !b.countCall() {
				return
			}
			b.itemSeq++
			r = &respItem{id: id, typ: it, outIdx: o["output_index"], added: item, order: b.itemSeq}
			r.call.Kind = kind
			if !b.outputIndexOnce(r) {
				return
			}
			b.items[b.itemKey(id, o["output_index"])] = r
		}
		if r.closed {
			if id == "" && !sameCall(r, it, item) {
				// Another call, without an id, at the output_index of one
				// done already: refused as two items there.
				b.itemSeq++
				x := &respItem{typ: it, outIdx: o["output_index"], added: item, order: b.itemSeq}
				x.call.Kind = kind
				b.outputIndexOnce(x)
				return
			}
			b.drop(e)
			return
		}
		r.done, r.closed, e.item, e.anchor = item, true, r, true
		b.enqueue(e)
		if b.err != nil {
			return
		}
		if !b.buildCall(r) || !b.claimCallID(r, nil) {
			return
		}
		b.stall(r.calls(), b.flushResp)
		return
	case "response.completed", "response.incomplete", "response.failed":
		b.terminalResp(e)
		return
	case "error":
		// The stream failed: calls not yet complete are never shown.
		b.endItems()
		b.enqueue(e)
		b.flushResp()
		return
	}
	// Any other event.
	r := b.ownerOf(o)
	if r == nil && isArgumentEvent(typ) {
		// Arguments of an item not (yet) seen, or of none: no call the
		// buffer judged, so they never reach the client.
		b.drop(e)
		return
	}
	if r != nil {
		if r.closed {
			b.drop(e)
			return
		}
		e.item = r
		rest, _ := strings.CutPrefix(typ, "response.")
		if spec, ok := respArgs[r.typ]; ok {
			switch rest {
			case spec.stream + ".delta":
				d, ok := optString(o["delta"])
				if !ok {
					b.fail(errors.New("a tool call's arguments delta is not a string"))
					return
				}
				if !r.argsSet {
					r.args += d
				}
			case spec.stream + ".done":
				full, ok := optString(o[spec.field])
				if !ok {
					b.fail(errors.New("a tool call's arguments are not a string"))
					return
				}
				r.args, r.argsSet = full, true
			}
			if len(r.args) > maxToolArguments {
				b.fail(fmt.Errorf("a tool call's arguments passed %d bytes", maxToolArguments))
				return
			}
		}
	}
	b.enqueue(e)
	b.flushResp()
}

// endItems ends the items the stream began and never finished (the
// upstream's error event, response.failed): never shown, recorded as
// never finished when the stream ends (withheldCalls).
func (b *toolBuffer) endItems() {
	for _, r := range b.items {
		if r.closed {
			continue
		}
		r.partialCall()
		r.closed = true
		for _, h := range r.calls() {
			h.judged, h.verdict, h.withheld = true, toolcall.Verdict{Action: toolcall.Deny}, reasonNeverFinished
		}
		r.emitted = nil
	}
}

// partialCall fills r's calls from what the stream showed of an item it
// never finished (the added item, the arguments streamed so far), for
// the record only: nothing of it is judged or shown, and what cannot be
// read is left out. Only once: the calls it made may be recorded already.
func (r *respItem) partialCall() {
	if r.partial {
		return
	}
	r.partial = true
	item := r.done
	if item == nil {
		item = r.added
	}
	c := &r.call
	c.ID, _ = optString(item["call_id"])
	if c.ID == "" {
		c.ID = r.id
	}
	if c.Kind == toolcall.Unknown {
		c.Name, c.Arguments = r.typ, clip(string(toJSON(item)), maxToolArguments)
		return
	}
	c.Name, _ = optString(item["name"])
	if c.Kind == toolcall.MCP {
		c.Server, _ = optString(item["server_label"])
	}
	if spec, ok := respArgs[r.typ]; ok {
		c.Arguments = r.args
		if c.Arguments == "" {
			c.Arguments, _ = optString(item[spec.field])
		}
		return
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(toJSON(item)))
	d.UseNumber()
	if d.Decode(&m) != nil {
		return
	}
	places, err := toolcall.ItemCalls(r.typ, m)
	if err != nil || len(places) == 0 {
		return
	}
	c.Arguments = places[0].Arguments
	r.parts = nil
	for _, pl := range places[1:] {
		p := *c
		p.Arguments = pl.Arguments
		r.parts = append(r.parts, &heldCall{call: p, withheld: r.withheld})
	}
}

// withheldCall is a call recorded without a verdict, and why.
type withheldCall struct {
	call toolcall.Call
	why  string
}

// withheldCalls returns, once each, the calls the stream began that no
// verdict covers and no judge is deciding: those the stream ended before
// they were complete and judged (the upstream's error or end, the
// client leaving, the stream failing), and those the buffer refused
// unjudged (heldCall.withheld). In the order the stream began them.
func (b *toolBuffer) withheldCalls() []withheldCall {
	var out []withheldCall
	take := func(h *heldCall) {
		if h.recorded || h.asked || h.judged && h.withheld == "" {
			return
		}
		h.recorded = true
		why := h.withheld
		if why == "" {
			why = reasonNeverFinished
		}
		out = append(out, withheldCall{call: h.call, why: why})
	}
	cis := make([]int, 0, len(b.choices))
	for ci := range b.choices {
		cis = append(cis, ci)
	}
	slices.Sort(cis)
	for _, ci := range cis {
		for _, c := range b.choices[ci].calls {
			take(&c.heldCall)
		}
	}
	items := make([]*respItem, 0, len(b.items))
	for _, r := range b.items {
		items = append(items, r)
	}
	slices.SortFunc(items, func(x, y *respItem) int { return x.order - y.order })
	for _, r := range items {
		if !r.closed {
			r.partialCall()
		}
		for _, h := range r.calls() {
			take(h)
		}
	}
	for _, h := range b.extra {
		take(h)
	}
	for _, h := range b.need {
		take(h)
	}
	return out
}

// recordWithheld records the calls withheldCalls returns: one tool.call
// event each. It reports the first failure to record, after trying them
// all.
func (b *toolBuffer) recordWithheld() error {
	if b.onWithheld == nil {
		return nil
	}
	var first error
	for _, w := range b.withheldCalls() {
		if err := b.onWithheld(w.call, w.why); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// claimCallID notes the call id (call_id, else the item's id) of item r,
// once r's call is built. Two items under one call id are ambiguous: the
// SDKs key a call's output by it, so which call ran, and which one a
// result answers, is anyone's guess. The stream ends, and r (and the
// other, if not judged yet) is recorded unjudged (reasonCallIDTwice). An
// item of the final output (final: its calls by call id so far, to which
// r is added) says another call under a shown item's id when its id is
// that item's: it is judged as its own (terminalResp), not refused here
// for its call id.
func (b *toolBuffer) claimCallID(r *respItem, final map[string]*respItem) bool {
	cid := r.call.ID
	if cid == "" {
		return true
	}
	other := b.callIDs[cid]
	if final != nil {
		if f := final[cid]; f != nil {
			other = f
		} else if other != nil && other.id == r.id && r.id != "" {
			other = nil // another call under the shown item's id
		}
		final[cid] = r
	}
	if other == nil || other == r {
		if final == nil {
			if b.callIDs == nil {
				b.callIDs = map[string]*respItem{}
			}
			b.callIDs[cid] = r
		}
		return true
	}
	for _, h := range append(r.calls(), other.calls()...) {
		if !h.judged && !h.asked {
			h.withheld = reasonCallIDTwice
		}
	}
	if final != nil {
		b.extra = append(b.extra, r.calls()...) // not in b.items: recorded from there
	}
	b.fail(fmt.Errorf("two output items (%s and %s) have the call id %s", quoteUpstream(other.id), quoteUpstream(r.id), quoteUpstream(cid)))
	return false
}

// outputIndexOnce refuses a tool item r the stream begins (not yet in
// items) at an output_index another tool item of the stream has: readers
// that key streamed calls by output_index (LangChain) would join the two
// into a call never judged. The stream ends; r (kept in items under a
// key of its own, so that it is recorded), and the other if not judged
// yet, are recorded unjudged (reasonOutputIndexTwice).
func (b *toolBuffer) outputIndexOnce(r *respItem) bool {
	if isNull(r.outIdx) {
		return true
	}
	oi := string(bytes.TrimSpace(r.outIdx))
	for _, o := range b.items {
		if isNull(o.outIdx) || string(bytes.TrimSpace(o.outIdx)) != oi {
			continue
		}
		b.items["twice:"+strconv.Itoa(r.order)] = r
		for _, x := range []*respItem{o, r} {
			if !x.judged && !x.asked {
				x.withheld = reasonOutputIndexTwice // its parts too (partialCall)
			}
		}
		b.fail(fmt.Errorf("two output items (%s and %s) at the output_index %s", quoteUpstream(o.id), quoteUpstream(r.id), quoteUpstream(oi)))
		return false
	}
	return true
}

// isCallItem reports whether an output item type is a call (or unknown).
func isCallItem(typ string) bool {
	_, call := toolcall.ItemKind(typ)
	return call
}

// itemKey names an item by id, or by output index when it has none.
func (b *toolBuffer) itemKey(id string, outIdx json.RawMessage) string {
	if id != "" {
		return "id:" + id
	}
	return "out:" + string(bytes.TrimSpace(outIdx))
}

// unrelayedItem notes a tool item removed, unjudged, from an event no
// SDK reads calls from (the output of response.created or
// response.in_progress, an event of a type pamctl does not know): it is
// still a call the model proposed, recorded when the stream ends
// (recordUnrelayed) unless the stream shows it meanwhile. An item the
// buffer tracks by its id is judged as it streams; one noted already (by
// its id, or by its JSON when it has none) is not noted again. A noted
// item counts toward the cap on calls, once.
//
// other notes an item that says another call under the id of an item the
// stream tracks: it is noted by its JSON, not by that id.
func (b *toolBuffer) unrelayedItem(item map[string]json.RawMessage, other bool) {
	if b.onUnrelayed == nil || item == nil || b.err != nil {
		return
	}
	typ, _ := optString(item["type"])
	id, _ := optString(item["id"])
	key := "id:" + id
	if id == "" || other {
		raw, err := json.Marshal(item) // members sorted, values compacted
		if err != nil {
			return
		}
		key = "json:" + string(raw)
	} else if b.items[key] != nil {
		return
	}
	if b.unrelayed[key] {
		return
	}
	if b.unrelayed == nil {
		b.unrelayed = map[string]bool{}
	}
	b.unrelayed[key] = true
	if b.calls+len(b.unrelayedQ)+1 > maxToolCalls {
		b.fail(fmt.Errorf("more than %d tool calls", maxToolCalls))
		return
	}
	kind, _ := toolcall.ItemKind(typ)
	c := toolcall.Call{Kind: kind, ID: id}
	if callID, _ := optString(item["call_id"]); callID != "" {
		c.ID = callID
	}
	c.Name, _ = optString(item["name"])
	if kind == toolcall.MCP {
		c.Server, _ = optString(item["server_label"])
	}
	if kind == toolcall.Unknown {
		c.Name = typ
	}
	b.unrelayedQ = append(b.unrelayedQ, unrelayedCall{id: id, call: c})
}

// streamedItem forgets the unrelayed note of an item the stream now
// shows (or the final output holds): it is judged, and counted, there.
func (b *toolBuffer) streamedItem(id string) {
	if id == "" || len(b.unrelayedQ) == 0 {
		return
	}
	b.unrelayedQ = slices.DeleteFunc(b.unrelayedQ, func(u unrelayedCall) bool { return u.id == id })
}

// recordUnrelayed records, once the stream has ended (or the client has
// left), the unrelayed items the stream never showed: one tool.call event
// each. It reports the first failure to record, after trying them all.
func (b *toolBuffer) recordUnrelayed() error {
	q := b.unrelayedQ
	b.unrelayedQ = nil
	var first error
	for _, u := range q {
		b.calls++
		if err := b.onUnrelayed(u.call); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (b *toolBuffer) countCall() bool {
	b.calls++
	if b.calls+len(b.unrelayedQ) > maxToolCalls {
		b.fail(fmt.Errorf("more than %d tool calls", maxToolCalls))
		return false
	}
	return true
}

// ownerOf returns the tool item an event is about: by item_id, or by
// output_index when it names no item.
func (b *toolBuffer) ownerOf(o map[string]json.RawMessage) *respItem {
	if id, _ := optString(o["item_id"]); id != "" {
		return b.items["id:"+id]
	}
	if oi, has := o["output_index"]; has && !isNull(oi) {
		want := string(bytes.TrimSpace(oi))
		var closed *respItem
		for _, r := range b.items {
			if string(bytes.TrimSpace(r.outIdx)) == want {
				if !r.closed {
					return r
				}
				closed = r
			}
		}
		// An event of a call already judged (a shell command streamed
		// after its item was done): its owner drops it.
		return closed
	}
	return nil
}

func (b *toolBuffer) enqueue(e *respEvent) {
	if e.size == 0 {
		e.size = len(e.raw)
	}
	b.held += e.size
	if b.held > maxToolHeld {
		b.fail(fmt.Errorf("more than %d bytes held behind a tool call", maxToolHeld))
		return
	}
	b.rqueue = append(b.rqueue, e)
}

// drop forgets an upstream event: later sequence numbers close the gap.
func (b *toolBuffer) drop(e *respEvent) {
	if e.hasSeq {
		b.shift--
	}
}

// buildCall fills r's Call from its item (the done item, else the added
// one and the streamed arguments).
func (b *toolBuffer) buildCall(r *respItem) bool {
	item := r.done
	if item == nil {
		item = r.added
	}
	if r.call.Kind == toolcall.Unknown {
		// Always denied: the item is what the audit records.
		r.call.Name, r.call.ID = r.typ, r.id
		if callID, ok := optString(item["call_id"]); ok && callID != "" {
			r.call.ID = callID
		}
		r.call.Arguments = string(toJSON(item))
		if len(r.call.Arguments) > maxToolArguments {
			b.fail(fmt.Errorf("an output item passed %d bytes", maxToolArguments))
			return false
		}
		return true
	}
	name, ok1 := optString(item["name"])
	callID, ok2 := optString(item["call_id"])
	server, ok3 := optString(item["server_label"])
	if !ok1 || !ok2 || !ok3 {
		b.fail(errors.New("a tool call's name, call_id or server_label is not a string"))
		return false
	}
	r.call.Name, r.call.Server = name, server
	r.call.ID = callID
	if r.call.ID == "" {
		r.call.ID = r.id
	}
	if spec, ok := respArgs[r.typ]; ok {
		args, ok := optString(item[spec.field])
		if !ok {
			b.fail(errors.New("a tool call's arguments are not a string"))
			return false
		}
		if _, has := item[spec.field]; !has || r.done == nil {
			args = r.args
		}
		r.call.Arguments = args
	} else {
		// local_shell_call, computer_call, shell_call: the action is the
		// arguments (and each of a computer_call's actions, a call of its
		// own); apply_patch_call: the operation; tool_search_call: its
		// arguments; as the whole-answer judge reads them
		// (toolcall.ItemCalls).
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(toJSON(item)))
		d.UseNumber()
		if d.Decode(&m) != nil {
			b.fail(errors.New("a tool item is not an object"))
			return false
		}
		places, err := toolcall.ItemCalls(r.typ, m)
		if err != nil || len(places) == 0 {
			b.fail(fmt.Errorf("a tool call's arguments: %v", err))
			return false
		}
		r.places, r.parts = places, nil
		r.call.Arguments = places[0].Arguments
		total := 0
		for _, pl := range places {
			total += len(pl.Arguments)
		}
		if total+len(r.call.Name) > maxToolArguments {
			b.fail(fmt.Errorf("a tool call's arguments passed %d bytes", maxToolArguments))
			return false
		}
		for _, pl := range places[1:] {
			if !b.countCall() {
				return false
			}
			c := r.call
			c.Arguments = pl.Arguments
			r.parts = append(r.parts, &heldCall{call: c})
		}
	}
	if len(r.call.Arguments)+len(r.call.Name) > maxToolArguments {
		b.fail(fmt.Errorf("a tool call's arguments passed %d bytes", maxToolArguments))
		return false
	}
	return true
}

// flushResp emits the queued events up to the first of a call still
// awaiting its verdict.
func (b *toolBuffer) flushResp() {
	for len(b.rqueue) > 0 && b.err == nil {
		e := b.rqueue[0]
		if e.item != nil && !e.item.judged {
			return
		}
		b.rqueue[0] = nil
		b.rqueue = b.rqueue[1:]
		b.held -= e.size
		switch {
		case e.item == nil:
			b.emitResp(e)
		case e.anchor:
			b.replaceItem(e.item, e.seq, e.hasSeq)
			b.drop(e)
		default:
			b.drop(e)
		}
	}
}

// emitResp emits an upstream event, renumbered.
func (b *toolBuffer) emitResp(e *respEvent) {
	if e.obj == nil {
		b.emit(e.raw)
		return
	}
	if e.hasSeq && b.shift != 0 {
		e.obj["sequence_number"] = toJSON(e.seq + b.shift)
		e.raw = nil
	}
	if e.raw != nil {
		b.emit(e.raw)
		return
	}
	b.emit(sseEvent(e.name, toJSON(e.obj)))
}

// renumberRaw is an event the buffer passes without reading it, numbered
// on from the events dropped or added before it (shift): its top-level
// sequence_number (each, if written twice), when an integer. Data that is
// not a JSON object, or holds no such number, goes as it came.
func (b *toolBuffer) renumberRaw(ev []byte, name string, data []byte) []byte {
	if b.shift == 0 || !bytes.Contains(data, []byte(`"sequence_number"`)) {
		return ev
	}
	d := string(data)
	if !payload.ValidJSONString(d) {
		return ev
	}
	i := skipSpace(d, 0)
	if i == len(d) || d[i] != '{' {
		return ev
	}
	var out []byte
	at := 0
	for i = skipSpace(d, i+1); i < len(d) && d[i] != '}'; i = skipSpace(d, i) {
		if d[i] == ',' {
			i = skipSpace(d, i+1)
		}
		end := stringEnd(d, i)
		key := unquoteJSON(d[i:end])
		i = skipSpace(d, skipSpace(d, end)+1) // past the ':'
		end = valueEnd(d, i)
		if key == "sequence_number" {
			if n, err := strconv.ParseInt(d[i:end], 10, 64); err == nil {
				out = append(out, d[at:i]...)
				out = strconv.AppendInt(out, n+b.shift, 10)
				at = end
			}
		}
		i = end
	}
	if out == nil {
		return ev
	}
	out = append(out, d[at:]...)
	for i, c := range out {
		if c == '\n' || c == '\r' {
			out[i] = ' ' // white space between tokens (data lines joined): one data line
		}
	}
	return sseEvent(name, out)
}

// synth emits an event the proxy made, numbered after what went before
// the upstream event at seq.
func (b *toolBuffer) synth(o map[string]any, seq int64, hasSeq bool) {
	if hasSeq {
		o["sequence_number"] = seq + b.shift
		b.shift++
	}
	name := ""
	if b.evNames {
		name, _ = o["type"].(string)
	}
	b.emit(sseEvent(name, toJSON(o)))
}

// replaceItem emits the judged item r in place of its upstream events, at
// the position of the upstream event numbered seq.
func (b *toolBuffer) replaceItem(r *respItem, seq int64, hasSeq bool) {
	r.settle()
	oi := r.outIdx
	if isNull(oi) {
		oi = json.RawMessage("0")
	}
	if r.verdict.Action == toolcall.Deny {
		msg := deniedMessage(&r.heldCall)
		r.msgID = "msg_pamctl_" + randHex(12)
		part := map[string]any{"type": "output_text", "text": msg, "annotations": []any{}, "logprobs": []any{}}
		done := map[string]any{"id": r.msgID, "type": "message", "status": "completed", "role": "assistant", "content": []any{part}}
		r.emitted = toJSON(done)
		for _, o := range []map[string]any{
			{"type": "response.output_item.added", "output_index": oi, "item": map[string]any{"id": r.msgID, "type": "message", "status": "in_progress", "role": "assistant", "content": []any{}}},
			{"type": "response.content_part.added", "item_id": r.msgID, "output_index": oi, "content_index": 0, "part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}, "logprobs": []any{}}},
			{"type": "response.output_text.delta", "item_id": r.msgID, "output_index": oi, "content_index": 0, "delta": msg, "logprobs": []any{}},
			{"type": "response.output_text.done", "item_id": r.msgID, "output_index": oi, "content_index": 0, "text": msg, "logprobs": []any{}},
			{"type": "response.content_part.done", "item_id": r.msgID, "output_index": oi, "content_index": 0, "part": part},
			{"type": "response.output_item.done", "output_index": oi, "item": done},
		} {
			b.synth(o, seq, hasSeq)
		}
		return
	}
	item := r.judgedItem("completed")
	r.emitted = toJSON(item)
	added := r.judgedItem("in_progress")
	spec, hasArgs := respArgs[r.typ]
	streamed := hasArgs && spec.stream != ""
	if streamed {
		added[spec.field] = json.RawMessage(`""`) // the deltas fill it in
	}
	b.synth(map[string]any{"type": "response.output_item.added", "output_index": oi, "item": added}, seq, hasSeq)
	if streamed {
		args := argumentsOf(&r.heldCall)
		b.synth(map[string]any{"type": "response." + spec.stream + ".delta", "item_id": r.id, "output_index": oi, "delta": args}, seq, hasSeq)
		b.synth(map[string]any{"type": "response." + spec.stream + ".done", "item_id": r.id, "output_index": oi, spec.field: args}, seq, hasSeq)
	}
	b.synth(map[string]any{"type": "response.output_item.done", "output_index": oi, "item": item}, seq, hasSeq)
}

// judgedItem is the item as the client may see it: the model's, with the
// judged arguments.
func (r *respItem) judgedItem(status string) map[string]json.RawMessage {
	src := r.done
	if src == nil {
		src = r.added
	}
	item := make(map[string]json.RawMessage, len(src)+1)
	for k, v := range src {
		item[k] = v
	}
	if spec, ok := respArgs[r.typ]; ok {
		item[spec.field] = toJSON(argumentsOf(&r.heldCall))
	}
	for k, v := range r.patched {
		item[k] = v
	}
	if _, has := item["status"]; has || status == "in_progress" {
		item["status"] = toJSON(status)
	}
	return item
}

// terminalResp handles response.completed (incomplete, failed): calls not
// yet complete are judged as they stand (response.failed ends them
// unjudged, as an error event does: endItems), so are tool items only the final
// output shows; then the queue goes out and the terminal event, its output
// carrying the judged items.
func (b *toolBuffer) terminalResp(e *respEvent) {
	var resp map[string]json.RawMessage
	if json.Unmarshal(e.obj["response"], &resp) != nil || resp == nil {
		b.fail(errors.New("the terminal event's response is not an object"))
		return
	}
	var output []json.RawMessage
	if !isNull(resp["output"]) && json.Unmarshal(resp["output"], &output) != nil {
		b.fail(errors.New("the terminal event's output is not a list"))
		return
	}
	if typ, _ := optString(e.obj["type"]); typ == "response.failed" || typ == "" && e.name == "response.failed" {
		// The response failed: as after an error event, calls not yet
		// complete are never shown.
		b.endItems()
	}
	var calls []*heldCall
	var open []*respItem
	for _, r := range b.items {
		if !r.closed {
			open = append(open, r)
		}
	}
	// In the order they were added.
	slices.SortFunc(open, func(x, y *respItem) int { return b.queuePos(x) - b.queuePos(y) })
	for _, r := range open {
		r.closed = true
		if !b.buildCall(r) || !b.claimCallID(r, nil) {
			return
		}
		calls = append(calls, r.calls()...)
	}
	// The final output is what agent SDKs run (openai-agents reads it):
	// a tool item there stands for the item the stream showed under its
	// id only when it is the same call (finalCallKey); one that says
	// otherwise under that id is a call of its own, judged as what it is.
	// The same call twice would run twice: the stream ends instead.
	late := map[int]*respItem{}
	inFinal := map[string]*respItem{}
	finalIDs := map[string]*respItem{} // the final output's calls by call id
	for i, raw := range output {
		var item map[string]json.RawMessage
		if json.Unmarshal(raw, &item) != nil || item == nil {
			continue
		}
		it, _ := optString(item["type"])
		kind, isTool := toolcall.ItemKind(it)
		if !isTool {
			continue
		}
		id, _ := optString(item["id"])
		shown := b.items["id:"+id]
		if id == "" {
			shown = nil
		}
		if shown != nil {
			// An item the SDKs would read otherwise is malformed here
			// too, even when it stands for one judged already.
			var m map[string]any
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if d.Decode(&m) == nil {
				if _, err := toolcall.ItemCalls(it, m); err != nil {
					b.fail(fmt.Errorf("the final output's item %s: %w", quoteUpstream(id), err))
					return
				}
			}
		}
		r := &respItem{id: id, typ: it, done: item, closed: true}
		r.call.Kind = kind
		if !b.buildCall(r) {
			return
		}
		key := r.finalCallKey()
		if first, twice := inFinal[key]; twice {
			if !first.judged {
				first.withheld = reasonCallIDTwice // a late call, never judged
			}
			b.fail(fmt.Errorf("the final output holds the call %s (item %s) twice", quoteUpstream(r.call.ID), quoteUpstream(id)))
			return
		}
		if shown != nil && shown.finalCallKey() == key {
			inFinal[key], finalIDs[r.call.ID] = shown, shown
			continue // the judged item takes its place
		}
		inFinal[key] = r
		if !b.claimCallID(r, finalIDs) {
			return
		}
		b.streamedItem(id)
		if !b.countCall() {
			return
		}
		late[i] = r
		calls = append(calls, r.calls()...)
		b.extra = append(b.extra, r.calls()...)
	}
	b.stall(calls, func() {
		// The queue, with every item now judged.
		b.flushResp()
		for _, r := range open {
			b.replaceItem(r, e.seq, e.hasSeq)
		}
		out := make([]json.RawMessage, 0, len(output))
		touched := len(b.items) > 0 || len(late) > 0 // a stream without calls keeps its terminal event as it came
		for i, raw := range output {
			if r := late[i]; r != nil {
				b.judgedLate(r)
				out = append(out, r.emitted)
				continue
			}
			var item map[string]json.RawMessage
			if json.Unmarshal(raw, &item) == nil && item != nil {
				it, _ := optString(item["type"])
				if isCallItem(it) {
					touched = true
					id, _ := optString(item["id"])
					r := b.items["id:"+id]
					if id == "" || r == nil || r.emitted == nil {
						continue // never shown: not shown here either
					}
					out = append(out, r.emitted)
					continue
				}
			}
			out = append(out, raw)
		}
		if !touched {
			b.emitResp(e)
			return
		}
		if !isNull(resp["output"]) || len(out) > 0 {
			resp["output"] = toJSON(out)
			e.obj["response"] = toJSON(resp)
		}
		e.raw = nil
		b.emitResp(e)
	})
}

// shownOutput replaces the tool items of a (non-terminal) response
// event's output by the judged ones, and takes out those not yet judged.
// It reports false when the event was dropped.
func (b *toolBuffer) shownOutput(e *respEvent) bool {
	var resp map[string]json.RawMessage
	if isNull(e.obj["response"]) {
		return true
	}
	if json.Unmarshal(e.obj["response"], &resp) != nil || resp == nil {
		return false
	}
	var output []json.RawMessage
	if isNull(resp["output"]) {
		return true
	}
	if json.Unmarshal(resp["output"], &output) != nil {
		return false
	}
	out := make([]json.RawMessage, 0, len(output))
	changed := false
	shown := map[string]bool{}
	for _, raw := range output {
		var item map[string]json.RawMessage
		if json.Unmarshal(raw, &item) == nil && item != nil {
			it, _ := optString(item["type"])
			if isCallItem(it) {
				changed = true
				r := b.removedItem(item) // shownOutput reads non-terminal events only
				if id := r.idOrEmpty(); r != nil && r.emitted != nil && !shown[id] {
					shown[id] = true // the same call twice is shown once
					out = append(out, r.emitted)
				}
				continue
			}
		}
		out = append(out, raw)
	}
	if changed {
		resp["output"] = toJSON(out)
		e.obj["response"] = toJSON(resp)
		e.raw = nil
	}
	return true
}

// removedItem notes a tool item taken out of an event no SDK reads calls
// from. It returns the item the stream shows that this one is the same
// call as (its judged form may stand in its place), else nil: an item
// the stream does not track, or that says another call under a tracked
// id, is noted as unrelayed (recorded when the stream ends unless judged
// meanwhile); one the stream has not finished yet is judged as it streams.
func (b *toolBuffer) removedItem(item map[string]json.RawMessage) *respItem {
	if item == nil {
		return nil
	}
	typ, _ := optString(item["type"])
	id, _ := optString(item["id"])
	r := b.items["id:"+id]
	switch {
	case id == "" || r == nil:
		b.unrelayedItem(item, false)
		return nil
	case !r.closed:
		return nil
	case !sameCall(r, typ, item):
		b.unrelayedItem(item, true)
		return nil
	}
	return r
}

func (r *respItem) idOrEmpty() string {
	if r == nil {
		return ""
	}
	return r.id
}

// sameCall reports whether item (of type typ) is the call r proposed
// (finalCallKey), without touching the stream's state: an item that
// cannot be read is another call.
func sameCall(r *respItem, typ string, item map[string]json.RawMessage) bool {
	kind, _ := toolcall.ItemKind(typ)
	t := &respItem{id: r.id, typ: typ, done: item, closed: true}
	t.call.Kind = kind
	scratch := newToolBuffer(false, func([]byte) {})
	return scratch.buildCall(t) && scratch.err == nil && t.finalCallKey() == r.finalCallKey()
}

// finalCallKey names the call an item proposes, as the judge saw it: its
// type, item id, call id, tool, and every argument judged. Two items with
// one key are one call; an item of the final output under a shown item's
// id with another key is another call.
func (r *respItem) finalCallKey() string {
	var k strings.Builder
	for _, s := range []string{r.typ, r.id, r.call.ID, string(r.call.Kind), r.call.Name, r.call.Server} {
		k.WriteString(strconv.Quote(s))
	}
	for _, h := range r.calls() {
		k.WriteString(strconv.Quote(h.call.Arguments))
	}
	return k.String()
}

// queuePos is where r's first event waits in the queue (for ordering).
func (b *toolBuffer) queuePos(r *respItem) int {
	for i, e := range b.rqueue {
		if e.item == r {
			return i
		}
	}
	return len(b.rqueue)
}

// judgedLate sets the item shown for a call only the final output held.
func (b *toolBuffer) judgedLate(r *respItem) {
	r.settle()
	if r.verdict.Action != toolcall.Deny {
		r.emitted = toJSON(r.judgedItem("completed"))
		return
	}
	msg := deniedMessage(&r.heldCall)
	r.msgID = "msg_pamctl_" + randHex(12)
	r.emitted = toJSON(map[string]any{"id": r.msgID, "type": "message", "status": "completed", "role": "assistant",
		"content": []any{map[string]any{"type": "output_text", "text": msg, "annotations": []any{}, "logprobs": []any{}}}})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b)
}

// ---- the stream's side --------------------------------------------------------

// toolStream runs a toolBuffer for a streamBody: verdicts come from the
// Judge on a goroutine of their own, so that the stream can keep the
// client's connection alive (and notice it going away) meanwhile.
type toolStream struct {
	buf    *toolBuffer
	judge  toolcall.Judge
	ctx    context.Context
	cancel context.CancelFunc
	result chan toolVerdict
	asked  bool // a Judge call is running
	every  time.Duration
}

type toolVerdict struct {
	v   toolcall.Verdict
	err error
}

func newToolStream(ctx context.Context, j toolcall.Judge, chat bool, emit func([]byte)) *toolStream {
	ctx, cancel := context.WithCancel(ctx)
	t := &toolStream{buf: newToolBuffer(chat, emit), judge: j, ctx: ctx, cancel: cancel,
		result: make(chan toolVerdict, 1), every: toolKeepalive}
	if r, ok := j.(unjudgedRecorder); ok {
		t.buf.onUnrelayed = func(c toolcall.Call) error { return r.Unrelayed(ctx, c) }
		t.buf.onWithheld = func(c toolcall.Call, why string) error { return r.Withheld(ctx, c, why) }
	}
	return t
}

// unjudgedRecorder is a Judge that records the calls a stream ends
// without asking it about: an item removed from an event no SDK reads
// calls from (Unrelayed), a call the stream never finished or the buffer
// refused (Withheld, why: reasonNeverFinished, reasonCallIDTwice).
type unjudgedRecorder interface {
	Unrelayed(ctx context.Context, c toolcall.Call) error
	Withheld(ctx context.Context, c toolcall.Call, why string) error
}

// recordUnjudged records the calls the stream removed unjudged and never
// showed (toolBuffer.recordUnrelayed), and those it began and ends
// without a verdict (toolBuffer.recordWithheld). A failure to record is
// the error to end the stream with, as a call the proxy could not
// inspect.
func (t *toolStream) recordUnjudged() *apiError {
	if t == nil || t.buf.onUnrelayed == nil {
		return nil
	}
	err := t.buf.recordUnrelayed()
	if werr := t.buf.recordWithheld(); err == nil {
		err = werr
	}
	if err != nil {
		t.buf.fail(fmt.Errorf("a tool call could not be recorded: %w", err))
		return t.buf.err
	}
	return nil
}

// busy reports whether a call awaits its verdict: the upstream is not read
// meanwhile.
func (t *toolStream) busy() bool { return t != nil && t.buf.pending() != nil }

// stop cancels a running Judge call and stops holding: what the buffer
// holds is never emitted.
func (t *toolStream) stop() {
	if t == nil {
		return
	}
	t.cancel()
	t.buf.need, t.buf.resume, t.buf.queue, t.buf.rqueue = nil, nil, nil, nil
	t.buf.off = true
}

// wait waits for the pending call's verdict for at most one keep-alive
// interval. It returns keepalive true when the interval passed first, and
// an error when the verdict cannot be had (the client left: ctx's error;
// the Judge failed: an apiError to end the stream with).
func (t *toolStream) wait(clientCtx context.Context) (keepalive bool, err error) {
	c := t.buf.pending()
	if !t.asked {
		t.asked = true
		t.buf.need[0].asked = true // the judge records it, whatever happens next
		call := *c
		withheld := t.buf.onWithheld // read here: the goroutine may outlive the stream
		go func() {
			r := toolVerdict{err: errors.New("the judge panicked")}
			defer func() {
				_ = recover() // a panicking Judge denies, as any failure does
				if r.err != nil && !errors.Is(r.err, toolcall.ErrAnswerShape) && withheld != nil {
					// The judge records a call it decided on, or found
					// unreadable (ErrAnswerShape); one that panicked or
					// failed (its record refused) may have recorded
					// nothing: the call is recorded here, once (asked:
					// withheldCalls leaves it alone).
					_ = withheld(call, reasonJudgeFailed) // a failure is the judge's too: the stream ends either way
				}
				t.result <- r
			}()
			r.v, r.err = t.judge.Judge(t.ctx, call)
		}()
	}
	timer := time.NewTimer(t.every)
	defer timer.Stop()
	select {
	case r := <-t.result:
		t.asked = false
		if r.err != nil {
			if clientCtx.Err() != nil {
				return false, clientCtx.Err()
			}
			if errors.Is(r.err, toolcall.ErrAnswerShape) {
				// The judge found the call unreadable (ambiguous arguments).
				t.buf.fail(r.err)
				return false, t.buf.err
			}
			return false, errUpstream(http.StatusBadGateway, CodeToolCallUndecided,
				"pamctl could not decide on a tool call the model proposed, so the call was withheld and the stream ends here. Retry the request; if it persists an administrator should check the pamctl logs.",
				fmt.Errorf("judge %s: %w", clip(c.Tool(), 80), r.err))
		}
		t.buf.decide(r.v)
		return false, nil
	case <-timer.C:
		return true, nil
	case <-clientCtx.Done():
		t.cancel()
		return false, clientCtx.Err()
	}
}

// awaitVerdict waits for the verdict on the call the firewall holds, for
// at most one keep-alive interval (streamBody.Read's side of toolStream).
func (s *streamBody) awaitVerdict() {
	keepalive, err := s.tools.wait(s.ctx)
	if keepalive {
		s.out.WriteString(toolWaitComment)
		s.waiting = true
		return
	}
	s.checkTools(err)
}

// checkTools ends the stream when the firewall failed (or the client left
// while a call was held): nothing more is read or shown.
func (s *streamBody) checkTools(err error) {
	var ae *apiError
	switch {
	case err != nil && errors.As(err, &ae):
	case err != nil:
		// The client went away: finish records the call as abandoned.
		s.tools.stop()
		if s.overflow == nil {
			s.overflow = err
		}
		return
	default:
		ae = s.tools.buf.err
	}
	if ae != nil && s.toolErr == nil {
		s.tools.stop()
		s.toolErr = ae
		if s.overflow == nil {
			s.overflow = ae
		}
	}
}
