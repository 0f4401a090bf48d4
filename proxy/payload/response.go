package payload

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/pamctl/pamctl/proxy/mask"
)

// SummaryBytes bounds Result.Summary: the most of an answer the audit trail
// can keep (the proxy keeps less when configured so).
const SummaryBytes = 16 << 10

// Usage is the token usage reported by the upstream.
type Usage struct {
	// InputTokens is prompt_tokens (chat, embeddings) or input_tokens
	// (responses).
	InputTokens int64 `json:"input_tokens"`
	// OutputTokens is completion_tokens or output_tokens.
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

// Result describes a response the proxy forwarded.
type Result struct {
	// Counts is the number of findings masked, per type; each text field
	// counts once even when it appears in several events of a stream.
	Counts mask.Counts
	// Summary is the start (at most SummaryBytes) of the assistant's text as
	// the client received it, or "name(arguments)" of its tool calls.
	Summary string
	// Usage is set when HasUsage.
	Usage    Usage
	HasUsage bool
	// TextBytes is the length of the text fields relayed so far (streams
	// only): what a proxy charges, estimated, when no usage came.
	TextBytes int64
}

// MaskResponse masks every model-written string a client reads in a
// non-streamed response body of a chat or Responses call: every JSON
// string value of the answer is masked except the strings of structural
// members and base64 text of base64 members (see exempt: ids, types,
// roles, enums, base64 payloads). That covers
// message content (strings or parts), refusals, reasoning text of
// compatible upstreams (reasoning_content, reasoning), tool-call
// arguments, annotations and URL citations, every choice, and every
// Responses output item type, including those added to the API later.
// Token log probabilities, which spell the text out token by token, are
// removed when masking is on.
//
// With masking on, an answer the generic path decodes is re-encoded, so
// duplicate or case-variant members and invalid UTF-8 reach the client
// only as the proxy read and masked them. The body is returned unchanged
// when masking is off or the fast path read it; a body that is not JSON
// is masked as plain text. The item shapes (EndpointItems, EndpointItem)
// are masked item by item, and refused when they are not items (maskItems);
// a chat completion's messages (EndpointChatMessages) message by message,
// and refused when they are not a list of messages (maskChatMessages).
//
// Whatever the shape, and masking on or off, a body holding a lone UTF-16
// surrogate escape is refused (ErrUnreadableJSON, see checkSurrogates).
func MaskResponse(endpoint string, body []byte, m *mask.Masker) ([]byte, Result, error) {
	if err := checkSurrogates(unsafe.String(unsafe.SliceData(body), len(body))); err != nil {
		return nil, Result{Counts: mask.Counts{}}, err
	}
	switch endpoint {
	case EndpointItems, EndpointItem:
		return maskItems(endpoint, body, m)
	case EndpointChatMessages:
		return maskChatMessages(body, m)
	}
	res := Result{Counts: mask.Counts{}}
	ep, err := normalize(endpoint)
	if err != nil {
		return nil, res, err
	}
	if ep == EndpointChat && fastPaths {
		if fres, ok := maskChatAnswer(body, m); ok {
			return body, fres, nil
		}
	}
	root, err := decodeObject(body)
	if err != nil {
		if looksLikeJSON(body) {
			// JSON that Go's decoder refuses but a client's may read (a
			// BOM, NaN, nesting past the decoder's bound, a bad escape):
			// masking it as text would miss what the client's decoder
			// unescapes, and its usage would go uncounted.
			return nil, res, fmt.Errorf("%w (%w): withheld", ErrUnreadableJSON, err)
		}
		if !m.Enabled() {
			return body, res, nil
		}
		out, c := m.Mask(validText(string(body), m))
		res.Counts.Add(c)
		return []byte(out), res, nil
	}
	res.Usage, res.HasUsage = parseUsage(root["usage"])
	f := countingMask(m, res.Counts)
	var sum summary
	switch ep {
	case EndpointChat:
		choices, isList := root["choices"].([]any)
		for i, v := range choices {
			ch := obj(v)
			if ch == nil {
				if m.Enabled() {
					choices[i] = MaskStrings(v, f, nil) // a choice of another type, masked whole
				}
				continue
			}
			if m.Enabled() && ch["logprobs"] != nil {
				ch["logprobs"] = nil
			}
			if m.Enabled() {
				MaskStrings(ch, f, nil)
			}
			if i == 0 {
				sum.chatMessage(obj(ch["message"]))
			}
		}
		if m.Enabled() {
			// Whatever else the upstream put in the answer, and choices
			// that are not a list.
			MaskStrings(root, f, func(k string) bool { return k == "choices" && isList })
		}
	case EndpointResponses:
		items := arr(root["output"])
		if m.Enabled() {
			for _, v := range items {
				stripLogprobs(obj(v), true)
			}
			// Output items, errors, and whatever else the upstream put in
			// the answer (echoed request fields included).
			MaskStrings(root, f, func(k string) bool { return k == "output_text" })
			// output_text repeats the message text: mask it, count it once.
			str(root, "output_text", func(s string) string {
				out, _ := m.Mask(s)
				return out
			})
		}
		sum.outputItems(items)
	}
	res.Summary = sum.String()
	if !m.Enabled() || ep != EndpointChat && ep != EndpointResponses {
		return body, res, nil
	}
	out, err := encode(root)
	return out, res, err
}

// countingMask masks a string of an answer with m, adding what it found to
// counts; an empty string, or any when m is off, is left as it is.
func countingMask(m *mask.Masker, counts mask.Counts) func(string) string {
	return func(s string) string {
		if !m.Enabled() || s == "" {
			return s
		}
		out, c := m.Mask(s)
		counts.Add(c)
		return out
	}
}

// structuralKeys name members whose string values are protocol rather
// than model-written text: identifiers, enumerations and names the client
// defined (tools, MCP servers). Only a string is left alone: an object or
// an array under one of these names is not protocol the API defines, and
// is masked like any other (exempt). docs/rules-and-masking.md lists them.
var structuralKeys = map[string]bool{
	"id": true, "object": true, "type": true, "role": true, "model": true, "status": true,
	"finish_reason": true, "call_id": true, "item_id": true, "tool_call_id": true,
	"approval_request_id": true, "name": true, "server_label": true, "system_fingerprint": true,
	"service_tier": true, "format": true, "mime_type": true, "file_id": true, "container_id": true,
	"encrypted_content": true, "output_format": true, "quality": true, "size": true, "background": true,
	"obfuscation": true,
}

// base64Keys name the members the API puts base64 payloads in (audio
// data, generated images, partial images), which masking would corrupt.
// Only a string that is base64 text (base64Text) is left alone: anything
// else under these names (an object, an array, prose) is masked like any
// other value (exempt).
var base64Keys = map[string]bool{"data": true, "b64_json": true, "result": true, "partial_image_b64": true}

// exempt reports whether v, the value of member key, is left unmasked: a
// string of a structural member, or base64 text of a base64 member, at
// least minBase64Payload long. Any other value, whatever its member is
// called, is masked.
func exempt(key string, v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	return structuralKeys[key] || base64Keys[key] && len(s) >= minBase64Payload && base64Text(s)
}

// minBase64Payload is the shortest base64 member left unmasked. Audio,
// images and their partial chunks are kilobytes; what is shorter is
// masked, so a card number, a phone number with its '+', an AWS key id or
// an IBAN (all base64 characters) in a data member is found as it is in
// content. (Longer, glued to more base64 characters, it is not found
// there either: the detectors want a boundary.)
const minBase64Payload = 64

// base64Text reports whether s is base64 in the standard alphabet (RFC
// 4648 section 4, as OpenAI sends audio and images), padded or not: only
// A-Z a-z 0-9 + / and at most two '=' completing the last group. Prose,
// e-mail addresses, URLs, data: URLs and the URL-safe alphabet ('-', '_')
// are not base64 text here, so the masker reads them.
func base64Text(s string) bool {
	n := len(s)
	for n > 0 && len(s)-n < 2 && s[n-1] == '=' {
		n--
	}
	if n < len(s) && len(s)%4 != 0 || n%4 == 1 {
		return false
	}
	for i := 0; i < n; i++ {
		if !base64Alphabet[s[i]] {
			return false
		}
	}
	return true
}

var base64Alphabet = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = true
	}
	return t
}()

