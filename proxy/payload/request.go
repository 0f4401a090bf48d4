// Package payload owns the OpenAI request and response shapes the proxy reads
// and rewrites: refusing request bodies JSON decoders may read differently
// (Validate); extracting the model, stream flag, every model-visible text
// field and a list of what cannot be read as text (walk.go) of
// /v1/chat/completions, /v1/responses and /v1/embeddings requests;
// rewriting those text fields (redaction, masking) while leaving other
// fields untouched;
// masking every text field a client reads in plain and streamed (SSE)
// responses; and reading token usage and a short masked summary for the
// audit trail.
//
// It is pure apart from the reading and writing of CopyStream and Relay: no
// HTTP, no policy. Bodies are decoded with json.Number, so numbers and
// unknown fields survive a rewrite; rewritten objects have their keys
// sorted. The usual chat request, answer and stream chunk skip that
// decoding: a strict scanner (scan.go) reads the few strings they need and
// hands anything unusual to the decoder, and a chunk whose deltas masking
// changed keeps its bytes but for those strings.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Endpoints understood by this package.
const (
	EndpointChat       = "/v1/chat/completions"
	EndpointResponses  = "/v1/responses"
	EndpointEmbeddings = "/v1/embeddings"
)

// Errors.
var (
	ErrUnsupportedEndpoint = errors.New("payload: unsupported endpoint")
	ErrInvalidJSON         = errors.New("payload: body is not a JSON object")
)

// normalize maps "/v1/chat/completions", "/chat/completions" (and a trailing
// slash) to the Endpoint constants.
func normalize(endpoint string) (string, error) {
	e := strings.TrimSuffix(endpoint, "/")
	if !strings.HasPrefix(e, "/v1/") {
		e = "/v1" + e
	}
	switch e {
	case EndpointChat, EndpointResponses, EndpointEmbeddings:
		return e, nil
	}
	return "", fmt.Errorf("%w: %s", ErrUnsupportedEndpoint, endpoint)
}

// Request is a parsed request body.
type Request struct {
	Endpoint string // one of the Endpoint constants
	Model    string
	Stream   bool
	// Text is every model-visible text field (messages of every role and
	// their names, content parts, tool calls and outputs, instructions,
	// inputs, tool and function definitions with their schemas, structured
	// output schemas, prompt variables), in order, as the model reads it:
	// the text parts of one content array back to back, other fields each
	// on a line of their own.
	Text string
	// Unscanned lists content the model sees but pamctl cannot read as
	// text, by JSON path and kind, e.g. "messages[1].content[0] (image_url)",
	// "input (token ids)", "previous_response_id (stored conversation)".
	// Empty when pamctl read everything.
	Unscanned []string
	// Raw is the body as received.
	Raw []byte

	root map[string]any // the decoded body; nil when the fast path read it
	// Every text field in walkRequest's order, "" included, with its
	// group (texts of one group are read back to back).
	fields []field
	// The fast path (chat requests) read the body; keys are its top-level
	// keys.
	scanned bool
	keys    []string
}

// ParseRequest parses body, once, for endpoint. A body that is not JSON
// fails with ErrInvalidJSON; JSON that decoders may read differently, or
// with a key that differs only in letter case from one read at its
// position, with an *AmbiguityError (see Validate and shape.go); a read
// field of a JSON type the walk does not read with a *ShapeError; a body
// of more than MaxValues values with ErrTooComplex: pamctl never forwards
// a body whose meaning upstream could differ from what it checked.
func ParseRequest(endpoint string, body []byte) (*Request, error) {
	ep, err := normalize(endpoint)
	if err != nil {
		return nil, err
	}
	if err := Validate(body); err != nil {
		return nil, err
	}
	if ep == EndpointChat && fastPaths {
		// The usual request: read the few fields needed without decoding
		// the body into maps. Anything unusual takes the path below.
		var sc reqScan
		if scanChatRequest(string(body), &sc) {
			r := &Request{Endpoint: ep, Raw: body, Model: sc.model, Stream: sc.stream, scanned: true, fields: sc.fields, keys: sc.keys}
			r.Text = joinGroups(r.fields)
			return r, nil
		}
	}
	root, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	r := &Request{Endpoint: ep, Raw: body, root: root}
	r.Model, _ = root["model"].(string)
	r.Stream, _ = root["stream"].(bool)
	w := &walker{visit: func(g int, s string) string {
		r.fields = append(r.fields, field{s: s, g: g})
		return s
	}}
	walkRequest(ep, root, w)
	if w.err != nil {
		return nil, w.err
	}
	r.Text = joinGroups(r.fields)
	r.Unscanned = w.unscanned
	return r, nil
}

// Rewrite returns the body with f applied to the model-visible text: once
// per field, or once per content array to its text parts back to back (a
// secret split over two parts is one text to f), the answer split over the
// parts again (see rewriteTexts). Other fields are kept; when f changes
// nothing, Raw itself is returned.
func (r *Request) Rewrite(f func(string) string) ([]byte, error) {
	outs, changed := rewriteTexts(r.fields, f)
	if !changed {
		return r.Raw, nil
	}
	var root map[string]any
	if r.scanned {
		// Decode fresh, so Raw's meaning is untouched.
		var err error
		if root, err = decodeObject(r.Raw); err != nil {
			return nil, err
		}
	} else {
		root = deepCopy(r.root).(map[string]any)
	}
	k, diverged := 0, false
	w := &walker{visit: func(_ int, s string) string {
		if k >= len(outs) || s != r.fields[k].s {
			diverged = true
			return s
		}
		k++
		return outs[k-1]
	}}
	walkRequest(r.Endpoint, root, w)
	if diverged || k != len(outs) {
		// The scan and the decoder disagree about the prompt fields; refuse
		// rather than forward a body whose rewrite is uncertain.
		return nil, errScanMismatch
	}
	if w.keyErr {
		return nil, errKeyClash
	}
	return encode(root)
}

var (
	errScanMismatch = errors.New("payload: prompt fields could not be matched for rewriting")
	errKeyClash     = errors.New("payload: a rewritten schema property name clashes with another property")
)

// AddField returns Raw with a new top-level member key: value in front of
// the others, when the fast path read the body and it has no member key;
// ok is false otherwise, and the caller edits the decoded body instead.
// value must be valid JSON.
func (r *Request) AddField(key string, value json.RawMessage) ([]byte, bool) {
	if !r.scanned || len(r.keys) == 0 {
		return nil, false
	}
	for _, k := range r.keys {
		if k == key {
			return nil, false
		}
	}
	i := bytes.IndexByte(r.Raw, '{')
	if i < 0 {
		return nil, false
	}
	b := make([]byte, 0, len(r.Raw)+len(key)+len(value)+4)
	b = append(b, r.Raw[:i+1]...)
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = append(b, value...)
	b = append(b, ',')
	return append(b, r.Raw[i+1:]...), true
}

// str replaces m[key] by f of it when it is a string (the response path's
// helper).
func str(m map[string]any, key string, f func(string) string) {
	if m == nil {
		return
	}
	if s, ok := m[key].(string); ok {
		m[key] = f(s)
	}
}

func arr(v any) []any {
	a, _ := v.([]any)
	return a
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}
