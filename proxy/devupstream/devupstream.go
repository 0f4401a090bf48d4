// Package devupstream owns pamctl's built-in OpenAI-compatible mock upstream.
//
// It answers POST /v1/chat/completions, POST /v1/responses (both plain and
// streamed as Server-Sent Events), POST /v1/embeddings, GET /v1/models and
// GET /v1/models/{id} in OpenAI's wire format, so the official SDKs parse its
// answers unchanged. It never calls a real model and says so: every generated
// text starts with [Prefix] and every answer, errors included, carries the
// header X-Pamctl-Mock: true.
//
// It serves three users: `pamctl serve --dev` when no provider key is vaulted
// (a newcomer can try the whole flow without an OpenAI key), the end-to-end load
// benchmark (which wraps [New] in its own main and tunes [Options] for latency
// and stream length), and tests. With the default reply it is deterministic
// apart from ids and timestamps: the same request always yields the same
// text, token counts and embeddings.
package devupstream

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Prefix starts every text the mock generates, so nobody mistakes it for a model.
const Prefix = "[pamctl mock upstream]"

// MockHeader is set to "true" on every response the mock writes.
const MockHeader = "X-Pamctl-Mock"

// MaxBodyBytes bounds a request body; larger bodies get 413 request_too_large.
const MaxBodyBytes = 8 << 20

// DefaultDeltas is the number of streamed content deltas when Options.Deltas is 0.
const DefaultDeltas = 8

// Options tunes the mock. The zero value is ready to use.
type Options struct {
	// Latency is waited before answering (time to the first byte), for load
	// benchmarks. Default 0. A client that goes away during the wait ends it.
	// Refusals (401, 400, 404, 413) are not delayed.
	Latency time.Duration
	// Deltas is the number of content deltas a stream carries (default 8). A
	// text shorter than Deltas runes is streamed one rune per delta.
	Deltas int
	// DeltaGap is the pause between two deltas. Default 0.
	DeltaGap time.Duration
	// RequireKey, when set, makes every request without the header
	// "Authorization: Bearer "+RequireKey fail with 401 invalid_api_key.
	RequireKey string
	// Reply, when set, returns the assistant text for the last user message.
	// It is called concurrently. [Prefix] is prepended when the text does not
	// already start with it. Default: a short summary of the prompt.
	Reply func(prompt string) string
}

// model is one entry of GET /v1/models.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// models is what GET /v1/models lists; created times are the providers' own.
var models = []model{
	{ID: "gpt-4o", Object: "model", Created: 1715367049, OwnedBy: "system"},
	{ID: "gpt-4o-mini", Object: "model", Created: 1721172741, OwnedBy: "system"},
	{ID: "gpt-4.1", Object: "model", Created: 1744316542, OwnedBy: "system"},
	{ID: "text-embedding-3-small", Object: "model", Created: 1705948997, OwnedBy: "system"},
	{ID: "o4-mini", Object: "model", Created: 1744225351, OwnedBy: "system"},
}

// ModelIDs returns the ids GET /v1/models lists, in that order.
func ModelIDs() []string {
	ids := make([]string, len(models))
	for i, m := range models {
		ids[i] = m.ID
	}
	return ids
}

// New returns the mock upstream as an http.Handler serving paths under /v1/.
func New(o Options) http.Handler {
	if o.Deltas <= 0 {
		o.Deltas = DefaultDeltas
	}
	if o.Latency < 0 {
		o.Latency = 0
	}
	if o.DeltaGap < 0 {
		o.DeltaGap = 0
	}
	return &handler{opts: o}
}

