package payload

import (
	"errors"
	"strings"
)

// What the walker reads must be what the upstream reads. Two ways a body
// could make them differ are refused here, at every position where pamctl
// reads a key (the top level, messages, content parts, tool calls, tool
// definitions, Responses items, ...):
//
//   - a key that differs from one pamctl reads only in letter case
//     ("Content", "Messages", "te\u212at" with a Kelvin sign): decoders that
//     match keys case-insensitively (Go's encoding/json, used by Ollama and
//     other compatible servers) read it as the field pamctl skipped. It is
//     refused as ambiguous JSON. Keys of user data (JSON-schema property
//     names, prompt variables, metadata) are not compared: "Name" beside
//     nothing is a property called Name; two spellings in one object are
//     refused by Validate.
//   - a field pamctl reads holding a JSON type it does not read (messages
//     as an object, content as an object, a number where text goes): it
//     would be forwarded unread. It is refused as an unsupported shape.
//
// A null is read as an absent field wherever the field is optional, as
// every decoder reads it; a null array element is refused.

// ErrUnsupportedShape is matched (errors.Is) by every *ShapeError.
var ErrUnsupportedShape = errors.New("payload: unsupported shape")

// ShapeError says which field has a JSON type pamctl does not read, and
// which types it reads there. It never echoes the field's value.
type ShapeError struct {
	Path string // e.g. messages[0].content
	Got  string // the JSON type sent: object, array, string, number, boolean, null
	Want string // the types pamctl reads, e.g. "a string or an array of content parts"
}

func (e *ShapeError) Error() string {
	return "payload: unsupported shape at " + e.Path + ": got " + e.Got + ", pamctl reads " + e.Want
}

// Is makes errors.Is(err, ErrUnsupportedShape) true.
func (e *ShapeError) Is(target error) bool { return target == ErrUnsupportedShape }

// MaxValues bounds the structure of a request body: the number of JSON
// values (every object, array, member value, element and the root) it may
// hold. Parsing costs memory per value, not per byte; the bound keeps the
// working set of any request under about 50 MB (decoding and walking cost
// at most 768 bytes a value), where 700k schema property names in a 7.6 MB
// body cost 460 MB before. Ordinary requests hold a few thousand values; a
// long agent session with many tools, some tens of thousands.
const MaxValues = 1 << 16

// ErrTooComplex is returned for a body with more than MaxValues values.
var ErrTooComplex = errors.New("payload: the body holds more than 65536 JSON values")

// kinds of JSON values, as a set.
type kind uint8

const (
	kString kind = 1 << iota
	kNumber
	kBool
	kObject
	kArray
	kNull
)

func kindOf(v any) kind {
	switch v.(type) {
	case string:
		return kString
	case map[string]any:
		return kObject
	case []any:
		return kArray
	case bool:
		return kBool
	case nil:
		return kNull
	}
	return kNumber // json.Number
}

func kindName(k kind) string {
	switch k {
	case kString:
		return "a string"
	case kObject:
		return "an object"
	case kArray:
		return "an array"
	case kBool:
		return "a boolean"
	case kNull:
		return "null"
	}
	return "a number"
}

// Known keys per position. Each list holds every key the walker (or
// ParseRequest, or the proxy: stream_options) reads at that position.
var (
	chatTopKeys      = []string{"model", "stream", "stream_options", "messages", "prediction", "tools", "functions", "response_format", "tool_choice", "web_search_options", "system"}
	streamOptKeys    = []string{"include_usage"} // the proxy reads it, and adds it when absent
	responsesTopKeys = []string{"model", "stream", "instructions", "input", "prompt", "previous_response_id", "conversation", "tools", "text", "tool_choice", "system"}
	embeddingsKeys   = []string{"model", "input"}
	messageKeys      = []string{"role", "content", "refusal", "name", "reasoning_content", "tool_calls", "function_call", "audio"}
	toolCallKeys     = []string{"type", "function", "custom"}
	nameArgsKeys     = []string{"name", "arguments"}
	customCallKeys   = []string{"name", "input"}
	partKeys         = []string{"type", "text", "refusal"}
	predictionKeys   = []string{"type", "content"}
	toolKeys         = []string{"type", "function", "custom", "name", "description", "parameters", "format", "server_description"}
	definitionKeys   = []string{"name", "description", "parameters", "format"}
	grammarKeys      = []string{"type", "definition", "grammar"}
	grammarDefKeys   = []string{"definition"}
	responseFmtKeys  = []string{"type", "json_schema"}
	schemaFormatKeys = []string{"type", "name", "description", "schema"}
	textKeys         = []string{"format"}
	promptKeys       = []string{"id", "variables"}
	itemKeys         = []string{"type", "role", "content"}
	toolChoiceKeys   = []string{"type", "name", "function", "custom"}
	choiceNameKeys   = []string{"name"}
	webSearchKeys    = []string{"user_location"}
)

// clash returns the known key that key differs from only in letter case
// (Unicode simple folding, as encoding/json matches keys), or "".
func clash(key string, known []string) string {
	for _, k := range known {
		if len(key) <= 3*len(k) && key != k && strings.EqualFold(key, k) {
			return k
		}
	}
	return ""
}

func caseProblem(k string) string {
	return `the key differs only in letter case from "` + k + `", which pamctl reads here (decoders that match keys case-insensitively would read it as "` + k + `" unchecked); spell it "` + k + `"`
}

// fail keeps the walk's first error.
func (w *walker) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// keys refuses a key of m that differs only in letter case from one pamctl
// reads at this position.
func (w *walker) keys(m map[string]any, known []string) {
	if w.err != nil {
		return
	}
	for k := range m {
		if n := clash(k, known); n != "" {
			w.push(k)
			w.fail(&AmbiguityError{Path: renderPath(w.path), Problem: caseProblem(n)})
			w.pop()
			return
		}
	}
}

// shape refuses m[key] unless it is absent, null or of a kind in want;
// it reports whether the value may be read.
func (w *walker) shape(m map[string]any, key string, want kind, wantText string) bool {
	v, ok := m[key]
	if !ok || v == nil {
		return false
	}
	if kindOf(v)&want != 0 {
		return true
	}
	w.push(key)
	w.badShape(v, wantText)
	w.pop()
	return false
}

// badShape refuses the value at the current path.
func (w *walker) badShape(v any, wantText string) {
	w.fail(&ShapeError{Path: renderPath(w.path), Got: kindName(kindOf(v)), Want: wantText})
}

// elem returns an array element that must be an object, refusing any other.
func (w *walker) elem(v any, wantText string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		w.badShape(v, wantText)
	}
	return m
}

const (
	wantString  = "a string"
	wantContent = "a string or an array of content parts"
	wantObject  = "an object"
	wantArray   = "an array"
	wantPart    = "a content part object"
	wantMessage = "a message object"
	wantTool    = "a tool object"
	wantItem    = "an input item object"
)