// MaskStrings replaces every string value in v (maps and arrays, at any
// depth) with f of it, except values exempt for their member (structural
// strings, base64 text: exempt) and the top-level members of v that skip
// selects; every member name goes through f too, and one f changes is
// renamed (renameKey). It returns v (a string value given directly is
// masked).
//
// A string member named arguments is a call's arguments, JSON text the
// agent decodes again: f reads it as that second decode does
// (maskArguments).
func MaskStrings(v any, f func(string) string, skip func(key string) bool) any {
	return maskStringsKeys(v, f, f, nil, skip)
}

// maskStringsKeys is MaskStrings masking member names with fk: a caller
// whose f counts findings per text field masks names apart. fa, when not
// nil, masks call arguments instead of maskArguments with f (a stream
// scrubs keys from them before they are viewed for masking).
func maskStringsKeys(v any, f, fk, fa func(string) string, skip func(key string) bool) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case []any:
		for i, e := range x {
			x[i] = maskStringsKeys(e, f, fk, fa, nil)
		}
	case map[string]any:
		var renamed []string // keys fk changes: old, new pairs
		for k, e := range x {
			if !apiNames[k] && !structuralKeys[k] && !base64Keys[k] {
				if mk := fk(k); mk != k {
					renamed = append(renamed, k, mk)
				}
			}
			if exempt(k, e) || skip != nil && skip(k) {
				continue
			}
			if a, isStr := e.(string); isStr && k == "arguments" {
				// A call's arguments: mask what the agent's second
				// decode reads (argescapes.go).
				if fa != nil {
					x[k] = fa(a)
				} else {
					x[k] = maskArguments(a, f)
				}
				continue
			}
			x[k] = maskStringsKeys(e, f, fk, fa, nil)
		}
		var next map[string]int // per placeholder, the suffix to try next
		for i := 0; i < len(renamed); i += 2 {
			if next == nil {
				next = map[string]int{}
			}
			renameKey(x, renamed[i], renamed[i+1], next)
		}
	}
	return v
}

