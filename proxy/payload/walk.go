package payload

import (
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
	keyErr    bool // a rewrite renamed a schema property onto another
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

// str visits m[key] when it is a string, as a group of its own.
func (w *walker) str(m map[string]any, key string) {
	if m == nil {
		return
	}
	if s, ok := m[key].(string); ok {
		w.next()
		m[key] = w.text(s)
	}
}

// walkRequest visits every model-visible text field of a request body.
func walkRequest(ep string, root map[string]any, w *walker) {
	switch ep {
	case EndpointChat:
		w.push("messages")
		for i, v := range arr(root["messages"]) {
			w.pushIndex(i)
			w.chatMessage(obj(v))
			w.pop()
		}
		w.pop()
		w.push("prediction")
		w.content(obj(root["prediction"]), "content")
		w.pop()
		w.tools(root, "tools")
		w.tools(root, "functions")
		if rf := obj(root["response_format"]); rf != nil {
			w.push("response_format")
			w.push("json_schema")
			w.schemaFormat(obj(rf["json_schema"]))
			w.pop()
			w.pop()
		}
	case EndpointResponses:
		w.push("instructions")
		if _, ok := root["instructions"].(string); ok {
			w.str(root, "instructions")
		} else {
			w.items(arr(root["instructions"]))
		}
		w.pop()
		w.push("input")
		if _, ok := root["input"].(string); ok {
			w.str(root, "input")
		} else {
			w.items(arr(root["input"]))
		}
		w.pop()
		if p := obj(root["prompt"]); p != nil {
			w.push("prompt")
			if id, ok := p["id"].(string); ok && id != "" {
				w.push("id")
				w.skip("stored prompt")
				w.pop()
			}
			if vars := obj(p["variables"]); vars != nil {
				w.push("variables")
				for _, k := range sortedKeys(vars) {
					w.push(k)
					if s, ok := vars[k].(string); ok {
						w.next()
						vars[k] = w.text(s)
					} else {
						w.next()
						w.part(obj(vars[k]))
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
		if t := obj(root["text"]); t != nil {
			w.push("text")
			w.push("format")
			w.schemaFormat(obj(t["format"]))
			w.pop()
			w.pop()
		}
	case EndpointEmbeddings:
		w.push("input")
		switch in := root["input"].(type) {
		case string:
			w.str(root, "input")
		case []any:
			for i, v := range in {
				w.pushIndex(i)
				switch x := v.(type) {
				case string:
					w.next()
					in[i] = w.text(x)
				default:
					w.skip("token ids")
				}
				w.pop()
			}
		}
		w.pop()
	}
}

// chatMessage visits a chat message of any role: its content, refusal,
// name, and tool and function calls. Assistant audio is recorded as
// unscanned.
func (w *walker) chatMessage(msg map[string]any) {
	if msg == nil {
		return
	}
	w.push("content")
	w.content(msg, "content")
	w.pop()
	w.push("refusal")
	w.str(msg, "refusal")
	w.pop()
	w.push("name")
	w.str(msg, "name")
	w.pop()
	w.push("tool_calls")
	for i, tc := range arr(msg["tool_calls"]) {
		w.pushIndex(i)
		if f := obj(obj(tc)["function"]); f != nil {
			w.push("function")
			w.str(f, "name")
			w.str(f, "arguments")
			w.pop()
		} else if c := obj(obj(tc)["custom"]); c != nil {
			w.push("custom")
			w.str(c, "name")
			w.str(c, "input")
			w.pop()
		}
		w.pop()
	}
	w.pop()
	if f := obj(msg["function_call"]); f != nil {
		w.push("function_call")
		w.str(f, "name")
		w.str(f, "arguments")
		w.pop()
	}
	if a, ok := msg["audio"]; ok && a != nil {
		w.push("audio")
		w.skip("audio")
		w.pop()
	}
}

// content visits a field that is a string or an array of content parts.
// The text parts of one array form one group: the model reads them as one
// text.
func (w *walker) content(m map[string]any, key string) {
	if m == nil {
		return
	}
	switch v := m[key].(type) {
	case string:
		w.next()
		m[key] = w.text(v)
	case []any:
		w.parts(v)
	}
}

// parts visits an array of content parts as one group.
func (w *walker) parts(ps []any) {
	w.next()
	for i, p := range ps {
		w.pushIndex(i)
		w.part(obj(p))
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
	typ, _ := pm["type"].(string)
	if typ != "" && !textParts[typ] && typ != "refusal" {
		if !safeKey([]byte(typ)) {
			typ = "unknown type" // the client's own type name is not echoed
		}
		w.skip(typ)
		return
	}
	if s, ok := pm["text"].(string); ok {
		pm["text"] = w.text(s)
	}
	if s, ok := pm["refusal"].(string); ok {
		pm["refusal"] = w.text(s)
	}
}

// items visits Responses input items (also an array "instructions").
func (w *walker) items(items []any) {
	for i, v := range items {
		item := obj(v)
		if item == nil {
			continue
		}
		w.pushIndex(i)
		typ, _ := item["type"].(string)
		switch typ {
		case "", "message":
			w.push("content")
			w.content(item, "content")
			w.pop()
		case "item_reference":
			w.skip("item_reference")
		default:
			// Tool calls and their outputs (function, custom, computer,
			// code interpreter, shell, MCP, file and web search, reasoning,
			// and any later kind): every string but identifiers.
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
// "summary" are visited as parts.
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
				if k == "content" || k == "output" || k == "summary" {
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

// tools visits the function and custom tool definitions under root[key]
// (chat "tools" and "functions", Responses "tools"): names, descriptions,
// parameter schemas and custom tool grammars. Hosted tools (web search,
// file search, MCP servers, ...) hold configuration, not prompt text.
func (w *walker) tools(root map[string]any, key string) {
	list := arr(root[key])
	if list == nil {
		return
	}
	w.push(key)
	for i, v := range list {
		t := obj(v)
		if t == nil {
			continue
		}
		w.pushIndex(i)
		typ, _ := t["type"].(string)
		switch {
		case typ == "function" && obj(t["function"]) != nil: // chat
			w.push("function")
			w.definition(obj(t["function"]))
			w.pop()
		case typ == "custom" && obj(t["custom"]) != nil: // chat
			w.push("custom")
			w.definition(obj(t["custom"]))
			w.pop()
		case typ == "", typ == "function", typ == "custom": // Responses, chat "functions"
			w.definition(t)
		}
		w.pop()
	}
	w.pop()
}

// definition visits a function or custom tool: name, description, the
// parameter schema and a custom tool's grammar.
func (w *walker) definition(d map[string]any) {
	w.push("name")
	w.str(d, "name")
	w.pop()
	w.push("description")
	w.str(d, "description")
	w.pop()
	if p, ok := d["parameters"].(map[string]any); ok {
		w.push("parameters")
		w.schema(p)
		w.pop()
	}
	if f := obj(d["format"]); f != nil {
		w.push("format")
		w.str(f, "definition")
		w.pop()
	}
}

// schemaFormat visits a structured-output format: name, description and
// schema.
func (w *walker) schemaFormat(f map[string]any) {
	if f == nil {
		return
	}
	w.str(f, "name")
	w.str(f, "description")
	if s, ok := f["schema"].(map[string]any); ok {
		w.push("schema")
		w.schema(s)
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
