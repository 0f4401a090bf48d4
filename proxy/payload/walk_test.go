package payload

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pamctl/pamctl/proxy/mask"
)

// Every field a model reads is in Text; what pamctl cannot read is in
// Unscanned. Each case names a secret that must be found.
func TestParseRequestReadsEveryModelVisibleField(t *testing.T) {
	cases := []struct {
		name, ep, body string
		want           []string // substrings of Text
		unscanned      []string
	}{
		{"developer and system messages", EndpointChat, `{"model":"m","messages":[{"role":"developer","content":"DEV"},{"role":"system","content":[{"type":"text","text":"SYS"}]}]}`, []string{"DEV", "SYS"}, nil},
		{"message name", EndpointChat, `{"model":"m","messages":[{"role":"user","name":"NAMEFIELD","content":"x"}]}`, []string{"NAMEFIELD"}, nil},
		{"tool call name", EndpointChat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"TOOLNAME","arguments":"{}"}}]}]}`, []string{"TOOLNAME"}, nil},
		{"custom tool call", EndpointChat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"custom","custom":{"name":"CN","input":"CUSTOMIN"}}]}]}`, []string{"CN", "CUSTOMIN"}, nil},
		{"chat tool definition", EndpointChat, `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"FN","description":"FDESC","parameters":{"type":"object","properties":{"PROPNAME":{"type":"string","description":"PDESC","enum":["ENUMV"]}}}}}]}`, []string{"FN", "FDESC", "PROPNAME", "PDESC", "ENUMV"}, nil},
		{"chat custom tool grammar", EndpointChat, `{"model":"m","messages":[],"tools":[{"type":"custom","custom":{"name":"g","description":"GD","format":{"type":"grammar","grammar":{},"definition":"GRAMMAR"}}}]}`, []string{"GD"}, nil},
		{"legacy functions", EndpointChat, `{"model":"m","messages":[],"functions":[{"name":"LF","description":"LFD","parameters":{"properties":{"a":{"description":"LFP"}}}}]}`, []string{"LF", "LFD", "LFP"}, nil},
		{"response_format schema", EndpointChat, `{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"RFN","description":"RFD","schema":{"type":"object","properties":{"answer":{"description":"RFP"}},"$defs":{"DEFN":{"title":"DEFT"}}}}}}`, []string{"RFN", "RFD", "answer", "RFP", "DEFN", "DEFT"}, nil},
		{"chat image and audio parts", EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"T"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},{"type":"file","file":{"file_data":"AAAA","filename":"f.pdf"}}]}]}`,
			[]string{"T"}, []string{"messages[0].content[1] (image_url)", "messages[0].content[2] (input_audio)", "messages[0].content[3] (file)"}},
		{"assistant audio", EndpointChat, `{"model":"m","messages":[{"role":"assistant","audio":{"id":"audio_1"}}]}`, nil, []string{"messages[0].audio (audio)"}},
		{"responses instructions and tools", EndpointResponses, `{"model":"m","instructions":"INSTR","input":"x","tools":[{"type":"function","name":"RTN","description":"RTD","parameters":{"properties":{"p":{"description":"RTP"}}}},{"type":"web_search"}]}`, []string{"INSTR", "RTN", "RTD", "RTP"}, nil},
		{"responses text.format", EndpointResponses, `{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"TFN","schema":{"properties":{"q":{"description":"TFP"}}}}}}`, []string{"TFN", "TFP"}, nil},
		{"responses items of every type", EndpointResponses, `{"model":"m","input":[
			{"type":"function_call_output","call_id":"c","output":"FCO"},
			{"type":"computer_call","call_id":"c","action":{"type":"type","text":"TYPED"}},
			{"type":"computer_call_output","call_id":"c","output":{"type":"computer_screenshot","image_url":"data:image/png;base64,AAAA"}},
			{"type":"code_interpreter_call","id":"ci","code":"CODE","outputs":[{"type":"logs","logs":"LOGS"}]},
			{"type":"local_shell_call","id":"ls","call_id":"c","action":{"type":"exec","command":["CMD1","CMD2"],"env":{"K":"ENVV"}}},
			{"type":"local_shell_call_output","id":"lo","output":"LSO"},
			{"type":"mcp_call","id":"m","server_label":"s","name":"MCPN","arguments":"MCPA","output":"MCPO","error":"MCPE"},
			{"type":"mcp_list_tools","id":"l","server_label":"s","tools":[{"name":"LTN","description":"LTD","input_schema":{}}]},
			{"type":"file_search_call","id":"f","queries":["FSQ"],"results":[{"text":"FSR"}]},
			{"type":"web_search_call","id":"w","action":{"type":"search","query":"WSQ"}},
			{"type":"custom_tool_call_output","call_id":"c","output":[{"type":"input_text","text":"CTO"}]},
			{"type":"reasoning","id":"r","summary":[{"type":"summary_text","text":"RSUM"}],"encrypted_content":"opaque"},
			{"type":"future_item","note":"FUTURE"},
			{"type":"item_reference","id":"msg_1"}]}`,
			[]string{"FCO", "TYPED", "CODE", "LOGS", "CMD1", "CMD2", "ENVV", "LSO", "MCPN", "MCPA", "MCPO", "MCPE", "LTN", "LTD", "FSQ", "FSR", "WSQ", "CTO", "RSUM", "FUTURE"},
			[]string{"input[2].output.image_url (image_url)", "input[11].encrypted_content (encrypted_content)", "input[13] (item_reference)"}},
		{"responses shell and apply_patch items", EndpointResponses, `{"model":"m","input":[
			{"type":"shell_call","call_id":"c","action":{"commands":["SCMD1","SCMD2"],"timeout_ms":5}},
			{"type":"shell_call_output","call_id":"c","max_output_length":9,"output":[{"stdout":"SOUT","stderr":"SERR","outcome":{"type":"exit","exit_code":1}},{"stdout":"SOUT2","stderr":"","outcome":{"type":"timeout"}}]},
			{"type":"apply_patch_call","call_id":"p","operation":{"type":"update_file","path":"PPATH","diff":"PDIFF"}},
			{"type":"apply_patch_call_output","call_id":"p","status":"failed","output":"APO"}]}`,
			[]string{"SCMD1", "SCMD2", "SOUT", "SERR", "SOUT2", "PDIFF", "PPATH", "APO"}, nil},
		{"responses input parts", EndpointResponses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"IT"},{"type":"input_image","image_url":"https://x/y.png"},{"type":"input_file","file_data":"data:text/plain;base64,AAAA","filename":"a.txt"}]}]}`,
			[]string{"IT"}, []string{"input[0].content[1] (input_image)", "input[0].content[2] (input_file)"}},
		{"prompt variables and stored state", EndpointResponses, `{"model":"m","prompt":{"id":"pmpt_1","variables":{"city":"VARCITY","doc":{"type":"input_text","text":"VARDOC"},"img":{"type":"input_image","image_url":"https://x"}}},"previous_response_id":"resp_1","conversation":"conv_1"}`,
			[]string{"VARCITY", "VARDOC"}, []string{"prompt.id (stored prompt)", "prompt.variables.img (input_image)", "previous_response_id (stored conversation)", "conversation (stored conversation)"}},
		{"embeddings strings", EndpointEmbeddings, `{"model":"e","input":["EMB1","EMB2"]}`, []string{"EMB1", "EMB2"}, nil},
		{"embeddings token ids", EndpointEmbeddings, `{"model":"e","input":[1,2,3]}`, nil, []string{"input[0] (token ids)", "input[1] (token ids)", "input[2] (token ids)"}},
		{"embeddings token arrays", EndpointEmbeddings, `{"model":"e","input":[[1,2],[3]]}`, nil, []string{"input[0] (token ids)", "input[1] (token ids)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, fast := range []bool{true, false} {
				withFastPaths(fast, func() {
					r, err := ParseRequest(c.ep, []byte(c.body))
					if err != nil {
						t.Fatal(err)
					}
					for _, w := range c.want {
						if !strings.Contains(r.Text, w) {
							t.Errorf("fast %v: Text lacks %s: %q", fast, w, r.Text)
						}
					}
					if !reflect.DeepEqual(r.Unscanned, c.unscanned) {
						t.Errorf("fast %v: Unscanned %q, want %q", fast, r.Unscanned, c.unscanned)
					}
					// Rewriting reaches each field.
					out, err := r.Rewrite(func(s string) string { return strings.ReplaceAll(s, "X", "") + "!" })
					if err != nil {
						t.Fatal(err)
					}
					r2, err := ParseRequest(c.ep, out)
					if err != nil {
						t.Fatalf("rewritten body: %v\n%s", err, out)
					}
					if len(r2.fields) != len(r.fields) {
						t.Errorf("rewrite changed the fields: %v -> %v", r.fields, r2.fields)
					}
				})
			}
		})
	}
}