type handler struct {
	opts Options
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set(MockHeader, "true")
	hdr.Set("X-Request-Id", "req_"+strings.ToLower(rand.Text()))

	if h.opts.RequireKey != "" && !h.authorized(r) {
		writeError(w, &apiError{
			Status:  http.StatusUnauthorized,
			Type:    "invalid_request_error",
			Code:    "invalid_api_key",
			Message: "Incorrect or missing API key for the pamctl mock upstream: send Authorization: Bearer <key> with the key it was started with.",
		})
		return
	}

	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && path == "/v1/chat/completions":
		h.serveJSON(w, r, h.chatCompletions)
	case r.Method == http.MethodPost && path == "/v1/responses":
		h.serveJSON(w, r, h.responses)
	case r.Method == http.MethodPost && path == "/v1/embeddings":
		h.serveJSON(w, r, h.embeddings)
	case r.Method == http.MethodGet && path == "/v1/models":
		if h.wait(r) {
			writeJSON(w, http.StatusOK, struct {
				Object string  `json:"object"`
				Data   []model `json:"data"`
			}{"list", models})
		}
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v1/models/"):
		id := strings.TrimPrefix(path, "/v1/models/")
		i := slices.IndexFunc(models, func(m model) bool { return m.ID == id })
		if i < 0 {
			writeError(w, &apiError{
				Status:  http.StatusNotFound,
				Type:    "invalid_request_error",
				Code:    "model_not_found",
				Param:   "model",
				Message: "The model '" + id + "' does not exist in the pamctl mock upstream.",
			})
			return
		}
		if h.wait(r) {
			writeJSON(w, http.StatusOK, models[i])
		}
	default:
		writeError(w, &apiError{
			Status:  http.StatusNotFound,
			Type:    "invalid_request_error",
			Code:    "unknown_url",
			Message: "Invalid URL (" + r.Method + " " + path + "): the pamctl mock upstream serves POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings and GET /v1/models.",
		})
	}
}

// authorized reports whether r carries the required bearer key, compared in
// constant time.
func (h *handler) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(h.opts.RequireKey)) == 1
}

// serveJSON reads the size-limited body, checks it is a JSON object, waits
// Options.Latency and hands the body to serve. serve returns an *apiError
// for requests it refuses before writing anything.
func (h *handler) serveJSON(w http.ResponseWriter, r *http.Request, serve func(http.ResponseWriter, *http.Request, []byte) *apiError) {
	body, aerr := readBody(w, r)
	if aerr == nil {
		if !h.wait(r) {
			return
		}
		aerr = serve(w, r, body)
	}
	if aerr != nil {
		writeError(w, aerr)
	}
}

// wait sleeps Options.Latency and reports whether the client is still there.
func (h *handler) wait(r *http.Request) bool {
	if h.opts.Latency > 0 {
		t := time.NewTimer(h.opts.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return false
		}
	}
	return r.Context().Err() == nil
}

// pause sleeps Options.DeltaGap between two deltas and reports whether the
// client is still there.
func (h *handler) pause(r *http.Request) bool {
	if h.opts.DeltaGap > 0 {
		t := time.NewTimer(h.opts.DeltaGap)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return false
		}
	}
	return r.Context().Err() == nil
}

// readBody reads at most MaxBodyBytes and checks the body is one JSON object.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &apiError{
				Status:  http.StatusRequestEntityTooLarge,
				Type:    "invalid_request_error",
				Code:    "request_too_large",
				Message: "The request body is larger than the pamctl mock upstream's limit of 8 MiB.",
			}
		}
		return nil, &apiError{
			Status:  http.StatusBadRequest,
			Type:    "invalid_request_error",
			Code:    "invalid_body",
			Message: "Could not read the request body: " + err.Error(),
		}
	}
	if !json.Valid(body) {
		var err error
		if len(bytes.TrimSpace(body)) > 0 {
			err = json.Unmarshal(body, new(any)) // says where the syntax breaks
		}
		return nil, invalidJSON(err)
	}
	if trimmed := bytes.TrimSpace(body); trimmed[0] != '{' {
		return nil, invalidJSON(nil)
	}
	return body, nil
}

// decode unmarshals an already validated body into v.
func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return invalidJSON(err)
	}
	return nil
}

func invalidJSON(err error) *apiError {
	msg := "We could not parse the JSON body of your request: the pamctl mock upstream expects a JSON object."
	if err != nil {
		msg += " (" + err.Error() + ")"
	}
	return &apiError{
		Status:  http.StatusBadRequest,
		Type:    "invalid_request_error",
		Code:    "invalid_json",
		Message: msg,
	}
}

func missingParam(name string) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Type:    "invalid_request_error",
		Code:    "missing_required_parameter",
		Param:   name,
		Message: "Missing required parameter: '" + name + "'.",
	}
}

func invalidParam(name, why string) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Type:    "invalid_request_error",
		Code:    "invalid_value",
		Param:   name,
		Message: "Invalid value for '" + name + "': " + why,
	}
}

// newID returns an OpenAI-style identifier such as "chatcmpl-…" or "resp_…".
func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text())
}