// apiNames are member names of the API's answers and events, left as
// they are (with the exempt ones): they are the protocol, not text (a
// custom detector that matches "text" must not rename the member), and
// masking each name of each event was 15 % of a Responses stream's cost.
// Any other name is masked.
var apiNames = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`choices index delta message content refusal tool_calls function
		arguments function_call finish_reason logprobs usage prompt_tokens completion_tokens total_tokens
		prompt_tokens_details completion_tokens_details cached_tokens reasoning_tokens audio_tokens
		accepted_prediction_tokens rejected_prediction_tokens created audio transcript expires_at
		annotations url_citation url title start_index end_index reasoning_content reasoning
		sequence_number output_index content_index summary_index text part item response output
		output_text input_tokens output_tokens input_tokens_details output_tokens_details error code
		message param created_at completed_at incomplete_details instructions max_output_tokens
		metadata parallel_tool_calls previous_response_id temperature top_p tool_choice tools
		truncation user store summary top_logprobs token logprob bytes action query queries results
		outputs code logs image_url server_label approve reason`) {
		m[n] = true
	}
	return m
}()

// renameKey moves x[from] to x[to], or to the first of to#2, to#3 … that
// is free (two keys may mask alike, or mask into a key the object has).
// Member names are the upstream's text too: a client that logs or shows
// an object shows its keys. next remembers, per to, where the search goes
// on, so n names masking alike cost n probes, not n² (an upstream can send
// thousands).
func renameKey(x map[string]any, from, to string, next map[string]int) {
	v := x[from]
	delete(x, from)
	name := to
	n := max(next[to], 1)
	if n > 1 {
		name = to + "#" + strconv.Itoa(n)
	}
	for {
		if _, taken := x[name]; !taken {
			break
		}
		n++
		name = to + "#" + strconv.Itoa(n)
	}
	next[to] = n + 1
	x[name] = v
}

