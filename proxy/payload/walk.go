package payload

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// walker visits every model-visible text field of a decoded request, in a
// fixed order (object keys the walk does not know are visited sorted), and
// stores what visit returns. Texts that the model reads as one (the text
// parts of one content array) share a group; every other field is a group
// of its own. Content pamctl cannot read (images, audio, files, encrypted
// reasoning, stored prompts and conversations, token ids, ...) is recorded
// in unscanned by path.
type walker struct {
	visit     func(group int, s string) string
	group     int
	path      []pathSeg
	unscanned []string
	keyErr    bool  // a rewrite renamed a schema property onto another
	err       error // the first case variant or unsupported shape found
	// places: path names the key of every field (Request.Places), also
	// of those the other walks visit without pushing it.
	places bool
}

type pathSeg struct {
	key     string
	index   int
	isIndex bool // an array element
}

func (w *walker) push(key string)      { w.path = append(w.path, pathSeg{key: key}) }
func (w *walker) pushIndex(i int)      { w.path = append(w.path, pathSeg{index: i, isIndex: true}) }
func (w *walker) pop()                 { w.path = w.path[:len(w.path)-1] }
func (w *walker) next()                { w.group++ }
func (w *walker) text(s string) string { return w.visit(w.group, s) }

// skip records the current path as content pamctl cannot read, with its kind.
func (w *walker) skip(kind string) {
	if len(w.unscanned) > maxUnscanned {
		return
	}
	if len(w.unscanned) == maxUnscanned {
		w.unscanned = append(w.unscanned, "… (more)")
		return
	}
	p := renderPath(w.path)
	if kind != "" {
		p += " (" + kind + ")"
	}
	w.unscanned = append(w.unscanned, p)
}

// maxUnscanned bounds Request.Unscanned.
const maxUnscanned = 32

func renderPath(path []pathSeg) string {
	var b strings.Builder
	for _, p := range path {
		if p.isIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if safeKey([]byte(p.key)) {
			b.WriteString(p.key)
		} else {
			b.WriteString("<key>")
		}
	}
	return b.String()
}

// str visits m[key] when it is a string, as a group of its own; any other
// type but null is refused.
func (w *walker) str(m map[string]any, key string) {
	if m == nil {
		return
	}
	if w.shape(m, key, kString, wantString) {
		w.next()
		w.textAt(m, key, m[key].(string))
	}
}

// textAt visits m[key], the string s, and stores what visit returns; the
// walk for places pushes key first.
func (w *walker) textAt(m map[string]any, key, s string) {
	if !w.places {
		m[key] = w.text(s)
		return
	}
	w.push(key)
	m[key] = w.text(s)
	w.pop()
}

