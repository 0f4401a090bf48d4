package payload

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

func newMasker(t testing.TB) *mask.Masker {
	t.Helper()
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fakeKey builds a key-shaped value at run time.
func fakeKey() string { return "sk-" + "proj-" + strings.Repeat("Ab3", 12) }

func TestMaskResponseChat(t *testing.T) {
	key := fakeKey()
	body := `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[
		{"index":0,"message":{"role":"assistant","content":"Your key is ` + key + ` and mail a@example.com","refusal":null,
		 "tool_calls":[{"id":"c","type":"function","function":{"name":"send","arguments":"{\"to\":\"b@example.com\"}"}}]},
		 "logprobs":{"content":[{"token":"sk","logprob":-0.1}]},"finish_reason":"stop"}],
		"usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33}}`
	out, res, err := MaskResponse(EndpointChat, []byte(body), newMasker(t))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, key) || strings.Contains(s, "example.com") || strings.Contains(s, `"token"`) {
		t.Errorf("secret or logprobs survived: %s", s)
	}
	var v struct {
		Choices []struct {
			Message struct {
				Content   string
				ToolCalls []struct{ Function struct{ Arguments string } } `json:"tool_calls"`
			}
		}
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("masked body is not JSON: %v", err)
	}
	if got := v.Choices[0].Message.Content; got != "Your key is [OPENAI_KEY] and mail [EMAIL]" {
		t.Errorf("content %q", got)
	}
	if got := v.Choices[0].Message.ToolCalls[0].Function.Arguments; got != `{"to":"[EMAIL]"}` {
		t.Errorf("arguments %q", got)
	}
	if res.Counts[mask.TypeEmail] != 2 || res.Counts[mask.TypeOpenAIKey] != 1 {
		t.Errorf("counts %v", res.Counts)
	}
	if !res.HasUsage || res.Usage != (Usage{InputTokens: 11, OutputTokens: 22, TotalTokens: 33}) {
		t.Errorf("usage %+v", res.Usage)
	}
	if res.Summary != "Your key is [OPENAI_KEY] and mail [EMAIL]" {
		t.Errorf("summary %q", res.Summary)
	}
}

func TestMaskResponseResponses(t *testing.T) {
	body := `{"id":"resp_1","object":"response","output":[
		{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"user 123-45-6789"}]},
		{"id":"msg_1","type":"message","role":"assistant","content":[
			{"type":"output_text","text":"call +1 415 555 2671","annotations":[],"logprobs":[{"token":"+1"}]},
			{"type":"refusal","refusal":"no a@example.com"}]},
		{"id":"fc_1","type":"function_call","name":"lookup","arguments":"{\"ip\":\"10.0.0.1\"}"}],
		"output_text":"call +1 415 555 2671",
		"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}`
	out, res, err := MaskResponse("/v1/responses", []byte(body), newMasker(t))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, leak := range []string{"6789", "2671", "example.com", "10.0.0.1", `"token"`} {
		if strings.Contains(s, leak) {
			t.Errorf("%s survived: %s", leak, s)
		}
	}
	if !json.Valid(out) {
		t.Fatal("masked body is not JSON")
	}
	if res.Counts.Total() != 4 || res.Counts[mask.TypePhone] != 1 {
		t.Errorf("counts %v", res.Counts)
	}
	if res.Usage != (Usage{InputTokens: 5, OutputTokens: 7, TotalTokens: 12}) {
		t.Errorf("usage %+v", res.Usage)
	}
	if res.Summary != "call [PHONE]" {
		t.Errorf("summary %q", res.Summary)
	}
}

func TestMaskResponseUnchanged(t *testing.T) {
	body := []byte(`{"object":"list","data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":3,"total_tokens":3}}`)
	out, res, err := MaskResponse(EndpointEmbeddings, body, newMasker(t))
	if err != nil || string(out) != string(body) {
		t.Fatalf("embeddings body changed: %v %s", err, out)
	}
	if res.Usage != (Usage{InputTokens: 3, TotalTokens: 3}) {
		t.Errorf("usage %+v", res.Usage)
	}
	// Masking off: the body is returned as is, usage still read.
	chat := []byte(`{"choices":[{"index":0,"message":{"content":"a@example.com"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`)
	out, res, err = MaskResponse(EndpointChat, chat, nil)
	if err != nil || string(out) != string(chat) || res.Usage.TotalTokens != 3 || res.Summary != "a@example.com" {
		t.Errorf("masking off: %v %s %+v", err, out, res)
	}
	// Not JSON: masked as text.
	out, res, err = MaskResponse(EndpointChat, []byte("upstream said a@example.com"), newMasker(t))
	if err != nil || string(out) != "upstream said [EMAIL]" || res.Counts.Total() != 1 {
		t.Errorf("non-JSON body: %v %q", err, out)
	}
}

func TestSummaryBounded(t *testing.T) {
	var s summary
	s.add(strings.Repeat("é", SummaryBytes))
	if got := s.String(); len(got) > SummaryBytes || !strings.HasPrefix(got, "éé") || len(got)%2 != 0 {
		t.Errorf("summary of %d bytes cut inside a rune", len(got))
	}
	var tools summary
	tools.tool("lookup", `{"q":1}`)
	if tools.String() != `lookup({"q":1})` {
		t.Errorf("tool summary %q", tools.String())
	}
}

// TestMaskResponseRefusesUnreadableJSON: an answer a client's decoder may
// read as JSON holding text (an object or array Go refuses, a BOM, a
// top-level string, whose escapes the text masker would not read) is
// withheld with ErrUnreadableJSON, masking on or off; text that is not
// JSON is masked as text.
func TestMaskResponseRefusesUnreadableJSON(t *testing.T) {
	for _, m := range []*mask.Masker{testMasker(t), nil} {
		for _, body := range []string{
			`"mail bob\u0040example.org"`,
			" \r\n\"mail bob\\u0040example.org\"",
			"\ufeff\"mail bob\\u0040example.org\"",
			`{"choices":[{"message":{"content":"mail bob\u0040example.org"}}],"x":NaN}`,
			"\ufeff{\"choices\":[]}",
			`["mail bob\u0040example.org"]`,
		} {
			_, _, err := MaskResponse(EndpointChat, []byte(body), m)
			if !errors.Is(err, ErrUnreadableJSON) {
				t.Errorf("masking %v: %q: err %v, want ErrUnreadableJSON", m.Enabled(), body, err)
			}
		}
	}
	out, _, err := MaskResponse(EndpointChat, []byte("mail bob@example.org"), testMasker(t))
	if err != nil || strings.Contains(string(out), "bob@example.org") {
		t.Errorf("plain text: %q, %v", out, err)
	}
}
