package proxy

import (
	"encoding/json"
	"strings"
	"testing"
)

// The decoder usageOnlyChunk and isTerminal stand in for: they must read
// every event as it does.
func usageOnlyChunkDecoded(data string) bool {
	if !mayBeUsage([]byte(data)) {
		return false
	}
	var ch struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   json.RawMessage   `json:"usage"`
	}
	return json.Unmarshal([]byte(data), &ch) == nil && len(ch.Choices) == 0 && len(ch.Usage) > 0 && string(ch.Usage) != "null"
}

func isTerminalDecoded(name, data string) bool {
	data = strings.TrimSpace(data)
	if data == "[DONE]" || terminalType(name) {
		return true
	}
	if !mayBeTerminal([]byte(data)) {
		return false
	}
	var v struct {
		Type  string          `json:"type"`
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal([]byte(data), &v) != nil {
		return false
	}
	return terminalType(v.Type) || (v.Type == "" && len(v.Error) > 0 && string(v.Error) != "null")
}

var topLevelCases = []string{
	`{"id":"c","choices":[],"usage":{"prompt_tokens":1}}`,
	`{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}`,
	`{"choices":null,"usage":{"a":1}}`,
	`{"choices":[ ],"usage": {"a":1}}`,
	`{"Choices":[1],"usage":{"a":1}}`,
	`{"CHOICES":[],"choices":[1],"usage":{"a":1}}`,
	`{"choices":[1],"choices":[],"usage":{"a":1}}`,
	`{"choices":{},"usage":{"a":1}}`,
	`{"choices":{},"choices":[],"usage":{"a":1}}`,
	`{"choices":"x","usage":{"a":1}}`,
	`{"choices":[],"usage":{"a":1},"usage":null}`,
	`{"choices":[],"us\u0061ge":{"a":1}}`,
	`{"ch\u006fices":[1],"usage":{"a":1}}`,
	`{"choices":[],"USAGE":{"a":1}}`,
	`{"choices":[],"usage":{"a":1}} trailing`,
	`[{"choices":[],"usage":{"a":1}}]`,
	`{"choices":[],"usage":{"a":"}]\"["}}`,
	` {"choices" : [ "]" ] , "usage" : {"a" : 1} } `,
	`{"type":"response.completed","response":{}}`,
	`{"type":"response.failed","type":null}`,
	`{"type":null,"error":{"message":"x"}}`,
	`{"type":"","error":{"m":1},"type":"response.incomplete"}`,
	`{"Type":"response.completed"}`,
	`{"TYPE":"response.output_text.delta","error":{"x":1}}`,
	`{"type":1,"error":{"x":1}}`,
	`{"type":"response.completed","type":{}}`,
	`{"type":"respo\u006ese.completed"}`,
	`{"error":null}`,
	`{"error":{"message":"response.x"},"usage":{"a":1}}`,
	`{"error":"x","response.":1}`,
	`{"a":[[[[[[[[[[{"b":"response.completed"}]]]]]]]]]],"error":{"c":1}}`,
	`{"type":"response.completed"`,
	`{"\u0074ype":"response.completed"}`,
	`{"type":"response.completed","k":"\ud800"}`,
	"{\"type\":\"response.completed\",\"k\":\"\xff\"}",
}

func TestTopLevelReadsLikeTheDecoder(t *testing.T) {
	deep := `{"usage":{"a":1},"choices":[],"x":` + strings.Repeat(`[{"y":`, 500) + `1` + strings.Repeat(`}]`, 500) + `,"type":"response.failed","error":{"e":1}}`
	for _, data := range append(topLevelCases, deep) {
		if got, want := usageOnlyChunk(data), usageOnlyChunkDecoded(data); got != want {
			t.Errorf("usageOnlyChunk(%.80s) = %v, the decoder says %v", data, got, want)
		}
		for _, name := range []string{"", "message", "response.completed"} {
			if got, want := isTerminal(name, data), isTerminalDecoded(name, data); got != want {
				t.Errorf("isTerminal(%q, %.80s) = %v, the decoder says %v", name, data, got, want)
			}
		}
	}
}

func FuzzTopLevelReadsLikeTheDecoder(f *testing.F) {
	for _, c := range topLevelCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data string) {
		if got, want := usageOnlyChunk(data), usageOnlyChunkDecoded(data); got != want {
			t.Fatalf("usageOnlyChunk(%q) = %v, the decoder says %v", data, got, want)
		}
		if got, want := isTerminal("", data), isTerminalDecoded("", data); got != want {
			t.Fatalf("isTerminal(%q) = %v, the decoder says %v", data, got, want)
		}
		if !json.Valid([]byte(data)) {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(data), &m) != nil || m == nil {
			if topMembers(data, func(string, string) {}) {
				t.Fatalf("topMembers read %q, which is no JSON object", data)
			}
			return
		}
		seen := map[string]string{}
		if !topMembers(data, func(name, v string) { seen[name] = v }) {
			t.Fatalf("topMembers refused the object %q", data)
		}
		for k, v := range m {
			if !json.Valid([]byte(seen[k])) || !jsonEqual(seen[k], string(v)) {
				t.Fatalf("%q: member %q is %q, the decoder says %q", data, k, seen[k], v)
			}
		}
	})
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
