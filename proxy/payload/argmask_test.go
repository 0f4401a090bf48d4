package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload/payloadtest"
	"github.com/pamctl/pamctl/proxy/scrub"
)

// controlEscapeArgs are call arguments (JSON text, as the first decode
// yields it) holding a secret right after an escape the arguments keep
// (a control character, a quote, a backslash, a lone surrogate), and the
// text that must not reach the agent.
var controlEscapeArgs = []struct{ args, leak string }{
	{`{"body":"key:\nsk-proj-abcdefghij0123456789xyz"}`, "abcdefghij0123456789"},
	{`{"c":"card:\n4111 1111 1111 1111"}`, "4111 1111"},
	{`{"s":"ssn:\t219-09-9999"}`, "219-09"},
	{`{"g":"\rghp_abcdefghijklmnopqrstuvwxyz0123456789"}`, "abcdefghijklmnop"},
	{`{"a":"\bAKIA2QX7RT5ZLM3BNV4K"}`, "2QX7RT5Z"},
	{`{"i":"\u000bGB82WEST12345698765432"}`, "WEST1234"},
	{`{"i":"\u000BGB82WEST12345698765432"}`, "WEST1234"},
	{`{"to":"x\nbob@example.com"}`, "bob@"},
	{`{"to":"x\fbob@example.com","n":1}`, "bob@"},
	{`{"to":"say \"bob@example.com\""}`, "bob@"},
	{`{"to":"C:\\bob@example.com"}`, "bob@"},
	{`{"to":"\ud800bob@example.com"}`, "bob@"},
	{`{"k":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQ\n-----END PRIVATE KEY-----"}`, "kqhkiG9"},
	{"{\"to\":\"x\\n\U000F000Abob@example.com\U0010FF00\"}", "bob@"},
}

// checkArguments fails unless body holds want calls' arguments, each JSON,
// none holding leak.
func checkArguments(t *testing.T, name, body string, stream bool, want int, leak string) {
	t.Helper()
	args := payloadtest.ClientArguments(t, body, stream)
	if len(args) < want {
		t.Fatalf("%s: %d arguments, want %d: %s", name, len(args), want, body)
	}
	for _, a := range args {
		if !json.Valid([]byte(a)) {
			t.Fatalf("%s: the arguments are not JSON: %q", name, a)
		}
		if strings.Contains(a, leak) {
			t.Fatalf("%s: %q reached the agent: %q", name, leak, a)
		}
	}
}

// A secret right after an escape the arguments keep (\n, \t, \u000b, \",
// \\, a lone surrogate) is masked as the agent reads it (after a line
// break, a quote …: a word boundary), and the masked arguments are still
// JSON: whole chat and Responses answers, and their streams for every
// split of the arguments, with and without vaulted keys.
func TestArgumentsMaskedAfterKeptEscapes(t *testing.T) {
	m := newMasker(t)
	for _, keys := range []*scrub.Set{nil, scrub.New("vaulted-key-0123456789")} {
		for _, c := range controlEscapeArgs {
			name := fmt.Sprintf("%q (keys %v)", c.args, !keys.Empty())
			chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
				`{"id":"call_1","type":"function","function":{"name":"http","arguments":` + quoteJSON(c.args) + `}}]},"finish_reason":"tool_calls"}]}`
			out, _, err := MaskResponse(EndpointChat, []byte(chat), m)
			if err != nil {
				t.Fatalf("%s: chat: %v", name, err)
			}
			checkArguments(t, name+", chat", string(out), false, 1, c.leak)
			resp := `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4o","output":[` + fcItem(c.args) + `]}`
			out, _, err = MaskResponse(EndpointResponses, []byte(resp), m)
			if err != nil {
				t.Fatalf("%s: responses: %v", name, err)
			}
			checkArguments(t, name+", responses", string(out), false, 1, c.leak)
			for i := 0; i <= len(c.args); i++ {
				for j := i; j <= len(c.args); j++ {
					pieces := []string{c.args[:i], c.args[i:j], c.args[j:]}
					got := relayString(t, EndpointChat, chatArgsStream(pieces), m, keys)
					checkArguments(t, fmt.Sprintf("%s, chat stream split at %d, %d", name, i, j), got, true, 1, c.leak)
				}
				pieces := []string{c.args[:i], c.args[i:]}
				got := relayString(t, EndpointResponses, respArgsStream(pieces, c.args), m, keys)
				checkArguments(t, fmt.Sprintf("%s, responses stream split at %d", name, i), got, true, 4, c.leak)
			}
		}
	}
}