// UsualChatAnswer reports whether body is a chat completion as the fast
// path reads it: one JSON object of the members a completion has, in their
// spelling, each once (choices an array of choices with a message, no
// logprobs), naming itself "chat.completion" or nothing. Such an answer is
// in its route's shape; false says nothing (the caller checks the long way).
func UsualChatAnswer(body []byte) bool {
	var d chatDoc
	if !scanChat(unsafe.String(unsafe.SliceData(body), len(body)), "message", true, &d) {
		return false
	}
	return d.object == "" || d.object == "null" || d.object == `"chat.completion"`
}

// maskChatAnswer is MaskResponse's fast path for the usual chat answer,
// read without decoding it into maps. It reports ok only when masking
// leaves every text unchanged (the body is then returned as is); otherwise
// the generic path masks and re-encodes.
func maskChatAnswer(body []byte, m *mask.Masker) (Result, bool) {
	var d chatDoc
	if !scanChat(string(body), "message", m.Enabled(), &d) {
		return Result{}, false
	}
	res := Result{Counts: mask.Counts{}, Usage: d.usage, HasUsage: d.hasUsage}
	var sum summary
	for i, ch := range d.choices {
		if !ch.isObj {
			continue
		}
		for _, t := range [2]struct {
			t   text
			has bool
		}{{ch.msg.content, ch.msg.hasC}, {ch.msg.refusal, ch.msg.hasR}} {
			if !t.has || !m.Enabled() || t.t.val == "" {
				continue
			}
			out, c := m.Mask(t.t.val)
			if out != t.t.val {
				return Result{}, false
			}
			res.Counts.Add(c)
		}
		if i == 0 && ch.msg.hasC {
			sum.add(ch.msg.content.val)
		}
	}
	res.Summary = sum.String()
	return res, true
}

// chatTextKeys are the string members of a chat message (or delta) that
// stream as text: content and refusal, and the reasoning text some
// compatible upstreams add (reasoning_content: DeepSeek, vLLM; reasoning:
// OpenRouter, Ollama).
var chatTextKeys = []string{"content", "refusal", "reasoning_content", "reasoning"}

// maskChatRest masks, with f, every string of a chat message (or delta)
// that walkChatMessage does not stream: content parts, annotations and URL
// citations, tool call members other than arguments, anything an upstream
// adds.
//
// Only what walkChatMessage streams is skipped: a member of another type
// than it reads (tool_calls that are not an array, a call that is not an
// object, arguments that are an object) is masked here whole.
func maskChatRest(msg map[string]any, f func(string) string) {
	if msg == nil {
		return
	}
	MaskStrings(msg, f, func(k string) bool {
		switch k {
		case "tool_calls":
			_, ok := msg[k].([]any)
			return ok
		case "function_call", "audio":
			_, ok := msg[k].(map[string]any)
			return ok
		}
		_, isText := msg[k].(string)
		return isText && slices.Contains(chatTextKeys, k)
	})
	if calls, ok := msg["tool_calls"].([]any); ok {
		for i, v := range calls {
			tc, ok := v.(map[string]any)
			if !ok {
				calls[i] = MaskStrings(v, f, nil)
				continue
			}
			fn, fnObj := tc["function"].(map[string]any)
			MaskStrings(tc, f, func(k string) bool { return k == "function" && fnObj })
			maskAllBut(fn, "arguments", f)
		}
	}
	if fc, ok := msg["function_call"].(map[string]any); ok {
		maskAllBut(fc, "arguments", f)
	}
	if au, ok := msg["audio"].(map[string]any); ok {
		maskAllBut(au, "transcript", f)
	}
}

