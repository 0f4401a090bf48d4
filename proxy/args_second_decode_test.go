package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/payload/payloadtest"
)

// Outer spellings of a call's arguments string: how the answer's JSON may
// spell the JSON text the agent decodes a second time.
var outerSpellings = map[string]func(string) string{
	"plain": jsonStr,
	// Every byte an escape: \u005c\u0075\u0030\u0030\u0037\u0033 for \u0073.
	"all escaped": func(s string) string {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(s); i++ {
			if s[i] < 0x80 {
				fmt.Fprintf(&b, `\u%04x`, s[i])
			} else {
				b.WriteByte(s[i])
			}
		}
		b.WriteByte('"')
		return b.String()
	},
	// An inner \uHHHH written \\\u0075HHHH, \u005c\u0075HHHH or
	// \\u\u0030HHH in turn (the reviewer's spellings), the rest plain.
	"escape letters escaped": func(s string) string {
		var b strings.Builder
		b.WriteByte('"')
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' && i+5 < len(s) && s[i+1] == 'u' {
				switch n % 3 {
				case 0:
					b.WriteString(`\\\u0075` + s[i+2:i+6])
				case 1:
					b.WriteString(`\u005c\u0075` + s[i+2:i+6])
				default:
					b.WriteString(`\\u\u0030` + s[i+3:i+6])
				}
				n++
				i += 5
				continue
			}
			q := jsonStr(s[i : i+1])
			b.WriteString(q[1 : len(q)-1])
		}
		b.WriteByte('"')
		return b.String()
	},
}

