package payload

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

func TestParseRequest(t *testing.T) {
	cases := []struct {
		name, ep, body string
		model          string
		stream         bool
		text           string
	}{
		{"chat", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[
			{"role":"system","content":"be brief"},
			{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
			{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"q\":1}"}}]},
			{"role":"tool","tool_call_id":"c1","content":"result text"}]}`,
			"gpt-4o", true, "be brief\nhello\nf\n{\"q\":1}\nresult text"},
		{"chat without v1 prefix", "/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "m", false, "hi"},
		{"responses string", "/v1/responses", `{"model":"gpt-4.1","input":"what is 2+2","instructions":"answer"}`, "gpt-4.1", false, "answer\nwhat is 2+2"},
		{"responses items", "/v1/responses", `{"model":"o3","stream":true,"input":[
			{"role":"user","content":"plain"},
			{"type":"message","role":"user","content":[{"type":"input_text","text":"part"},{"type":"input_image","image_url":"data:..."}]},
			{"type":"function_call","call_id":"c","name":"f","arguments":"{\"a\":2}"},
			{"type":"function_call_output","call_id":"c","output":"tool says hi"},
			{"type":"function_call_output","call_id":"d","output":[{"type":"input_text","text":"tool part"}]},
			{"type":"item_reference","id":"x"}]}`,
			"o3", true, "plain\npart\n{\"a\":2}\nf\ntool says hi\ntool part"},
		{"embeddings string", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"embed me"}`, "text-embedding-3-small", false, "embed me"},
		{"embeddings array", "/v1/embeddings", `{"model":"e","input":["a","b"]}`, "e", false, "a\nb"},
		{"embeddings tokens", "/v1/embeddings", `{"model":"e","input":[[1,2,3]]}`, "e", false, ""},
	}
	for _, c := range cases {
		r, err := ParseRequest(c.ep, []byte(c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Model != c.model || r.Stream != c.stream || r.Text != c.text {
			t.Errorf("%s: got model %q stream %v text %q", c.name, r.Model, r.Stream, r.Text)
		}
	}
}

func TestParseRequestErrors(t *testing.T) {
	if _, err := ParseRequest("/v1/images/generations", []byte(`{}`)); !errors.Is(err, ErrUnsupportedEndpoint) {
		t.Errorf("unsupported endpoint: %v", err)
	}
	for _, body := range []string{``, `[1]`, `{"a":`, `null`, `{"a":1} x`} {
		if _, err := ParseRequest(EndpointChat, []byte(body)); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("body %q: %v", body, err)
		}
	}
}

func TestRequestRewrite(t *testing.T) {
	body := `{"model":"gpt-4o","temperature":0.70,"seed":12345678901234567890,"metadata":{"k":"v <&>"},
		"messages":[{"role":"user","content":"mail bob@example.com"},
		{"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"key sk-proj-abc123def456ghi789jkl012"}]}]}`
	r, err := ParseRequest(EndpointChat, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mask.New(mask.Config{Default: mask.ActionRedact})
	if err != nil {
		t.Fatal(err)
	}
	counts := mask.Counts{}
	out, err := r.Rewrite(func(s string) string {
		out, c := m.Mask(s)
		counts.Add(c)
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
	if counts.Total() != 2 {
		t.Errorf("counts %v", counts)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("rewritten body is not JSON: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{`"temperature":0.70`, `"seed":12345678901234567890`, `"k":"v <&>"`, `mail [REDACTED]`, `key [REDACTED]`, `"tool_call_id":"c1"`} {
		if !strings.Contains(s, want) {
			t.Errorf("rewritten body lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "bob@example.com") || strings.Contains(s, "sk-proj") {
		t.Errorf("secret survived: %s", s)
	}
	// The parsed request is not changed by a rewrite.
	if !strings.Contains(r.Text, "bob@example.com") {
		t.Error("Rewrite changed the parsed request")
	}
	// Nothing to change: the same bytes come back.
	same, err := r.Rewrite(func(s string) string { return s })
	if err != nil || string(same) != body {
		t.Errorf("identity rewrite changed the body: %v", err)
	}
}

func TestRequestRewriteResponses(t *testing.T) {
	body := `{"model":"o3","instructions":"x@example.com","input":[{"type":"function_call_output","call_id":"c","output":"123-45-6789"},{"role":"user","content":[{"type":"input_text","text":"hi"}]}]}`
	r, err := ParseRequest(EndpointResponses, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Rewrite(strings.ToUpper)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ParseRequest(EndpointResponses, out)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Text != "X@EXAMPLE.COM\n123-45-6789\nHI" || r2.Model != "o3" {
		t.Errorf("rewritten text %q", r2.Text)
	}
	if !strings.Contains(string(out), `"call_id":"c"`) {
		t.Errorf("other fields lost: %s", out)
	}
}

// The proxy reads stream_options.include_usage and adds it when absent, so
// a case variant of it (Unicode simple folding, as encoding/json matches
// keys) is refused like any read key: beside the member the proxy adds, a
// case-insensitive upstream would read one of two spellings. The exact
// spelling is read as before, whatever its value, and the usual chat
// request keeps the fast path.
func TestStreamOptionsIncludeUsageIsReadOnlyInItsOwnSpelling(t *testing.T) {
	cases := []struct {
		opts    string
		refused bool
	}{
		{`{"Include_Usage":true}`, true},
		{`{"Include_Usage":false}`, true},
		{`{"INCLUDE_USAGE":true}`, true},
		{`{"include_usagE":null}`, true},
		{`{"include_u` + "\u017f" + `age":true}`, true}, // long s, raw
		{`{"include_u\u017fage":false}`, true},          // long s, escaped
		{`{"incl\u0055de_usage":true}`, true},           // escaped capital U
		{`{"include_obfuscation":false,"Include_usage":true}`, true},
		{`{"include_usage":true}`, false},
		{`{"include_usage":false}`, false},
		{`{"include_usage":null}`, false},
		{`{"include_usage":1}`, false},
		{`{"include_usage":"yes"}`, false},
		{`{"include_usage":true,"include_obfuscation":false}`, false},
		{`{"include_obfuscation":true}`, false},
		{`{}`, false},
		{`null`, false},
	}
	for _, c := range cases {
		body := `{"model":"m","stream":true,"stream_options":` + c.opts + `,"messages":[{"role":"user","content":"hi"}]}`
		t.Run(c.opts, func(t *testing.T) {
			eachPath(t, func(t *testing.T) {
				r, err := ParseRequest(EndpointChat, []byte(body))
				if !c.refused {
					if err != nil {
						t.Fatal(err)
					}
					if !r.Stream || r.Text != "hi" || r.scanned != fastPaths {
						t.Errorf("stream %v text %q scanned %v, want true, \"hi\", %v", r.Stream, r.Text, r.scanned, fastPaths)
					}
					return
				}
				var amb *AmbiguityError
				if !errors.As(err, &amb) {
					t.Fatalf("err = %v, want an *AmbiguityError", err)
				}
				if !strings.HasPrefix(amb.Path, "stream_options.") || !strings.Contains(amb.Problem, `"include_usage"`) {
					t.Errorf("error %q: want it at stream_options, naming include_usage", err)
				}
			})
		})
	}
}
