package toolcall

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRewriteAnswerItemShapes: an item list's data[] and a single item
// are judged as a Response's output items are: denied items replaced in
// place, redactions written back, unknown types denied, unreadable
// shapes refused (ErrAnswerShape); answers without judged items come back
// byte for byte.
func TestRewriteAnswerItemShapes(t *testing.T) {
	const (
		rm    = `{"type":"function_call","id":"fc_1","call_id":"c1","name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}`
		ls    = `{"type":"function_call","id":"fc_2","call_id":"c2","name":"shell","arguments":"{\"command\":\"ls\"}"}`
		token = `{"type":"custom_tool_call","id":"ct_1","call_id":"c3","name":"http","input":"auth ghp_SECRET"}`
		msg   = `{"type":"message","id":"m","role":"user","content":[{"type":"input_text","text":"hi"}]}`
		odd   = `{"type":"teleport_call","id":"t"}`
	)
	list := func(items ...string) string {
		return `{"object":"list","data":[` + strings.Join(items, ",") + `],"first_id":"a","last_id":"b","has_more":false}`
	}
	for _, tc := range []struct {
		name, endpoint, body string
		judged               int
		want, not            []string
		shapeErr, same       bool
	}{
		{"list", EndpointItems, list(msg, rm, ls, token, odd), 4,
			[]string{`"blocked shell"`, `"id":"fc_2"`, `auth [MASKED]`, `pamctl blocked an output item of type \"teleport_call\"`, `"first_id":"a"`}, []string{"rm -rf", "ghp_SECRET"}, false, false},
		{"list of inert items", EndpointItems, list(msg, msg), 0, nil, nil, false, true},
		{"empty list", EndpointItems, list(), 0, nil, nil, false, true},
		{"data an object", EndpointItems, `{"object":"list","data":` + rm + `}`, 0, nil, nil, true, false},
		{"data missing", EndpointItems, `{"object":"list"}`, 0, nil, nil, true, false},
		{"an element not an object", EndpointItems, `{"object":"list","data":[` + ls + `,"x"]}`, 0, nil, nil, true, false},
		{"Data", EndpointItems, `{"object":"list","data":[],"Data":[` + rm + `]}`, 0, nil, nil, true, false},
		{"Object", EndpointItems, `{"Object":"list","data":[]}`, 0, nil, nil, true, false},
		{"type in another case", EndpointItems, list(strings.Replace(rm, "function_call", "FUNCTION_call", 1)), 0, nil, nil, true, false},
		{"one item denied", EndpointItem, rm, 1, []string{`"type":"message"`, `"blocked shell"`}, []string{"rm -rf", "fc_1"}, false, false},
		{"one item redacted", EndpointItem, token, 1, []string{`auth [MASKED]`, `"id":"ct_1"`}, []string{"ghp_SECRET"}, false, false},
		{"one inert item", EndpointItem, msg, 0, nil, nil, false, true},
		{"one item of no type", EndpointItem, `{"id":"x","arguments":"rm -rf"}`, 1, []string{`"type":"message"`}, []string{"rm -rf"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []Call
			out, err := RewriteAnswer(context.Background(), tc.endpoint, []byte(tc.body), itemJudge(&seen))
			if tc.shapeErr {
				if !errors.Is(err, ErrAnswerShape) {
					t.Fatalf("want ErrAnswerShape, got %v: %s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != tc.judged {
				t.Errorf("judged %d calls, want %d: %+v", len(seen), tc.judged, seen)
			}
			if tc.same && string(out) != tc.body {
				t.Errorf("rewritten without a judged call: %s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("missing %s: %s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(string(out), n) {
					t.Errorf("%s remains: %s", n, out)
				}
			}
		})
	}
}
