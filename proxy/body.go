package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"unsafe"

	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/scrub"
)

// parseRequest parses the model call's body, once, with package payload:
// model, stream flag and prompt text.
func (p *Proxy) parseRequest(c *call) *apiError {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return errBadRequest(CodeInvalidJSON, "", "The request body is empty; send a JSON object with at least \"model\".", nil)
	}
	req, err := payload.ParseRequest(c.path, c.body)
	if err != nil {
		if ae := refusedBody(err); ae != nil {
			return ae
		}
		return errBadRequest(CodeInvalidJSON, "", "The request body is not a valid JSON object. Send the same JSON you would send to OpenAI.", err)
	}
	if req.Model == "" {
		return errBadRequest(CodeMissingModel, "model", "The request names no model. Add \"model\", e.g. \"gpt-4o\".", nil)
	}
	if ae := checkModelName(req.Model); ae != nil {
		return ae
	}
	c.req = req
	c.clientModel = req.Model
	c.stream = req.Stream
	if c.kind == epChat && c.stream {
		c.stripUsage = !askedForUsage(c.body)
	}
	if c.kind == epChat {
		c.choices = requestedChoices(c.body)
	}
	return nil
}

// maxModelName bounds a model's name. It travels into the audit trail,
// held calls, metrics, logs and trace spans; no provider names a model
// with more than a few dozen bytes, and a client must not be able to make
// each of those carry megabytes.
const maxModelName = 256

// checkModelName refuses a model name longer than maxModelName.
func checkModelName(model string) *apiError {
	if len(model) <= maxModelName {
		return nil
	}
	return errBadRequest(CodeInvalidModel, "model", fmt.Sprintf(
		"The model name is %d bytes; pamctl takes names of at most %d. Send the model's name as the provider lists it.", len(model), maxModelName), nil)
}

// refusedBody answers a body Validate or ParseRequest refused for what it
// holds rather than for its syntax (nil for any other error): ambiguous
// JSON, a read field of a shape pamctl does not read, too many values.
func refusedBody(err error) *apiError {
	if err == nil {
		return nil
	}
	var amb *payload.AmbiguityError
	if errors.As(err, &amb) {
		return ambiguousBody(amb)
	}
	var shape *payload.ShapeError
	if errors.As(err, &shape) {
		return errBadRequest(CodeUnsupportedShape, "", fmt.Sprintf(
			"The request body has %s at %s, where pamctl reads only %s; pamctl refuses what it cannot check rather than forward it unread. "+
				"Send the field as the OpenAI API documents it.", shape.Got, shape.Path, shape.Want), err)
	}
	if errors.Is(err, payload.ErrTooComplex) {
		return errBadRequest(CodeRequestTooComplex, "", fmt.Sprintf(
			"The request body holds more than %d JSON values (objects, arrays, strings, numbers); pamctl refuses bodies this complex. "+
				"Split the request, or trim large schemas and token-id arrays.", payload.MaxValues), err)
	}
	return nil
}

// ambiguousBody refuses a body that JSON decoders may read differently: the
// upstream could act on a value (a model, a prompt) pamctl did not check.
func ambiguousBody(amb *payload.AmbiguityError) *apiError {
	where := "the body"
	if amb.Path != "" {
		where = amb.Path
	}
	return errBadRequest(CodeAmbiguousJSON, "", fmt.Sprintf(
		"The request body is ambiguous JSON at %s: %s. pamctl refuses JSON that decoders may read differently, "+
			"so the upstream acts only on what pamctl checked. Send plain JSON as an OpenAI SDK does.", where, amb.Problem), amb)
}

// askedForUsage reports whether a chat stream request sets
// stream_options.include_usage, as encoding/json reads it. Only
// stream_options is decoded: the body passed ParseRequest, which refuses a
// repeated key and any other spelling of one it reads (include_usage
// among them), so that member is the one a decoder of the whole body would
// read, and the one rewriteBody sets.
func askedForUsage(body []byte) bool {
	var opts *struct {
		IncludeUsage bool `json:"include_usage"`
	}
	walkMembers(unsafe.String(unsafe.SliceData(body), len(body)), func(name, v string) {
		if name == "stream_options" && json.Unmarshal([]byte(v), &opts) != nil {
			opts = nil
		}
	})
	return opts != nil && opts.IncludeUsage
}

// jsonProblem describes a JSON error without echoing the body.
func jsonProblem(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		if e.Field != "" {
			return fmt.Sprintf("field %q has the wrong type", e.Field)
		}
		return "expected a JSON object"
	}
	return "malformed"
}