// Text parts of one content array are one text: a phrase or a secret
// split over parts is found, and a rewrite splits the result back over
// the parts consistently.
func TestContentPartsAreOneText(t *testing.T) {
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		t.Fatal(err)
	}
	key := "sk-proj-abcdefghij0123456789KLMNOPQRSTUV"
	cases := []struct {
		name, ep, body string
		text           string
		wantParts      []string // the text parts after masking
	}{
		{"chat key split over two parts", EndpointChat,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"my key is ` + key[:12] + `"},{"type":"text","text":"` + key[12:] + ` ok"}]}]}`,
			"my key is " + key + " ok", []string{"my key is [OPENAI_KEY]", " ok"}},
		{"chat key split over three parts with an image between", EndpointChat,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a ` + key[:5] + `"},{"type":"image_url","image_url":{"url":"https://x"}},{"type":"text","text":"` + key[5:20] + `"},{"type":"text","text":"` + key[20:] + ` z"}]}]}`,
			"a " + key + " z", []string{"a [OPENAI_KEY]", "", " z"}},
		{"email split, two findings", EndpointChat,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"mail bob@exa"},{"type":"text","text":"mple.com and "},{"type":"text","text":"amy@example.org"}]}]}`,
			"mail bob@example.com and amy@example.org", []string{"mail [EMAIL] and [EMAIL]", "", ""}},
		{"finding inside one part leaves others alone", EndpointChat,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"first "},{"type":"text","text":"bob@example.com"},{"type":"text","text":" last"}]}]}`,
			"first bob@example.com last", []string{"first ", "[EMAIL]", " last"}},
		{"responses input_text parts", EndpointResponses,
			`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"key ` + key[:9] + `"},{"type":"input_text","text":"` + key[9:] + `"}]}]}`,
			"key " + key, []string{"key [OPENAI_KEY]", ""}},
		{"function_call_output parts", EndpointResponses,
			`{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"` + key[:20] + `"},{"type":"input_text","text":"` + key[20:] + `"}]}]}`,
			key, []string{"[OPENAI_KEY]", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, fast := range []bool{true, false} {
				withFastPaths(fast, func() {
					r, err := ParseRequest(c.ep, []byte(c.body))
					if err != nil {
						t.Fatal(err)
					}
					if r.Text != c.text {
						t.Fatalf("fast %v: Text %q, want %q", fast, r.Text, c.text)
					}
					var calls int
					out, err := r.Rewrite(func(s string) string { calls++; o, _ := m.Mask(s); return o })
					if err != nil {
						t.Fatal(err)
					}
					if calls != 1 {
						t.Errorf("f ran %d times, want once for the content array", calls)
					}
					if strings.Contains(string(out), key[:12]) || strings.Contains(string(out), key[20:]) || strings.Contains(string(out), "bob@") {
						t.Errorf("a piece of the secret survived: %s", out)
					}
					if got := partTexts(t, out); !reflect.DeepEqual(got, c.wantParts) {
						t.Errorf("fast %v: parts %q, want %q", fast, got, c.wantParts)
					}
				})
			}
		})
	}
}

