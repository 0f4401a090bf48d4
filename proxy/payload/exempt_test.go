package payload

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// exemptNames are every member name whose value masking may leave alone.
func exemptNames() []string {
	var names []string
	for k := range structuralKeys {
		names = append(names, k)
	}
	for k := range base64Keys {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// placeNames fills NAME and VAL of each template with every exempt member
// name and val, leaving out a template that holds the name already (a
// duplicate member is another test).
func placeNames(templates []string, val string) []string {
	var out []string
	for _, name := range exemptNames() {
		for _, tmpl := range templates {
			if strings.Contains(tmpl, `"`+name+`":`) {
				continue
			}
			out = append(out, strings.NewReplacer("NAME", name, "VAL", val).Replace(tmpl))
		}
	}
	return out
}

// Positions of a member, named NAME, in chat answers and chunks (MSG is
// message or delta).
var chatPlaces = []string{
	`{"choices":[{"index":0,"MSG":{"role":"assistant","content":"x","NAME":VAL}}]}`,
	`{"choices":[{"index":0,"MSG":{"role":"assistant","audio":{"id":"a","transcript":"t","NAME":VAL}}}]}`,
	`{"choices":[{"index":0,"MSG":{"content":"x"},"NAME":VAL}]}`,
	`{"choices":[{"index":0,"MSG":{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":"{}","NAME":VAL}}]}}]}`,
	`{"choices":[{"index":0,"MSG":{"content":"x"}}],"NAME":VAL}`,
	`{"NAME":VAL}`,
}

// Positions of a member named NAME in Responses events.
var responsesEventPlaces = []string{
	`{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"x","NAME":VAL}`,
	`{"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"text":"x","NAME":VAL}`,
	`{"type":"response.content_part.done","item_id":"m","output_index":0,"content_index":0,"part":{"type":"output_text","text":"x","NAME":VAL}}`,
	`{"type":"response.output_item.done","output_index":0,"item":{"id":"m","type":"message","role":"assistant","content":[{"type":"output_text","text":"x"}],"NAME":VAL}}`,
	`{"type":"response.output_item.done","output_index":0,"item":{"id":"m","type":"message","role":"assistant","content":[{"type":"output_audio","transcript":"x","NAME":VAL}]}}`,
	`{"type":"response.completed","response":{"id":"r","status":"completed","output":[{"id":"ig","type":"image_generation_call","NAME":VAL}]}}`,
	`{"type":"response.completed","response":{"status":"completed","output":[],"NAME":VAL}}`,
	`{"type":"response.image_generation_call.partial_image","item_id":"ig","output_index":0,"NAME":VAL}`,
}

// Positions of a member named NAME in Responses answers.
var responsesPlaces = []string{
	`{"output":[{"type":"message","id":"m","role":"assistant","content":[{"type":"output_text","text":"x","NAME":VAL}]}]}`,
	`{"output":[{"type":"message","id":"m","role":"assistant","content":[{"type":"output_text","text":"x"}],"NAME":VAL}]}`,
	`{"output":[{"type":"image_generation_call","id":"ig","NAME":VAL}]}`,
	`{"output":[],"NAME":VAL}`,
	`{"NAME":VAL}`,
}

// TestExemptMembersMaskedUnlessExempt: masking leaves a member alone by
// its name only when its value is what that name holds in the API: a
// string for structural members (ids, types, names), base64 text for the
// base64 members (data, b64_json, result, partial_image_b64). An object or
// an array under any of these names, at any depth, and prose under a
// base64 member, is masked: in chat and Responses answers, chunks and
// events, stored messages and items, fast paths or not. (Before, "data"
// and the other names were skipped whatever they held:
// choices[0].message.data = {"note": "mail ..."} was relayed unmasked.)
func TestExemptMembersMaskedUnlessExempt(t *testing.T) {
	s := jsonStr(canary)
	vals := []string{`{"note":` + s + `}`, `[` + s + `]`, `[{"deep":{"note":` + s + `}}]`}
	m := testMasker(t)
	for _, fast := range []bool{true, false} {
		withFastPaths(fast, func() {
			for _, val := range vals {
				for _, c := range placeNames(chatPlaces, val) {
					relayMasked(t, EndpointChat, "data: "+strings.ReplaceAll(c, "MSG", "delta")+"\n\ndata: [DONE]\n\n", m)
					answerMasked(t, EndpointChat, strings.ReplaceAll(c, "MSG", "message"), m)
				}
				for _, ev := range placeNames(responsesEventPlaces, val) {
					relayMasked(t, EndpointResponses, respEvents(ev), m)
				}
				for _, body := range placeNames(responsesPlaces, val) {
					answerMasked(t, EndpointResponses, body, m)
				}
				for _, msg := range placeNames([]string{`{"id":"m","role":"assistant","content":"x","NAME":VAL}`}, val) {
					answerMasked(t, EndpointChatMessages, `{"object":"list","data":[`+msg+`]}`, m)
				}
				for _, item := range placeNames([]string{`{"type":"message","id":"m","content":[{"type":"output_text","text":"x","NAME":VAL}]}`}, val) {
					answerMasked(t, EndpointItems, `{"object":"list","data":[`+item+`]}`, m)
					answerMasked(t, EndpointItem, item, m)
				}
			}
			// Prose under a base64 member is not base64: masked.
			for name := range base64Keys {
				r := strings.NewReplacer("NAME", name, "VAL", s)
				for _, c := range chatPlaces {
					c = r.Replace(c)
					relayMasked(t, EndpointChat, "data: "+strings.ReplaceAll(c, "MSG", "delta")+"\n\ndata: [DONE]\n\n", m)
					answerMasked(t, EndpointChat, strings.ReplaceAll(c, "MSG", "message"), m)
				}
				for _, ev := range responsesEventPlaces {
					relayMasked(t, EndpointResponses, respEvents(r.Replace(ev)), m)
				}
				for _, body := range responsesPlaces {
					answerMasked(t, EndpointResponses, r.Replace(body), m)
				}
			}
		})
	}
}

// TestTopLevelDataListMasked: the red team's answer whose top level is a
// list ({"data":[...]}, with or without "object":"list") to a chat or
// Responses call is masked whole, messages and tool calls included.
func TestTopLevelDataListMasked(t *testing.T) {
	msgs := `[{"role":"assistant","content":` + jsonStr(canary) + `,"tool_calls":[{"id":"t","type":"function","function":{"name":"shell","arguments":` + jsonStr(`{"cmd":"mail `+canary+`"}`) + `}}]}]`
	m := testMasker(t)
	for _, body := range []string{`{"data":` + msgs + `}`, `{"object":"list","data":` + msgs + `}`} {
		for _, fast := range []bool{true, false} {
			withFastPaths(fast, func() {
				answerMasked(t, EndpointChat, body, m)
				answerMasked(t, EndpointResponses, body, m)
				relayMasked(t, EndpointChat, "data: "+body+"\n\ndata: [DONE]\n\n", m)
				relayMasked(t, EndpointResponses, respEvents(body), m)
			})
		}
	}
}

// TestBase64MembersLeftAlone: base64 text under a base64 member, as long
// as a payload (minBase64Payload), is not masked, even when a detector
// would find something in it (the canary's AWS key ids, between '+', are
// base64 text): masking would corrupt the payload.
func TestBase64MembersLeftAlone(t *testing.T) {
	b64 := strings.Repeat("AKIAIOSFODNN7EXAMPLE+", 4)
	m := testMasker(t)
	if out, _ := m.Mask(b64); out == b64 {
		t.Fatalf("the masker leaves %q alone: the test proves nothing", b64)
	}
	for _, fast := range []bool{true, false} {
		withFastPaths(fast, func() {
			for name := range base64Keys {
				r := strings.NewReplacer("NAME", name, "VAL", `"`+b64+`"`)
				check := func(what, out string) {
					t.Helper()
					if !strings.Contains(out, `"`+name+`":"`+b64+`"`) {
						t.Errorf("fast paths %v: %s: base64 %s was masked: %s", fastPaths, what, name, out)
					}
				}
				for _, c := range chatPlaces {
					c = r.Replace(c)
					body, _, err := MaskResponse(EndpointChat, []byte(strings.ReplaceAll(c, "MSG", "message")), m)
					if err != nil {
						t.Fatal(err)
					}
					check(c, string(body))
					var out strings.Builder
					if _, err := CopyStream(&out, nil, strings.NewReader("data: "+strings.ReplaceAll(c, "MSG", "delta")+"\n\n"), EndpointChat, m); err != nil {
						t.Fatal(err)
					}
					check(c, out.String())
				}
				for _, ev := range responsesEventPlaces {
					ev = r.Replace(ev)
					var out strings.Builder
					if _, err := CopyStream(&out, nil, strings.NewReader(respEvents(ev)), EndpointResponses, m); err != nil {
						t.Fatal(err)
					}
					check(ev, out.String())
				}
				for _, body := range responsesPlaces {
					body = r.Replace(body)
					out, _, err := MaskResponse(EndpointResponses, []byte(body), m)
					if err != nil {
						t.Fatal(err)
					}
					check(body, string(out))
				}
			}
		})
	}
}

func TestBase64Text(t *testing.T) {
	for s, want := range map[string]bool{
		"":                                true,
		"AKIAIOSFODNN7EXAMPLE":            true,
		"aGVsbG8=":                        true,
		"aGVsbA==":                        true,
		"aGVsbG8":                         true, // unpadded
		"aGVsbA":                          true,
		"+/+/":                            true,
		"aGVsbA=":                         false, // padding that does not complete a group
		"aGVsb===":                        false,
		"aGVsbG8h=":                       false,
		"a":                               false, // no base64 text is 4n+1 long
		"aGVsb":                           false,
		"a=GV":                            false,
		"aGV-bA__":                        false, // URL-safe: not what the API sends
		"mail victim.doe@corp-secret.org": false,
		"data:image/png;base64,aGVsbG8=":  false,
		"aGVs bG8=":                       false,
		"aGVs\nbG8=":                      false,
		"sk-proj-abcdefghijklmnopqrstuvwxyz0123456789": false,
	} {
		if got := base64Text(s); got != want {
			t.Errorf("base64Text(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestFastChatPathsReadEveryString: the chat fast paths pass members
// they do not mask as written; a string where they expect none (a
// created, anything in usage) is masked, as the generic path masks it.
func TestFastChatPathsReadEveryString(t *testing.T) {
	s := jsonStr(canary)
	const choices = `"choices":[{"index":0,"MSG":{"role":"assistant","content":"x"},"finish_reason":null}]`
	m := testMasker(t)
	for _, member := range []string{
		`"created":` + s,
		`"created":[` + s + `]`,
		`"usage":` + s,
		`"usage":[` + s + `]`,
		`"usage":{"prompt_tokens":` + s + `}`,
		`"usage":{"total_tokens":{"x":` + s + `}}`,
		`"usage":{"prompt_tokens":1,"note":` + s + `}`,
		`"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0,"x":[` + s + `]}}`,
	} {
		for _, fast := range []bool{true, false} {
			withFastPaths(fast, func() {
				c := `{"id":"c",` + member + `,` + choices + `}`
				relayMasked(t, EndpointChat, "data: "+strings.ReplaceAll(c, "MSG", "delta")+"\n\ndata: [DONE]\n\n", m)
				answerMasked(t, EndpointChat, strings.ReplaceAll(c, "MSG", "message"), m)
			})
		}
	}
}

// TestShortBase64MemberMasked: what is written in base64 characters but
// shorter than a payload (a card number, a phone number, an AWS key id)
// under a base64 member is masked as it is in content: the exemption only
// ever covered such text because its characters are base64's.
func TestShortBase64MemberMasked(t *testing.T) {
	m := testMasker(t)
	for _, v := range []string{"4111111111111111", "+14155552671", "AKIAIOSFODNN7EXAMPLE", "GB82WEST12345698765432"} {
		if out, _ := m.Mask(v); out == v {
			t.Fatalf("the masker leaves %q alone: the case proves nothing", v)
		}
		for name := range base64Keys {
			body := `{"choices":[{"index":0,"message":{"role":"assistant","content":"x","audio":{"id":"a","` + name + `":"` + v + `"}}}]}`
			out, _, err := MaskResponse(EndpointChat, []byte(body), m)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), v) {
				t.Errorf("%s %q relayed: %s", name, v, out)
			}
		}
	}
}

// TestMemberNamesMasked: a member name is the upstream's text too (a
// client that logs or shows the object shows it): one holding PII is
// renamed to its masked form, in whole answers and in streamed events of
// both APIs, its finding counted; two names masking alike both survive.
func TestMemberNamesMasked(t *testing.T) {
	m := testMasker(t)
	body := `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi",` +
		`"x":{"bob@example.org":1,"ann@example.org":2,"[EMAIL]":3}},"finish_reason":"stop"}]}`
	out, res, err := MaskResponse(EndpointChat, []byte(body), m)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	x := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["x"].(map[string]any)
	if strings.Contains(string(out), "example.org") || len(x) != 3 || res.Counts.Total() != 2 {
		t.Errorf("masked %s (counts %v)", out, res.Counts)
	}
	for _, tc := range []struct{ ep, stream string }{
		{EndpointChat, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"extra\":{\"bob@example.org\":true}}]}\n\ndata: [DONE]\n\n"},
		{EndpointResponses, "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"text\":\"mail ann@example.org\",\"bob@example.org\":1}\n\n"},
	} {
		var w strings.Builder
		res, err := CopyStream(&w, nil, strings.NewReader(tc.stream), tc.ep, m)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(w.String(), "example.org") {
			t.Errorf("%s: relayed %q", tc.ep, w.String())
		}
		if want := map[string]int{EndpointChat: 1, EndpointResponses: 2}[tc.ep]; res.Counts.Total() != want {
			t.Errorf("%s: counts %v, want %d (the text's finding too)", tc.ep, res.Counts, want)
		}
	}
}

// manyNames is an answer whose message has n members named after
// addresses: all mask to [EMAIL].
func manyNames(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi","x":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"u%d@example.org":%d`, i, i)
	}
	b.WriteString(`}},"finish_reason":"stop"}]}`)
	return []byte(b.String())
}

// TestManyCollidingNames: names that mask alike each keep their value
// under its own name ([EMAIL], [EMAIL]#2, …), none lost.
func TestManyCollidingNames(t *testing.T) {
	const n = 3000
	out, _, err := MaskResponse(EndpointChat, manyNames(n), testMasker(t))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Choices []struct {
			Message struct{ X map[string]int }
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	x := got.Choices[0].Message.X
	seen := map[int]bool{}
	for k, v := range x {
		if !strings.HasPrefix(k, "[EMAIL]") || seen[v] {
			t.Fatalf("member %q = %d", k, v)
		}
		seen[v] = true
	}
	if len(seen) != n {
		t.Errorf("%d of %d values kept", len(seen), n)
	}
}

// BenchmarkManyCollidingNames: renaming is linear in the names that mask
// alike (it probed from #2 for each, quadratic: 5.4 s for 10,000).
func BenchmarkManyCollidingNames(b *testing.B) {
	body := manyNames(10000)
	m := testMasker(b)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := MaskResponse(EndpointChat, body, m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUsageMemberNamesMasked: the fast paths pass usage through as
// written; one whose members are not the API's names (an address named
// with a number, under usage or its token details) goes to the generic
// path, which masks the name, in an answer and in the usage-only chunk.
func TestUsageMemberNamesMasked(t *testing.T) {
	m := testMasker(t)
	for _, usage := range []string{
		`{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"bob@example.org":9}`,
		`{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0,"bob@example.org":null}}`,
		`{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"completion_tokens_details":[{"bob@example.org":[1]}]}`,
	} {
		for _, fast := range []bool{true, false} {
			withFastPaths(fast, func() {
				body := `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":` + usage + `}`
				out, res, err := MaskResponse(EndpointChat, []byte(body), m)
				if err != nil || strings.Contains(string(out), "bob@example.org") || !res.HasUsage || res.Usage.TotalTokens != 3 {
					t.Errorf("fast %v: %s (usage %+v, %v)", fast, out, res.Usage, err)
				}
				var w strings.Builder
				chunk := `{"id":"c","object":"chat.completion.chunk","choices":[],"usage":` + usage + `}`
				if _, err := CopyStream(&w, nil, strings.NewReader("data: "+chunk+"\n\ndata: [DONE]\n\n"), EndpointChat, m); err != nil || strings.Contains(w.String(), "bob@example.org") {
					t.Errorf("fast %v: usage chunk relayed %q, %v", fast, w.String(), err)
				}
			})
		}
	}
}
