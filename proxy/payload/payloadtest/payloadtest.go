// Package payloadtest is test support for what the proxy relays: it reads
// back, as a client would, what an answer or a stream carries. Only tests
// import it.
package payloadtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// ClientArguments returns every call's arguments a client reads in body:
// string members named arguments in any JSON value (whole answers, a
// Responses stream's .done events and items), and the argument deltas of
// streamed calls (chat tool_calls by index, Responses by item id) joined
// per call, in the order the calls first appear.
func ClientArguments(t testing.TB, body string, stream bool) []string {
	t.Helper()
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "arguments" && s != "" {
					out = append(out, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	if !stream {
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("the answer is not JSON: %v: %s", err, body)
		}
		walk(v)
		return out
	}
	joined := map[string]*strings.Builder{}
	var order []string
	add := func(id, s string) {
		if joined[id] == nil {
			joined[id] = new(strings.Builder)
			order = append(order, id)
		}
		joined[id].WriteString(s)
	}
	for _, line := range strings.Split(body, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ev struct {
			Type    string `json:"type"`
			ItemID  string `json:"item_id"`
			Delta   string `json:"delta"`
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Index    int `json:"index"`
						Function struct {
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("an event is not JSON: %v: %s", err, data)
		}
		for _, c := range ev.Choices {
			for _, tc := range c.Delta.ToolCalls {
				add(fmt.Sprint(tc.Index), tc.Function.Arguments)
			}
		}
		switch ev.Type {
		case "response.function_call_arguments.delta":
			add(ev.ItemID, ev.Delta)
		case "":
		default:
			var v any
			_ = json.Unmarshal([]byte(data), &v)
			walk(v)
		}
	}
	for _, id := range order {
		out = append(out, joined[id].String())
	}
	return out
}