// walkRequest visits every model-visible text field of a request body and
// refuses (w.err) case variants of the keys it reads and fields of a shape
// it does not read.
func walkRequest(ep string, root map[string]any, w *walker) {
	switch ep {
	case EndpointItemsRequest:
		walkItemsRequest(root, w)
		return
	case EndpointChat:
		w.keys(root, chatTopKeys)
		if w.shape(root, "stream_options", kObject, wantObject) {
			w.push("stream_options")
			w.keys(root["stream_options"].(map[string]any), streamOptKeys)
			w.pop()
		}
		if w.shape(root, "messages", kArray, "an array of messages") {
			w.push("messages")
			for i, v := range root["messages"].([]any) {
				w.pushIndex(i)
				w.chatMessage(w.elem(v, wantMessage))
				w.pop()
			}
			w.pop()
		}
		if w.shape(root, "prediction", kObject, wantObject) {
			w.push("prediction")
			p := root["prediction"].(map[string]any)
			w.keys(p, predictionKeys)
			w.content(p, "content")
			w.pop()
		}
		w.tools(root, "tools")
		w.tools(root, "functions")
		if w.shape(root, "response_format", kObject, wantObject) {
			rf := root["response_format"].(map[string]any)
			w.push("response_format")
			w.keys(rf, responseFmtKeys)
			w.shape(rf, "type", kString, wantString)
			if w.shape(rf, "json_schema", kObject, wantObject) {
				w.push("json_schema")
				w.schemaFormat(rf["json_schema"].(map[string]any))
				w.pop()
			}
			w.pop()
		}
		w.toolChoice(root)
		if w.shape(root, "web_search_options", kObject, wantObject) {
			ws := root["web_search_options"].(map[string]any)
			w.push("web_search_options")
			w.keys(ws, webSearchKeys)
			if w.shape(ws, "user_location", kObject, wantObject) {
				w.push("user_location")
				w.any(ws["user_location"].(map[string]any))
				w.pop()
			}
			w.pop()
		}
		w.content(root, "system")
	case EndpointResponses:
		w.keys(root, responsesTopKeys)
		for _, k := range []string{"instructions", "input"} {
			if !w.shape(root, k, kString|kArray, "a string or an array of input items") {
				continue
			}
			if _, ok := root[k].(string); ok {
				w.str(root, k)
			} else {
				w.push(k)
				w.items(root[k].([]any))
				w.pop()
			}
		}
		if w.shape(root, "prompt", kObject, wantObject) {
			p := root["prompt"].(map[string]any)
			w.push("prompt")
			w.keys(p, promptKeys)
			if id, ok := p["id"].(string); ok && id != "" {
				w.push("id")
				w.skip("stored prompt")
				w.pop()
			}
			if w.shape(p, "variables", kObject, wantObject) {
				vars := p["variables"].(map[string]any)
				w.push("variables")
				for _, k := range sortedKeys(vars) {
					w.push(k)
					switch x := vars[k].(type) {
					case string:
						w.next()
						vars[k] = w.text(x)
					case map[string]any:
						w.next()
						w.part(x)
					case nil:
					default:
						w.badShape(x, "a string or a content part object")
					}
					w.pop()
				}
				w.pop()
			}
			w.pop()
		}
		for _, k := range []string{"previous_response_id", "conversation"} {
			if v, ok := root[k]; ok && v != nil && v != "" {
				w.push(k)
				w.skip("stored conversation")
				w.pop()
			}
		}
		w.tools(root, "tools")
		if w.shape(root, "text", kObject, wantObject) {
			t := root["text"].(map[string]any)
			w.push("text")
			w.keys(t, textKeys)
			if w.shape(t, "format", kObject, wantObject) {
				w.push("format")
				w.schemaFormat(t["format"].(map[string]any))
				w.pop()
			}
			w.pop()
		}
		w.toolChoice(root)
		w.content(root, "system")
	case EndpointEmbeddings:
		w.keys(root, embeddingsKeys)
		if !w.shape(root, "input", kString|kArray, "a string, an array of strings or token ids") {
			break
		}
		switch in := root["input"].(type) {
		case string:
			w.str(root, "input")
		case []any:
			w.push("input")
			for i, v := range in {
				w.pushIndex(i)
				switch x := v.(type) {
				case string:
					w.next()
					in[i] = w.text(x)
				case json.Number:
					w.skip("token ids")
				case []any:
					for _, id := range x {
						if _, ok := id.(json.Number); !ok {
							w.badShape(id, "token ids (numbers)")
							break
						}
					}
					w.skip("token ids")
				default:
					w.badShape(x, "a string or token ids")
				}
				w.pop()
			}
			w.pop()
		}
	}
	w.shape(root, "model", kString, wantString)
	if ep != EndpointEmbeddings {
		w.shape(root, "stream", kBool, "a boolean")
	}
}

// toolChoice visits the tool names of root["tool_choice"]: a string
// ("auto", "none", "required") or an object naming a function, custom or
// MCP tool. The model reads the name it is told to call.
func (w *walker) toolChoice(root map[string]any) {
	if !w.shape(root, "tool_choice", kString|kObject, "a string or an object") {
		return
	}
	tc, ok := root["tool_choice"].(map[string]any)
	if !ok {
		return
	}
	w.push("tool_choice")
	w.keys(tc, toolChoiceKeys)
	w.str(tc, "name")
	for _, k := range []string{"function", "custom"} {
		if w.shape(tc, k, kObject, wantObject) {
			f := tc[k].(map[string]any)
			w.push(k)
			w.keys(f, choiceNameKeys)
			w.str(f, "name")
			w.pop()
		}
	}
	w.pop()
}