// partTexts returns the "text" of every part in the body, in order.
func partTexts(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["text"].(string); ok {
				out = append(out, s)
			}
			for _, k := range sortedKeys(x) {
				if k != "text" {
					walk(x[k])
				}
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	walk(v)
	return out
}

func TestSpreadKeepsJoin(t *testing.T) {
	cases := []struct {
		parts []string
		out   string
		want  []string
	}{
		{[]string{"ab", "cd"}, "abXcd", []string{"ab", "Xcd"}},
		{[]string{"ab", "cd"}, "abcdX", []string{"ab", "cdX"}},
		{[]string{"ab", "cd"}, "Xabcd", []string{"Xab", "cd"}},
		{[]string{"ab", "", "cd"}, "a-d", []string{"a-", "", "d"}},
		{[]string{"ab", "cd"}, "", []string{"", ""}},
		{[]string{"é", "é"}, "éè", []string{"é", "è"}},
		{[]string{"aé", "b"}, "aèb", []string{"aè", "b"}},
	}
	for _, c := range cases {
		outs := make([]string, len(c.parts))
		spread(c.parts, outs, strings.Join(c.parts, ""), c.out)
		if strings.Join(outs, "") != c.out || !reflect.DeepEqual(outs, c.want) {
			t.Errorf("spread(%q, %q) = %q, want %q", c.parts, c.out, outs, c.want)
		}
	}
}

// FuzzSpread: whatever the rewrite, the parts join to it, stay valid
// UTF-8 when it is, and keep the text around the change in place.
func FuzzSpread(f *testing.F) {
	f.Add("ab", "cd", "ef", "abXXef")
	f.Add("é", "", "ü", "éü!")
	f.Add("sk-proj-", "abc", "", "[KEY]")
	f.Fuzz(func(t *testing.T, a, b, c, out string) {
		parts := []string{a, b, c}
		in := a + b + c
		outs := make([]string, 3)
		spread(parts, outs, in, out)
		if strings.Join(outs, "") != out {
			t.Fatalf("spread(%q, %q) = %q", parts, out, outs)
		}
		if !utf8.ValidString(in) || !utf8.ValidString(out) {
			return // request texts are valid UTF-8 (Validate)
		}
		for _, o := range outs {
			if !utf8.ValidString(o) {
				t.Fatalf("spread(%q, %q) = %q: invalid UTF-8", parts, out, outs)
			}
		}
		if strings.HasPrefix(out, a) && strings.HasPrefix(in, a) && len(a) > 0 && !strings.HasPrefix(outs[0], a) {
			t.Fatalf("spread(%q, %q) = %q: the first part lost its unchanged start", parts, out, outs)
		}
	})
}