// rewriteBody sets the model sent upstream and, for chat streams, asks for
// usage. It re-encodes only when something changes.
func rewriteBody(c *call) error {
	if c.model == c.clientModel && !c.stripUsage {
		return nil
	}
	if c.model == c.clientModel && c.req != nil && bytes.Equal(c.body, c.req.Raw) {
		// The usual stream request (no stream_options, body not rewritten
		// by a rule or masking): add the member without decoding the body.
		if b, ok := c.req.AddField("stream_options", json.RawMessage(`{"include_usage":true}`)); ok {
			c.body = b
			return nil
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(c.body, &m); err != nil {
		return err
	}
	if c.model != c.clientModel {
		b, _ := json.Marshal(c.model)
		m["model"] = b
	}
	if c.stripUsage {
		var so map[string]json.RawMessage
		if raw, ok := m["stream_options"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			if err := json.Unmarshal(raw, &so); err != nil {
				return err
			}
		}
		if so == nil {
			so = map[string]json.RawMessage{}
		}
		so["include_usage"] = json.RawMessage("true")
		b, err := json.Marshal(so)
		if err != nil {
			return err
		}
		m["stream_options"] = b
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.body = b
	return nil
}

// prepare readies a forwarded call: the body as it goes upstream and the
// vaulted key.
func (p *Proxy) prepare(w http.ResponseWriter, r *http.Request) bool {
	c := callFrom(r.Context())
	if c.kind == epTraces {
		return true
	}
	if c.kind.hasModelBody() {
		if err := rewriteBody(c); err != nil {
			p.fail(w, c, errBadRequest(CodeInvalidJSON, "", "The request body could not be rewritten: "+jsonProblem(err)+".", err))
			return false
		}
	}
	if c.up != nil {
		if msg := c.up.fwd.oversized(r.Header); msg != "" {
			p.fail(w, c, &apiError{Status: http.StatusRequestHeaderFieldsTooLarge, Type: "invalid_request_error", Code: CodeHeaderTooLarge, NoRetry: true, Message: msg})
			return false
		}
	}
	if e := p.providerKeys(r, c); e != nil {
		p.fail(w, c, e)
		return false
	}
	// The parsed request (prompt text and its copies) is not needed
	// past this point; a stream may stay open for minutes.
	c.req = nil
	return true
}

// providerKeyError is the answer to a call whose upstream's key could not
// be had: 502 telling an administrator to vault it when none is, 503 to
// retry when the store holding it did not answer (it is there: telling
// anyone to set it again would be wrong).
func providerKeyError(up *upstream, key string, err error) *apiError {
	return vaultedKeyError(up, up.keyName, "provider key", key, err)
}

// vaultedKeyError is providerKeyError for any of the upstream's vault
// entries (entry, which holds its what: "provider key", "extra key").
// It names the entry, never the value.
// A key shorter than scrub.MinKeyLen is refused as well: pamctl could
// not keep it out of answers (an upstream or gateway that echoes it would
// hand it to the agent), so it is never sent.
func vaultedKeyError(up *upstream, entry, what, key string, err error) *apiError {
	switch {
	case err == nil && len(key) >= scrub.MinKeyLen:
		return nil
	case err == nil && key != "":
		return errUpstream(http.StatusBadGateway, CodeProviderKey, fmt.Sprintf(
			"The %s of upstream %q (vault entry %s) is shorter than %d bytes, too short for pamctl to keep out of answers, so the call was not forwarded. An administrator should vault the whole key with `pamctl vault set %s`.", what, up.name, entry, scrub.MinKeyLen, entry), nil)
	case !errors.Is(err, ErrProviderKeyUnavailable):
		return errUpstream(http.StatusBadGateway, CodeProviderKey, fmt.Sprintf(
			"No %s is vaulted for upstream %q. An administrator should run `pamctl vault set %s`.", what, up.name, entry), err)
	}
	e := errUpstream(http.StatusServiceUnavailable, CodeProviderKey, fmt.Sprintf(
		"The %s of upstream %q could not be read from pamctl's store just now, so the call was not forwarded. Retry shortly; if it persists an administrator should check the store and the pamctl logs.", what, up.name), err)
	e.RetryAfter = 5
	return e
}

// extraKey loads up's extra key ("" without one).
func (p *Proxy) extraKey(r *http.Request, up *upstream) (string, *apiError) {
	if up.extraHeader == "" {
		return "", nil
	}
	k, err := p.keys.ProviderKey(r.Context(), up.extraKeyName)
	if e := vaultedKeyError(up, up.extraKeyName, "extra key (extra_key)", k, err); e != nil {
		return "", e
	}
	return k, nil
}

// providerKeys loads the vaulted key of the call's upstream (every upstream
// for the model list, which asks each of them).
func (p *Proxy) providerKeys(r *http.Request, c *call) *apiError {
	if c.kind == epModels {
		return nil // listModels fetches each upstream's key itself
	}
	k, err := p.keys.ProviderKey(r.Context(), c.up.keyName)
	if e := providerKeyError(c.up, k, err); e != nil {
		return e
	}
	c.key = secret{k}
	extra, e := p.extraKey(r, c.up)
	if e != nil {
		return e
	}
	c.extraKey = secret{extra}
	return nil
}