// chatMessage visits a chat message of any role: its content, refusal,
// name, reasoning, and tool and function calls. Assistant audio is recorded
// as unscanned.
func (w *walker) chatMessage(msg map[string]any) {
	if msg == nil {
		return
	}
	w.keys(msg, messageKeys)
	w.shape(msg, "role", kString, wantString)
	w.content(msg, "content")
	w.str(msg, "refusal")
	w.str(msg, "name")
	w.str(msg, "reasoning_content")
	if w.shape(msg, "tool_calls", kArray, "an array of tool calls") {
		w.push("tool_calls")
		for i, v := range msg["tool_calls"].([]any) {
			w.pushIndex(i)
			tc := w.elem(v, "a tool call object")
			if tc != nil {
				w.keys(tc, toolCallKeys)
				w.shape(tc, "type", kString, wantString)
				if w.shape(tc, "function", kObject, wantObject) {
					w.push("function")
					w.nameArgs(tc["function"].(map[string]any), nameArgsKeys, "arguments")
					w.pop()
				} else if w.shape(tc, "custom", kObject, wantObject) {
					w.push("custom")
					w.nameArgs(tc["custom"].(map[string]any), customCallKeys, "input")
					w.pop()
				}
			}
			w.pop()
		}
		w.pop()
	}
	if w.shape(msg, "function_call", kObject, wantObject) {
		w.push("function_call")
		w.nameArgs(msg["function_call"].(map[string]any), nameArgsKeys, "arguments")
		w.pop()
	}
	if a, ok := msg["audio"]; ok && a != nil {
		w.push("audio")
		w.skip("audio")
		w.pop()
	}
}

// nameArgs visits a call's name and its arguments (or input).
func (w *walker) nameArgs(f map[string]any, known []string, args string) {
	w.keys(f, known)
	w.str(f, "name")
	w.str(f, args)
}

// content visits a field that is a string or an array of content parts.
// The text parts of one array form one group: the model reads them as one
// text. Any other type but null is refused.
func (w *walker) content(m map[string]any, key string) {
	if m == nil || !w.shape(m, key, kString|kArray, wantContent) {
		return
	}
	switch v := m[key].(type) {
	case string:
		w.next()
		w.textAt(m, key, v)
	case []any:
		w.push(key)
		w.parts(v)
		w.pop()
	}
}

// parts visits an array of content parts as one group.
func (w *walker) parts(ps []any) {
	w.next()
	for i, p := range ps {
		w.pushIndex(i)
		w.part(w.elem(p, wantPart))
		w.pop()
	}
}

// textParts are the content part types whose "text" the model reads.
var textParts = map[string]bool{"text": true, "input_text": true, "output_text": true, "summary_text": true, "reasoning_text": true}

// part visits one content part in the current group: the text of text
// parts, the refusal of refusals. Any other part (an image, audio, a file,
// a kind pamctl does not know) is recorded as unscanned.
func (w *walker) part(pm map[string]any) {
	if pm == nil {
		return
	}
	w.keys(pm, partKeys)
	w.shape(pm, "type", kString, wantString)
	typ, _ := pm["type"].(string)
	if typ != "" && !textParts[typ] && typ != "refusal" {
		if !safeKey([]byte(typ)) {
			typ = "unknown type" // the client's own type name is not echoed
		}
		w.skip(typ)
		return
	}
	if w.shape(pm, "text", kString, wantString) {
		pm["text"] = w.text(pm["text"].(string))
	}
	if w.shape(pm, "refusal", kString, wantString) {
		pm["refusal"] = w.text(pm["refusal"].(string))
	}
}

// items visits Responses input items (also an array "instructions").
func (w *walker) items(items []any) {
	for i, v := range items {
		w.pushIndex(i)
		item := w.elem(v, wantItem)
		if item == nil {
			w.pop()
			continue
		}
		w.shape(item, "type", kString, wantString)
		typ, _ := item["type"].(string)
		switch typ {
		case "", "message":
			w.keys(item, itemKeys)
			w.shape(item, "role", kString, wantString)
			w.content(item, "content")
		case "item_reference":
			w.skip("item_reference")
		default:
			// Tool calls and their outputs (function, custom, computer,
			// code interpreter, shell, MCP, file and web search, reasoning,
			// and any later kind): every string but identifiers.
			w.keys(item, []string{"type"})
			w.any(item)
		}
		w.pop()
	}
}

// idKeys hold identifiers and enumerations, not text a model reads as
// prose; opaqueKeys hold data pamctl cannot read as text.
var (
	idKeys     = map[string]bool{"id": true, "type": true, "status": true, "call_id": true, "role": true, "item_id": true, "approval_request_id": true, "detail": true, "mime_type": true}
	opaqueKeys = map[string]bool{"encrypted_content": true, "image_url": true, "file_data": true, "file_id": true, "file_url": true, "result": true, "data": true, "audio": true, "input_audio": true}
)