// maskAllBut masks every string of o but its member key when that is a
// string (streamed text, masked as it streams).
func maskAllBut(o map[string]any, key string, f func(string) string) {
	_, isText := o[key].(string)
	MaskStrings(o, f, func(k string) bool { return k == key && isText })
}

// walkChatMessage calls f on the text fields of a chat message (or delta).
// The kind and index name the field within its choice.
func walkChatMessage(msg map[string]any, f func(kind string, idx int, s string) string) {
	if msg == nil {
		return
	}
	for _, k := range chatTextKeys {
		if s, ok := msg[k].(string); ok {
			msg[k] = f(k, 0, s)
		}
	}
	for j, v := range arr(msg["tool_calls"]) {
		tc := obj(v)
		if tc == nil {
			continue
		}
		idx := j
		if n, ok := intOf(tc["index"]); ok {
			idx = n
		}
		fn := obj(tc["function"])
		if s, ok := fn["arguments"].(string); ok {
			fn["arguments"] = f("tool", idx, s)
		}
	}
	if fc := obj(msg["function_call"]); fc != nil {
		if s, ok := fc["arguments"].(string); ok {
			fc["arguments"] = f("function_call", 0, s)
		}
	}
	if au := obj(msg["audio"]); au != nil {
		if s, ok := au["transcript"].(string); ok {
			au["transcript"] = f("audio", 0, s)
		}
	}
}

// Kinds of Responses text fields; each is also the middle of its streaming
// event names ("response.<kind>.delta" / ".done").
const (
	kindOutputText    = "output_text"
	kindRefusal       = "refusal"
	kindFuncArgs      = "function_call_arguments"
	kindCustomInput   = "custom_tool_call_input"
	kindReasoningSum  = "reasoning_summary_text"
	kindReasoningText = "reasoning_text"
)

// walkOutputItem calls f on the text fields of a Responses output item.
func walkOutputItem(item map[string]any, f func(kind string, idx int, s string) string) {
	if item == nil {
		return
	}
	each := func(list []any, fields map[string]string) {
		for k, v := range list {
			p := obj(v)
			for field, kind := range fields {
				if s, ok := p[field].(string); ok {
					p[field] = f(kind, k, s)
				}
			}
		}
	}
	switch t, _ := item["type"].(string); t {
	case "message":
		each(arr(item["content"]), map[string]string{"text": kindOutputText, "refusal": kindRefusal})
	case "function_call":
		str(item, "arguments", func(s string) string { return f(kindFuncArgs, 0, s) })
	case "custom_tool_call":
		str(item, "input", func(s string) string { return f(kindCustomInput, 0, s) })
	case "reasoning":
		each(arr(item["summary"]), map[string]string{"text": kindReasoningSum})
		each(arr(item["content"]), map[string]string{"text": kindReasoningText})
	case "file_search_call":
		each(arr(item["results"]), map[string]string{"text": "file_search_result"})
	case "shell_call":
		// Its commands, each the text its shell_call_command deltas
		// (by command_index) continue.
		if cmds := arr(obj(item["action"])["commands"]); cmds != nil {
			for i, v := range cmds {
				if s, ok := v.(string); ok {
					cmds[i] = f(kindShellCommand, i, s)
				}
			}
		}
	case "mcp_call":
		str(item, "arguments", func(s string) string { return f("mcp_call_arguments", 0, s) }) // the deltas' kind
		str(item, "output", func(s string) string { return f("mcp_output", 0, s) })
	}
}

