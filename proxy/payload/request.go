// Package payload owns the OpenAI request and response shapes the proxy reads
// and rewrites: extracting the model, stream flag and prompt text of
// /v1/chat/completions, /v1/responses and /v1/embeddings requests; rewriting
// every prompt text field (redaction) while leaving other fields untouched;
// masking every text field a client reads in plain and streamed (SSE)
// responses; and reading token usage and a short masked summary for the
// audit trail.
//
// It is pure apart from CopyStream's reading and writing: no HTTP, no
// policy. Bodies are decoded with json.Number, so numbers and unknown fields
// survive a rewrite; rewritten objects have their keys sorted.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"pamctl/proxy/mask"
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

	root map[string]any
}

// ParseRequest parses body, once, for endpoint.
func ParseRequest(endpoint string, body []byte) (*Request, error) {
	ep, err := normalize(endpoint)
	if err != nil {
		return nil, err
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
