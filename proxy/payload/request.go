// Package payload owns the OpenAI request and response shapes the proxy reads
// and rewrites: extracting the model, stream flag and prompt text of
// /v1/chat/completions, /v1/responses and /v1/embeddings requests; rewriting
// every prompt text field (redaction) while leaving other fields untouched;
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

	"github.com/pamctl/pamctl/proxy/mask"
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
	// Text is every prompt text field (messages, instructions, inputs, tool
	// outputs and arguments), in order, joined by "\n".
	Text string
	// Raw is the body as received.
	Raw []byte

	root map[string]any // the decoded body; nil when the fast path read it
	// The fast path (chat requests): every prompt text field in
	// walkRequest's order, and the top-level keys.
	scanned bool
	texts   []string
	keys    []string
}

// ParseRequest parses body, once, for endpoint. A body that is not JSON
// fails with ErrInvalidJSON, JSON that decoders may read differently with
// an *AmbiguityError (see Validate): pamctl never forwards a body whose
// meaning upstream could differ from what it checked.
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
			r := &Request{Endpoint: ep, Raw: body, Model: sc.model, Stream: sc.stream, scanned: true, texts: sc.texts, keys: sc.keys}
			var parts []string
			for _, t := range sc.texts {
				if t != "" {
					parts = append(parts, t)
				}
			}
			r.Text = strings.Join(parts, "\n")
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
	var parts []string
	walkRequest(ep, root, func(s string) string {
		if s != "" {
			parts = append(parts, s)
		}
		return s
	})
	r.Text = strings.Join(parts, "\n")
	return r, nil
}

// Rewrite returns the body with f applied to every prompt text field. Other
// fields are kept; when f changes nothing, Raw itself is returned.
func (r *Request) Rewrite(f func(string) string) ([]byte, error) {
	if r.scanned {
		return r.rewriteScanned(f)
	}
	root := deepCopy(r.root).(map[string]any)
	changed := false
	walkRequest(r.Endpoint, root, func(s string) string {
		t := f(s)
		changed = changed || t != s
		return t
	})
	if !changed {
		return r.Raw, nil
	}
	return encode(root)
}

// rewriteScanned is Rewrite for a body the fast path read: f runs once per
// field, in walkRequest's order; only when it changes something is the
// body decoded (fresh, so Raw's meaning is untouched) and re-encoded.
func (r *Request) rewriteScanned(f func(string) string) ([]byte, error) {
	outs := make([]string, len(r.texts))
	changed := false
	for i, t := range r.texts {
		outs[i] = f(t)
		changed = changed || outs[i] != t
	}
	if !changed {
		return r.Raw, nil
	}
	root, err := decodeObject(r.Raw)
	if err != nil {
		return nil, err
	}
	k, diverged := 0, false
	walkRequest(r.Endpoint, root, func(s string) string {
		if k >= len(outs) || s != r.texts[k] {
			diverged = true
			return s
		}
		k++
		return outs[k-1]
	})
	if diverged || k != len(outs) {
		// The scan and the decoder disagree about the prompt fields; refuse
		// rather than forward a body whose rewrite is uncertain.
		return nil, errScanMismatch
	}
	return encode(root)
}

var errScanMismatch = errors.New("payload: prompt fields could not be matched for rewriting")

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

// Mask rewrites the body with m and returns the findings.
func (r *Request) Mask(m *mask.Masker) ([]byte, mask.Counts, error) {
	counts := mask.Counts{}
	if !m.Enabled() {
		return r.Raw, counts, nil
	}
	b, err := r.Rewrite(func(s string) string {
		out, c := m.Mask(s)
		counts.Add(c)
		return out
	})
	return b, counts, err
}

// walkRequest calls f on every prompt text field of a request and stores
// what f returns.
func walkRequest(ep string, root map[string]any, f func(string) string) {
	switch ep {
	case EndpointChat:
		for _, v := range arr(root["messages"]) {
			msg, ok := v.(map[string]any)
			if !ok {
				continue
			}
			content(msg, "content", f)
			str(msg, "refusal", f)
			for _, tc := range arr(msg["tool_calls"]) {
				if tc, ok := tc.(map[string]any); ok {
					str(obj(tc["function"]), "arguments", f)
				}
			}
			str(obj(msg["function_call"]), "arguments", f)
		}
		content(obj(root["prediction"]), "content", f)
	case EndpointResponses:
		str(root, "instructions", f)
		if _, ok := root["input"].(string); ok {
			str(root, "input", f)
			return
		}
		for _, v := range arr(root["input"]) {
			item, ok := v.(map[string]any)
			if !ok {
				continue
			}
			typ, _ := item["type"].(string)
			switch typ {
			case "", "message":
				content(item, "content", f)
			case "function_call":
				str(item, "arguments", f)
			case "function_call_output", "custom_tool_call_output", "local_shell_call_output", "mcp_call":
				content(item, "output", f)
			case "custom_tool_call":
				str(item, "input", f)
			case "reasoning":
				parts(arr(item["summary"]), f)
				parts(arr(item["content"]), f)
			}
		}
	case EndpointEmbeddings:
		if _, ok := root["input"].(string); ok {
			str(root, "input", f)
			return
		}
		in := arr(root["input"])
		for i, v := range in {
			if s, ok := v.(string); ok {
				in[i] = f(s)
			}
		}
	}
}

// content handles a field that is a string or an array of content parts.
func content(m map[string]any, key string, f func(string) string) {
	if m == nil {
		return
	}
	switch v := m[key].(type) {
	case string:
		m[key] = f(v)
	case []any:
		parts(v, f)
	}
}

// parts handles content parts: {"type":"text"|"input_text"|"output_text"|
// "summary_text"|"reasoning_text", "text":...} and {"type":"refusal",
// "refusal":...}. Images, audio and files are left alone.
func parts(ps []any, f func(string) string) {
	for _, p := range ps {
		if pm, ok := p.(map[string]any); ok {
			str(pm, "text", f)
			str(pm, "refusal", f)
		}
	}
}

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

func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var root map[string]any
	if err := d.Decode(&root); err != nil || root == nil {
		return nil, ErrInvalidJSON
	}
	if len(bytes.TrimSpace(b[d.InputOffset():])) > 0 {
		return nil, ErrInvalidJSON // trailing data
	}
	return root, nil
}

func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, fmt.Errorf("payload: encode: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
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