// stripLogprobs empties the logprobs of a message item's parts.
func stripLogprobs(item map[string]any, on bool) bool {
	changed := false
	if !on || item == nil {
		return false
	}
	for _, v := range arr(item["content"]) {
		if p := obj(v); p != nil && len(arr(p["logprobs"])) > 0 {
			p["logprobs"], changed = []any{}, true
		}
	}
	return changed
}

func parseUsage(v any) (Usage, bool) {
	u := obj(v)
	if u == nil {
		return Usage{}, false
	}
	var out Usage
	pick := func(keys ...string) int64 {
		for _, k := range keys {
			if n, ok := intOf(u[k]); ok {
				return int64(n)
			}
		}
		return 0
	}
	out.InputTokens = pick("prompt_tokens", "input_tokens")
	out.OutputTokens = pick("completion_tokens", "output_tokens")
	out.TotalTokens = pick("total_tokens")
	if out.TotalTokens == 0 {
		out.TotalTokens = out.InputTokens + out.OutputTokens
	}
	return out, true
}

func intOf(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return int(i), err == nil
	case float64:
		return int(n), true
	}
	return 0, false
}

// summary keeps the first SummaryBytes of text, cut at a rune boundary.
type summary struct {
	b     strings.Builder
	tools []string
}

func (s *summary) add(text string) {
	room := SummaryBytes - s.b.Len()
	if room <= 0 || text == "" {
		return
	}
	if len(text) > room {
		for room > 0 && !utf8.RuneStart(text[room]) {
			room--
		}
		text = text[:room]
	}
	s.b.WriteString(text)
}

func (s *summary) tool(name, args string) {
	if len(s.tools) < 8 {
		s.tools = append(s.tools, name+"("+args+")")
	}
}

// String is the text, or else the tool calls.
func (s *summary) String() string {
	if s.b.Len() > 0 || len(s.tools) == 0 {
		return s.b.String()
	}
	var t summary
	t.add(strings.Join(s.tools, " "))
	return t.b.String()
}

func (s *summary) chatMessage(msg map[string]any) {
	if c, ok := msg["content"].(string); ok {
		s.add(c)
	}
	for _, v := range arr(msg["tool_calls"]) {
		fn := obj(obj(v)["function"])
		name, _ := fn["name"].(string)
		args, _ := fn["arguments"].(string)
		s.tool(name, args)
	}
}

func (s *summary) outputItems(items []any) {
	for _, v := range items {
		item := obj(v)
		switch t, _ := item["type"].(string); t {
		case "message":
			for _, p := range arr(item["content"]) {
				if txt, ok := obj(p)["text"].(string); ok {
					s.add(txt)
				}
			}
		case "function_call":
			name, _ := item["name"].(string)
			args, _ := item["arguments"].(string)
			s.tool(name, args)
		}
	}
}

// ValidText returns text with invalid UTF-8 replaced by U+FFFD when
// masking is on, so the masker and every client read the same text (a
// client that drops invalid bytes would otherwise join what the masker
// saw apart).
func ValidText(text string, m *mask.Masker) string { return validText(text, m) }

func validText(text string, m *mask.Masker) string {
	if !m.Enabled() || utf8.ValidString(text) {
		return text
	}
	return strings.ToValidUTF8(text, "\uFFFD")
}

// looksLikeJSON reports whether a client's decoder may read b as JSON
// that holds text: its first byte, past white space and a UTF-8 BOM
// (which openai-node and Python's json.loads of bytes skip), opens an
// object, an array or a string (openai-python hands a string answer to
// the agent as it decoded it, escapes and all).
func looksLikeJSON[T string | []byte](b T) bool {
	i := 0
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	if len(b)-i >= 3 && string(b[i:i+3]) == "\xef\xbb\xbf" {
		i += 3
		for i < len(b) && isJSONSpace(b[i]) {
			i++
		}
	}
	return i < len(b) && (b[i] == '{' || b[i] == '[' || b[i] == '"')
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