// secondDecode returns every string of the JSON text a (the agent's second
// decode of a call's arguments), joined, and whether a is JSON.
func secondDecode(a string) (string, bool) {
	var v any
	if err := json.Unmarshal([]byte(a), &v); err != nil {
		return "", false
	}
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			b.WriteString(x + "\x00")
		case map[string]any:
			for k, e := range x {
				b.WriteString(k + "\x00")
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return b.String(), true
}

// What the agent decodes a second time is what masking and key scrubbing
// read: a secret right after an escape the arguments keep ("card:\n4111
// …") is masked and the arguments stay JSON; a vaulted key spelled so
// that only the second decode yields it (its escapes' letters escaped
// too: \\\u0075 0073, \u005c\u0075 0073, \\u\u0030 073) is scrubbed. Chat
// and Responses, whole and streamed, with and without a tool judge,
// masking on and (for keys) off; the tool.call event alike.
func TestArgumentsAsTheSecondDecodeReadsThem(t *testing.T) {
	type tc struct{ name, args, outer, leak string }
	var cases []tc
	for _, c := range []struct{ args, leak string }{
		{`{"body":"key:\nsk-proj-abcdefghij0123456789xyz"}`, "abcdefghij0123456789"},
		{`{"c":"card:\n4111 1111 1111 1111"}`, "4111 1111"},
		{`{"s":"ssn:\t219-09-9999"}`, "219-09"},
		{`{"g":"\rghp_abcdefghijklmnopqrstuvwxyz0123456789"}`, "abcdefghijklmnop"},
		{`{"a":"\u000bAKIA2QX7RT5ZLM3BNV4K"}`, "2QX7RT5Z"},
		{`{"i":"\bGB82WEST12345698765432"}`, "WEST1234"},
		{`{"to":"x\nbob@example.com"}`, "bob@"},
		{`{"to":"say \"bob@example.com\""}`, "bob@"},
		{`{"to":"C:\\bob@example.com"}`, "bob@"},
	} {
		cases = append(cases, tc{"masking " + c.args, c.args, "plain", c.leak})
	}
	var inner strings.Builder // the key, every byte an escape of the inner JSON
	for i := 0; i < len(vaultedKey); i++ {
		fmt.Fprintf(&inner, `\u%04x`, vaultedKey[i])
	}
	for outer := range outerSpellings {
		cases = append(cases, tc{"key, " + outer, `{"k":"` + inner.String() + `"}`, outer, vaultedKey})
		// The key right after escaped backslashes (the second decode
		// reads "\\sk-…"): the scrubber's match must not start on the
		// second backslash of a pair, or the agent gets "\[redacted]",
		// arguments that are not JSON.
		for n := 1; n <= 3; n++ {
			pairs := strings.Repeat(`\\`, n)
			cases = append(cases,
				tc{fmt.Sprintf("key after %d escaped backslashes, %s", n, outer), `{"k":"` + pairs + vaultedKey + `"}`, outer, vaultedKey},
				tc{fmt.Sprintf("escaped key after %d escaped backslashes, %s", n, outer), `{"k":"` + pairs + `\u0073` + vaultedKey[1:] + `"}`, outer, vaultedKey})
		}
	}
	for _, mode := range argModes {
		h, masked, judged := argModeHarness(t, mode)
		tok := h.mint(grant{scope: "model:gpt-4o"})
		for _, c := range cases {
			if !masked && c.leak != vaultedKey {
				continue // keys are scrubbed whatever masking does
			}
			enc := outerSpellings[c.outer]
			item := `{"id":"fc_1","type":"function_call","status":"completed","arguments":` + enc(c.args) + `,"call_id":"call_1","name":"http"}`
			chatAnswer := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
				`{"id":"call_1","type":"function","function":{"name":"http","arguments":` + enc(c.args) + `}}]},"finish_reason":"tool_calls"}]}`
			chatStream := []string{chatChunk(`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"http","arguments":""}}]}`, "")}
			seq := 1
			respStream := []string{
				respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`),
				respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_1","name":"http"}`),
			}
			for i := 0; i < len(c.args); i += 2 {
				piece := enc(c.args[i:min(i+2, len(c.args))])
				chatStream = append(chatStream, chatChunk(`{"tool_calls":[{"index":0,"function":{"arguments":`+piece+`}}]}`, ""))
				seq++
				respStream = append(respStream, respEv(seq, `"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":`+piece))
			}
			chatStream = append(chatStream, chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
			respStream = append(respStream,
				respEv(seq+1, `"type":"response.function_call_arguments.done","item_id":"fc_1","output_index":0,"arguments":`+enc(c.args)),
				respEv(seq+2, `"type":"response.output_item.done","output_index":0,"item":`+item),
				respCompleted(seq+3, item))
			respAnswer := `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4o","output":[` + item + `]}`
			for _, tr := range []struct {
				name, path, body string
				stream           bool
				up               http.HandlerFunc
			}{
				{"chat", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, false, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, chatAnswer) }},
				{"chat stream", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}`, true, writeBytes(chatStream)},
				{"responses", "/v1/responses", `{"model":"gpt-4o","input":"x"}`, false, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, respAnswer) }},
				{"responses stream", "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`, true, writeBytes(respStream)},
			} {
				name := c.name + ", " + tr.name + ", " + mode
				h.up.set(tr.up)
				before := len(h.sink.ofType(audit.TypeToolCall))
				res, b := h.do("POST", tr.path, tok, tr.body)
				if res.StatusCode != 200 || strings.Contains(string(b), CodeToolCallMalformed) {
					t.Errorf("%s: %d %s", name, res.StatusCode, b)
					continue
				}
				args := payloadtest.ClientArguments(t, string(b), tr.stream)
				if len(args) == 0 {
					t.Errorf("%s: no arguments: %s", name, b)
				}
				for _, a := range args {
					plain, ok := secondDecode(a)
					if !ok {
						t.Errorf("%s: the arguments the agent got are not JSON: %q", name, a)
					}
					if strings.Contains(plain, c.leak) || strings.Contains(a, c.leak) {
						t.Errorf("%s: %q reached the agent: %q", name, c.leak, a)
					}
				}
				if judged {
					evs := h.sink.ofType(audit.TypeToolCall)
					if len(evs) == before {
						t.Errorf("%s: no tool.call event", name)
						continue
					}
					a := evs[len(evs)-1].Details["arguments"]
					if plain, _ := secondDecode(a); strings.Contains(plain, c.leak) || strings.Contains(a, c.leak) {
						t.Errorf("%s: %q in the tool.call event: %q", name, c.leak, a)
					}
				}
			}
		}
	}
}