// any visits every string in m except identifiers; opaque fields are
// recorded as unscanned. Arrays of content parts under "content", "output" and
// "summary" are visited as parts (partsLike), any other array string by
// string.
func (w *walker) any(m map[string]any) {
	for _, k := range sortedKeys(m) {
		v := m[k]
		if v == nil || idKeys[k] {
			continue
		}
		w.push(k)
		switch {
		case opaqueKeys[k]:
			if s, ok := v.(string); !ok || s != "" {
				w.skip(k)
			}
		default:
			switch x := v.(type) {
			case string:
				w.next()
				m[k] = w.text(x)
			case map[string]any:
				w.any(x)
			case []any:
				if (k == "content" || k == "output" || k == "summary") && partsLike(x) {
					w.parts(x)
					break
				}
				for i, e := range x {
					w.pushIndex(i)
					switch y := e.(type) {
					case string:
						w.next()
						x[i] = w.text(y)
					case map[string]any:
						w.any(y)
					}
					w.pop()
				}
			}
		}
		w.pop()
	}
}

// partsLike reports whether every element of an array is an object shaped
// as a content part (a "type", "text" or "refusal" key). Other arrays
// under "content", "output" or "summary" (a shell_call_output's output:
// [{"stdout":…,"stderr":…,"outcome":…}]) are visited string by string:
// read as parts, their text would be neither scanned nor recorded.
func partsLike(x []any) bool {
	for _, e := range x {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		_, t := m["type"]
		_, tx := m["text"]
		_, r := m["refusal"]
		if !t && !tx && !r {
			return false
		}
	}
	return true
}

// tools visits the tool definitions under root[key] (chat "tools" and
// "functions", Responses "tools"): names, descriptions, parameter schemas
// and custom tool grammars of function and custom tools, and the server
// description of MCP tools. Other hosted tools (web search, file search,
// ...) hold configuration, not prompt text.
func (w *walker) tools(root map[string]any, key string) {
	if !w.shape(root, key, kArray, "an array of tools") {
		return
	}
	w.push(key)
	for i, v := range root[key].([]any) {
		w.pushIndex(i)
		t := w.elem(v, wantTool)
		if t == nil {
			w.pop()
			continue
		}
		w.keys(t, toolKeys)
		w.shape(t, "type", kString, wantString)
		typ, _ := t["type"].(string)
		switch {
		case typ == "function" && t["function"] != nil: // chat
			if w.shape(t, "function", kObject, wantObject) {
				w.push("function")
				w.definition(t["function"].(map[string]any))
				w.pop()
			}
		case typ == "custom" && t["custom"] != nil: // chat
			if w.shape(t, "custom", kObject, wantObject) {
				w.push("custom")
				w.definition(t["custom"].(map[string]any))
				w.pop()
			}
		case typ == "", typ == "function", typ == "custom": // Responses, chat "functions"
			w.definition(t)
		case typ == "mcp":
			w.str(t, "server_description")
		}
		w.pop()
	}
	w.pop()
}

// definition visits a function or custom tool: name, description, the
// parameter schema and a custom tool's grammar (chat nests it under
// format.grammar, Responses puts it in format).
func (w *walker) definition(d map[string]any) {
	w.keys(d, definitionKeys)
	w.str(d, "name")
	w.str(d, "description")
	if w.shape(d, "parameters", kObject, "a JSON schema object") {
		w.push("parameters")
		w.schema(d["parameters"].(map[string]any))
		w.pop()
	}
	if w.shape(d, "format", kObject, wantObject) {
		f := d["format"].(map[string]any)
		w.push("format")
		w.keys(f, grammarKeys)
		w.str(f, "definition")
		if w.shape(f, "grammar", kObject, wantObject) {
			g := f["grammar"].(map[string]any)
			w.push("grammar")
			w.keys(g, grammarDefKeys)
			w.str(g, "definition")
			w.pop()
		}
		w.pop()
	}
}

// schemaFormat visits a structured-output format: name, description and
// schema.
func (w *walker) schemaFormat(f map[string]any) {
	w.keys(f, schemaFormatKeys)
	w.str(f, "name")
	w.str(f, "description")
	if w.shape(f, "schema", kObject, "a JSON schema object") {
		w.push("schema")
		w.schema(f["schema"].(map[string]any))
		w.pop()
	}
}

// schemaMaps are the JSON Schema keywords whose keys name properties or
// definitions (text the model reads); the keys of other objects are
// keywords.
var schemaMaps = map[string]bool{"properties": true, "patternProperties": true, "$defs": true, "definitions": true, "dependentSchemas": true}

