package payload

import "testing"

// responsesKind is certain only where a case-insensitive decoder would
// read the same: any other "type" or an "error" key leaves it to the
// consumer.
func TestResponsesKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  string
		want EventKind
	}{
		{"response.output_text.delta", `{"type":"response.output_text.delta","delta":"x"}`, EventPlain},
		{"", `{"type":"response.output_text.delta","delta":"x"}`, EventPlain},
		{"", `{"delta":"x"}`, EventPlain},
		{"response.completed", `{"type":"response.completed"}`, EventTerminal},
		{"", `{"type":"response.failed"}`, EventTerminal},
		{"", `{"type":"response.incomplete"}`, EventTerminal},
		{"", `{"type":"error","message":"x"}`, EventTerminal},
		{"error", `{"type":"response.output_text.delta"}`, EventTerminal},
		{"response.completed", `{"type":"response.output_text.delta"}`, EventTerminal},
		{"", `{"TYPE":"response.completed"}`, EventUnknown},
		{"", `{"type":"response.output_text.delta","Type":"response.completed"}`, EventUnknown},
		{"", `{"type":5}`, EventUnknown},
		{"", `{"type":null}`, EventUnknown},
		{"", `{"error":{"message":"x"}}`, EventUnknown},
		{"", `{"type":"response.output_text.delta","ERROR":null}`, EventUnknown},
	} {
		o, err := decodeObject([]byte(tc.obj))
		if err != nil {
			t.Fatalf("%s: %v", tc.obj, err)
		}
		if got := responsesKind(tc.name, o); got != tc.want {
			t.Errorf("responsesKind(%q, %s) = %d, want %d", tc.name, tc.obj, got, tc.want)
		}
	}
}
