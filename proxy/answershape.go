package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Every 2xx answer of a model call (streams aside), of a stored answer
// read back and of a model's description is one JSON object. One that is
// anything else is withheld before it is masked: a JSON string such as
// "mail bob\u0040example.org" is what openai-python hands its caller when
// the answer is not a dict, and the text masker, which does not read JSON
// escapes, would relay the address in clear.

// answerShapeError reports why the 2xx answer body of c is not the shape
// of its route; nil when it is, or when the route has no fixed shape
// (endpoint: routes, whose answers maskAnswer reads itself).
func answerShapeError(c *call, body []byte) error {
	if !c.kind.answersObject() {
		return nil
	}
	if what := notObject(body); what != "" {
		return fmt.Errorf("the answer is %s, not a JSON object: withheld", what)
	}
	return nil
}

// notObject says what b is, as Go's decoder reads it, when it is not one
// JSON object ("" when it is): "empty", "not JSON" (a BOM, NaN, trailing
// data, nesting past the decoder's bound…), or the kind of JSON value.
func notObject(b []byte) string {
	t := bytes.TrimLeft(b, " \t\r\n") // JSON's white space, as Go reads it
	switch {
	case len(t) == 0:
		return "empty"
	case !json.Valid(t):
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