// schema visits a JSON schema: every string value but "type" and "$ref",
// and the property names. A renamed property keeps its value.
func (w *walker) schema(m map[string]any) {
	for _, k := range sortedKeys(m) {
		v := m[k]
		if k == "type" || k == "$ref" {
			continue
		}
		w.push(k)
		switch x := v.(type) {
		case string:
			w.next()
			m[k] = w.text(x)
		case map[string]any:
			if schemaMaps[k] {
				w.names(x)
			} else {
				w.schema(x)
			}
		case []any:
			for i, e := range x {
				w.pushIndex(i)
				switch y := e.(type) {
				case string:
					w.next()
					x[i] = w.text(y)
				case map[string]any:
					w.schema(y)
				}
				w.pop()
			}
		}
		w.pop()
	}
}

// names visits the property names of a schema map and their schemas.
func (w *walker) names(m map[string]any) {
	for _, k := range sortedKeys(m) {
		v := m[k]
		w.next()
		nk := w.text(k)
		w.push(nk)
		if nk != k {
			if _, taken := m[nk]; taken {
				w.keyErr = true
			} else {
				delete(m, k)
				m[nk] = v
			}
		}
		if s, ok := v.(map[string]any); ok {
			w.schema(s)
		}
		w.pop()
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// field is one text field of a request and its group; join (the fast
// path's mark, before groups are numbered) puts it in the group of the
// field before it.
type field struct {
	s    string
	g    int
	join bool
}

// joinGroups joins texts as the model reads them: the texts of a group
// back to back, groups on lines of their own; empty texts add nothing.
func joinGroups(fields []field) string {
	n, nonEmpty, one := 0, 0, ""
	for _, f := range fields {
		if f.s != "" {
			n += len(f.s) + 1
			nonEmpty++
			one = f.s
		}
	}
	if nonEmpty <= 1 {
		return one
	}
	var b strings.Builder
	b.Grow(n)
	last := -1
	for _, f := range fields {
		if f.s == "" {
			continue
		}
		if b.Len() > 0 && f.g != last {
			b.WriteByte('\n')
		}
		b.WriteString(f.s)
		last = f.g
	}
	return b.String()
}

// rewriteTexts applies f once per group, to the group's texts back to back,
// and splits the result over the group's texts again: the text before the
// first change and after the last stays where it was, the changed middle
// goes into the first text it touches, so the texts still join to f's
// answer. It returns the new texts and whether anything changed.
func rewriteTexts(fields []field, f func(string) string) ([]string, bool) {
	var outs []string // allocated at the first change
	set := func(i int, s string) {
		if outs == nil {
			outs = make([]string, len(fields))
			for k := range fields {
				outs[k] = fields[k].s
			}
		}
		outs[i] = s
	}
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].g == fields[i].g {
			j++
		}
		if j == i+1 {
			if out := f(fields[i].s); out != fields[i].s {
				set(i, out)
			}
			i = j
			continue
		}
		pieces := make([]string, j-i)
		for k := range pieces {
			pieces[k] = fields[i+k].s
		}
		in := strings.Join(pieces, "")
		if out := f(in); out != in {
			set(i, fields[i].s) // allocate outs
			spread(pieces, outs[i:j], in, out)
		}
		i = j
	}
	return outs, outs != nil
}

// spread writes out over outs, texts being the pieces of in.
func spread(texts, outs []string, in, out string) {
	// The common prefix and suffix, on rune boundaries.
	p := 0
	for p < len(in) && p < len(out) && in[p] == out[p] {
		p++
	}
	for p > 0 && p < len(in) && !utf8.RuneStart(in[p]) {
		p--
	}
	s := 0
	for s < len(in)-p && s < len(out)-p && in[len(in)-1-s] == out[len(out)-1-s] {
		s++
	}
	for s > 0 && s < len(in) && !utf8.RuneStart(in[len(in)-s]) {
		s--
	}
	mid := out[p : len(out)-s]
	end := len(in) - s // the changed part of in is [p, end)
	at := 0
	placed := false
	for k, t := range texts {
		lo, hi := at, at+len(t)
		at = hi
		switch {
		case hi <= p && !(hi == p && !placed && k == len(texts)-1):
			outs[k] = t // before the change
		case lo >= end && placed:
			outs[k] = t // after the change
		default:
			var b strings.Builder
			if lo < p {
				b.WriteString(t[:p-lo])
			}
			if !placed {
				b.WriteString(mid)
				placed = true
			}
			if hi > end {
				b.WriteString(t[max(end-lo, 0):])
			}
			outs[k] = b.String()
		}
	}
}