// quoteJSON is s as a JSON string, HTML characters as they are.
func quoteJSON(s string) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func fcItem(args string) string {
	return `{"id":"fc_1","type":"function_call","status":"completed","arguments":` + quoteJSON(args) + `,"call_id":"call_1","name":"http"}`
}

func chatArgsStream(pieces []string) string {
	chunk := func(delta string) string {
		return `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]}` + "\n\n"
	}
	s := chunk(`{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"http","arguments":""}}]}`)
	for _, p := range pieces {
		s += chunk(`{"tool_calls":[{"index":0,"function":{"arguments":` + quoteJSON(p) + `}}]}`)
	}
	return s + "data: [DONE]\n\n"
}

func respArgsStream(pieces []string, args string) string {
	seq := 0
	ev := func(body string) string {
		seq++
		return fmt.Sprintf("data: {%s,\"sequence_number\":%d}\n\n", body, seq)
	}
	s := ev(`"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)
	s += ev(`"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_1","name":"http"}`)
	for _, p := range pieces {
		s += ev(`"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":` + quoteJSON(p))
	}
	s += ev(`"type":"response.function_call_arguments.done","item_id":"fc_1","output_index":0,"arguments":` + quoteJSON(args))
	s += ev(`"type":"response.output_item.done","output_index":0,"item":` + fcItem(args))
	s += ev(`"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","output":[` + fcItem(args) + `]}`)
	return s
}

func relayString(t *testing.T, ep, stream string, m *mask.Masker, keys *scrub.Set) string {
	t.Helper()
	var out bytes.Buffer
	r, err := NewScrubbedRelay(&out, nil, strings.NewReader(stream), ep, m, keys)
	if err != nil {
		t.Fatal(err)
	}
	for r.Step() {
	}
	if _, err := r.Result(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return out.String()
}

// A key only the second decode of a call's arguments yields is scrubbed
// from a whole answer, whichever way its escapes' letters are escaped; an
// answer with nothing to scrub comes back as it was.
func TestScrubArguments(t *testing.T) {
	key := "sk-vaulted-0123456789abcdef"
	keys := scrub.New(key)
	for _, form := range []func(hex string) string{
		func(h string) string { return `\\\u0075` + h },
		func(h string) string { return `\u005c\u0075` + h },
		func(h string) string { return `\u005C\u0075` + h },
		func(h string) string { return `\\u\u0030` + h[1:] },
		func(h string) string { return `\u005c\u0075\u0030\u0030` + h[2:] },
	} {
		var spelled strings.Builder
		for i := 0; i < len(key); i++ {
			spelled.WriteString(form(fmt.Sprintf("%04x", key[i])))
		}
		body := `{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{\"k\":\"` + spelled.String() + `\"}"}}]}}],"n":1.50}`
		if keys.ContainsString(body) {
			t.Fatalf("%s: the scrubber already finds it: not a test of ScrubArguments", body)
		}
		out := string(ScrubArguments([]byte(body), keys))
		var v struct {
			Choices []struct {
				Message struct {
					ToolCalls []struct {
						Function struct{ Arguments string } `json:"function"`
					} `json:"tool_calls"`
				} `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		a := v.Choices[0].Message.ToolCalls[0].Function.Arguments
		var inner map[string]string
		if err := json.Unmarshal([]byte(a), &inner); err != nil || inner["k"] != scrub.Marker || !strings.Contains(out, `"n":1.50`) {
			t.Errorf("%s: %s (%v)", body, out, err)
		}
	}
	for _, body := range []string{
		`{"arguments":"{\"k\":\"\\u0041 clean\"}"}`,
		`["arguments"]`,
		`not json \\`,
	} {
		if out := string(ScrubArguments([]byte(body), keys)); out != body {
			t.Errorf("%s changed: %s", body, out)
		}
	}
}
