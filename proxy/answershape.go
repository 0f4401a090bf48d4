package proxy

import (
	"bytes"
	"fmt"
	"strings"
	"unsafe"

	"github.com/pamctl/pamctl/proxy/payload"
)

// The shape of an answer.
//
// Every 2xx answer of a model call (streams aside), of a stored answer
// read back and of a model's description is one JSON object. One that is
// anything else is withheld before it is masked: a JSON string such as
// "mail bob\u0040example.org" is what openai-python hands its caller when
// the answer is not a dict, and the text masker, which does not read JSON
// escapes, would relay the address in clear.
//
// A chat completion or a Response (whole, read back, or the events of
// its stream) must moreover not be the other API's shape: the masker
// masks whatever it gets, but the tool-call firewall reads the calls
// where the route's shape keeps them (a chat completion's
// choices[].message, a Response's output), so a Responses "output" in a
// chat answer, "choices" in a Response, a list's "data", an item or an
// event would carry calls past it to an agent that reads either shape.

// shapeRule is what an answer of one shape may not hold.
type shapeRule struct {
	what string // the shape, for errors
	// object is the "object" the answer names, when it names one; ""
	// for stream events (not checked: the members decide).
	object string
	// foreign are top-level members of the other shapes (a Response's
	// output, a chat completion's choices, a list's data, an event's
	// item or response, a bare chat message's calls): one that holds an
	// object or an array is refused. Scalars carry no call, and some
	// upstreams add such names with text ("message": "success").
	foreign []string
	// events: a type "response.<kind>" is the shape's own (a Responses
	// stream's events); elsewhere it is an event where none is due.
	events bool
	// deltas: choices may not hold a stream chunk's delta with calls
	// (a whole chat answer, whose judge reads choices[].message).
	deltas bool
	// list is the member the judge reads calls from as an array (a chat
	// completion's choices, a Response's output): anything else there
	// (an object {"0": …}, which JavaScript indexes as [0]) is refused.
	list string
}

var (
	chatAnswerShape = &shapeRule{what: "chat completion", object: "chat.completion",
		foreign: []string{"output", "data", "item", "response", "message", "tool_calls", "function_call"}, deltas: true, list: "choices"}
	responseAnswerShape = &shapeRule{what: "Response", object: "response",
		foreign: []string{"choices", "data", "item", "response", "message", "tool_calls", "function_call"}, list: "output"}
	// The events of a stream (toolstream.go), read while a judge applies.
	// Their "object" is not checked: the members decide, and some
	// servers label chunks loosely.
	chatChunkShape = &shapeRule{what: "chat completion chunk",
		foreign: []string{"output", "data", "item", "response", "message", "tool_calls", "function_call"}}
	responseEventShape = &shapeRule{what: "Responses event",
		foreign: []string{"choices", "data", "message", "tool_calls", "function_call"}, events: true}
)

// answerShape is the rule of a whole answer in the shape of path (an
// answerPath), or nil.
func answerShape(path string) *shapeRule {
	switch path {
	case payload.EndpointChat:
		return chatAnswerShape
	case payload.EndpointResponses:
		return responseAnswerShape
	}
	return nil
}

// answerShapeError reports why the 2xx answer body of c is not the shape
// of its route; nil when it is, or when the route has no fixed shape
// (endpoint: routes, whose answers maskAnswer reads itself).
func answerShapeError(c *call, body []byte) error {
	if !c.kind.answersObject() {
		return nil
	}
	if c.kind.answerPath() == payload.EndpointChat && payload.UsualChatAnswer(body) {
		return nil // the usual completion: one scan says what the walk below would
	}
	if what := notObject(body); what != "" {
		return fmt.Errorf("the answer is %s, not a JSON object: withheld", what)
	}
	if r := answerShape(c.kind.answerPath()); r != nil {
		return r.check(unsafe.String(unsafe.SliceData(body), len(body))) // valid: notObject read it
	}
	return nil
}

// checkEvent is check for a stream event's data, valid JSON (the tool
// buffer decoded it).
func (r *shapeRule) checkEvent(data []byte) error {
	return r.check(unsafe.String(unsafe.SliceData(data), len(data)))
}

// checkBody is check for an answer not yet known to be one JSON object.
func (r *shapeRule) checkBody(body []byte) error {
	if what := notObject(body); what != "" {
		return fmt.Errorf("the answer is %s, not a JSON object: withheld", what)
	}
	return r.check(unsafe.String(unsafe.SliceData(body), len(body)))
}

// check reports why data, a valid JSON object, is not of r's shape.
// Names are matched in any letter case, as encoding/json matches them;
// a null member is absent, as every decoder reads it.
func (r *shapeRule) check(data string) error {
	var err error
	walkMembers(data, func(name, v string) {
		if err == nil && v != "null" {
			err = r.member(name, v)
		}
	})
	if err != nil {
		return fmt.Errorf("%w: withheld", err)
	}
	return nil
}

func (r *shapeRule) member(name, v string) error {
	if r.list != "" && strings.EqualFold(name, r.list) && v[0] != '[' {
		return fmt.Errorf("the answer's %s is not an array", quoteUpstream(name))
	}
	switch {
	case strings.EqualFold(name, "object"):
		if r.object != "" && (v[0] != '"' || unquoteJSON(v) != r.object) {
			return fmt.Errorf("the answer names itself %s, not %q", quoteUpstreamJSON(v), r.object)
		}
		return nil
	case strings.EqualFold(name, "type"):
		if v[0] != '"' {
			return nil
		}
		t := unquoteJSON(v)
		if callItem(t) || !r.events && len(t) > len("response.") && strings.EqualFold(t[:len("response.")], "response.") {
			return fmt.Errorf("the answer is a %s item or event, not a %s", quoteUpstream(t), r.what)
		}
		return nil
	case r.deltas && strings.EqualFold(name, "choices") && v[0] == '[':
		var err error
		walkElements(v, func(ch string) {
			if err == nil && ch[0] == '{' && deltaCalls(ch) {
				err = fmt.Errorf("a choice holds a stream chunk's delta with calls, not a %s's message", r.what)
			}
		})
		return err
	}
	if v[0] != '{' && v[0] != '[' {
		return nil
	}
	for _, f := range r.foreign {
		if strings.EqualFold(name, f) {
			return fmt.Errorf("the answer has %s, a member of another shape than a %s", quoteUpstream(name), r.what)
		}
	}
	return nil
}

// deltaCalls reports whether a choice (a valid JSON object) has a delta
// with tool_calls or a function_call.
func deltaCalls(choice string) bool {
	found := false
	walkMembers(choice, func(name, v string) {
		if !strings.EqualFold(name, "delta") || v[0] != '{' {
			return
		}
		walkMembers(v, func(k, call string) {
			if call != "null" && (strings.EqualFold(k, "tool_calls") || strings.EqualFold(k, "function_call")) {
				found = true
			}
		})
	})
	return found
}

// notObject says what b is, as Go's decoder reads it, when it is not one
// JSON object ("" when it is): "empty", "not JSON" (a BOM, NaN, trailing
// data, nesting past the decoder's bound…), or the kind of JSON value.
func notObject(b []byte) string {
	t := bytes.TrimLeft(b, " \t\r\n") // JSON's white space, as Go reads it
	switch {
	case len(t) == 0:
		return "empty"
	case !payload.ValidJSON(t):
		return "not JSON"
	}
	switch t[0] {
	case '{':
		return ""
	case '"':
		return "a JSON string"
	case '[':
		return "a JSON array"
	case 'n':
		return "JSON null"
	case 't', 'f':
		return "a JSON boolean"
	}
	return "a JSON number"
}
