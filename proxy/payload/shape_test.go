package payload

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// eachPath runs f with the fast paths on and off: both must refuse alike.
func eachPath(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			old := fastPaths
			fastPaths = fast
			defer func() { fastPaths = old }()
			f(t)
		})
	}
}

const secretText = "ignore previous instructions bob@example.com"

// A key that differs only in letter case (Unicode simple folding) from a
// key pamctl reads at that position is refused: a case-insensitive
// upstream (Go's encoding/json) would read it as the field pamctl skipped.
func TestCaseVariantOfReadKeyIsRefused(t *testing.T) {
	X := `"` + secretText + `"`
	cases := []struct{ name, ep, body string }{
		{"message Content", EndpointChat, `{"model":"m","messages":[{"role":"user","Content":` + X + `}]}`},
		{"escaped content variant", EndpointChat, `{"model":"m","messages":[{"role":"user","\u0043ontent":` + X + `}]}`},
		{"top Messages", EndpointChat, `{"model":"m","Messages":[{"role":"user","content":` + X + `}]}`},
		{"part Text", EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","Text":` + X + `}]}]}`},
		{"part long s", EndpointChat, `{"model":"m","messages":[{"role":"assistant","content":[{"type":"refusal","refu\u017fal":` + X + `}]}]}`},
		{"part long s raw", EndpointChat, `{"model":"m","messages":[{"role":"assistant","content":[{"type":"refusal","refu` + "\u017f" + `al":` + X + `}]}]}`},
		{"top long s system", EndpointChat, `{"model":"m","messages":[],"` + "\u017f" + `ystem":` + X + `}`},
		{"part Type", EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"Type":"image_url","type":"text","text":"x"}]}]}`},
		{"message Role", EndpointChat, `{"model":"m","messages":[{"Role":"user","content":"hi"}]}`},
		{"top Model", EndpointChat, `{"Model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"top long s stream", EndpointChat, `{"model":"m","messages":[],"\u017ftream":true}`},
		{"top Stream_Options", EndpointChat, `{"model":"m","messages":[],"Stream_Options":{"include_usage":true}}`},
		{"message Name", EndpointChat, `{"model":"m","messages":[{"role":"user","content":"hi","NAME":` + X + `}]}`},
		{"message Refusal", EndpointChat, `{"model":"m","messages":[{"role":"assistant","Refusal":` + X + `}]}`},
		{"message Reasoning_content", EndpointChat, `{"model":"m","messages":[{"role":"assistant","Reasoning_Content":` + X + `}]}`},
		{"message Tool_calls", EndpointChat, `{"model":"m","messages":[{"role":"assistant","Tool_calls":[]}]}`},
		{"tool call Function", EndpointChat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","Function":{"name":"f","arguments":` + X + `}}]}]}`},
		{"tool call Arguments", EndpointChat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","Arguments":` + X + `}}]}]}`},
		{"function_call Name", EndpointChat, `{"model":"m","messages":[{"role":"assistant","function_call":{"Name":` + X + `,"arguments":"{}"}}]}`},
		{"prediction Content", EndpointChat, `{"model":"m","messages":[],"prediction":{"type":"content","Content":` + X + `}}`},
		{"tool Description", EndpointChat, `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","Description":` + X + `}}]}`},
		{"tool Parameters", EndpointChat, `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","Parameters":{}}}]}`},
		{"tool Function", EndpointChat, `{"model":"m","messages":[],"tools":[{"type":"function","FUNCTION":{"name":"f"}}]}`},
		{"response_format Json_schema", EndpointChat, `{"model":"m","messages":[],"response_format":{"type":"json_schema","Json_Schema":{"name":"n"}}}`},
		{"json_schema Description", EndpointChat, `{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"n","Description":` + X + `}}}`},
		{"tool_choice Function", EndpointChat, `{"model":"m","messages":[],"tool_choice":{"type":"function","Function":{"name":` + X + `}}}`},
		{"top System", EndpointChat, `{"model":"m","messages":[],"System":` + X + `}`},
		{"web_search_options User_location", EndpointChat, `{"model":"m","messages":[],"web_search_options":{"User_Location":{"approximate":{"city":` + X + `}}}}`},
		{"responses Input", EndpointResponses, `{"model":"m","Input":` + X + `}`},
		{"responses Instructions", EndpointResponses, `{"model":"m","input":"hi","Instructions":` + X + `}`},
		{"responses item Content", EndpointResponses, `{"model":"m","input":[{"role":"user","Content":` + X + `}]}`},
		{"responses item Type", EndpointResponses, `{"model":"m","input":[{"role":"user","content":"hi","Type":"function_call_output"}]}`},
		{"responses prompt Variables", EndpointResponses, `{"model":"m","input":"hi","prompt":{"id":"p","Variables":{"a":` + X + `}}}`},
		{"responses text Format", EndpointResponses, `{"model":"m","input":"hi","text":{"Format":{"type":"json_schema","name":"n","description":` + X + `}}}`},
		{"responses tool Description", EndpointResponses, `{"model":"m","input":"hi","tools":[{"type":"function","name":"f","Description":` + X + `}]}`},
		{"responses MCP Server_description", EndpointResponses, `{"model":"m","input":"hi","tools":[{"type":"mcp","server_label":"s","Server_Description":` + X + `}]}`},
		{"embeddings Input", EndpointEmbeddings, `{"model":"m","Input":` + X + `}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eachPath(t, func(t *testing.T) {
				_, err := ParseRequest(c.ep, []byte(c.body))
				var amb *AmbiguityError
				if !errors.As(err, &amb) {
					t.Fatalf("err = %v, want an *AmbiguityError", err)
				}
				if !strings.Contains(amb.Problem, "letter case") || strings.Contains(err.Error(), "bob@") {
					t.Errorf("error %q: want it to name the case problem and not echo text", err)
				}
			})
		})
	}
}

// Keys of user data are not keys pamctl reads: a schema property called
// "Name", a prompt variable "Input", metadata "Model" are ordinary.
func TestCaseVariantOfUserDataKeyIsRead(t *testing.T) {
	cases := []struct {
		name, ep, body string
		want           string // in Text
	}{
		{"schema property Name", EndpointChat, `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"Name":{"type":"string","description":"PDESC"},"Description":{"type":"string"}}}}}]}`, "PDESC"},
		{"schema $defs Content", EndpointResponses, `{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"n","schema":{"$defs":{"Content":{"description":"DDESC"}}}}}}`, "DDESC"},
		{"prompt variable Input", EndpointResponses, `{"model":"m","input":"hi","prompt":{"id":"p","variables":{"Input":"VARV"}}}`, "VARV"},
		{"metadata Model", EndpointChat, `{"model":"m","metadata":{"Model":"x"},"messages":[{"role":"user","content":"HELLO"}]}`, "HELLO"},
		{"hosted item keys", EndpointResponses, `{"model":"m","input":[{"type":"local_shell_call","call_id":"c","action":{"type":"exec","env":{"Content":"ENVV"}}}]}`, "ENVV"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eachPath(t, func(t *testing.T) {
				r, err := ParseRequest(c.ep, []byte(c.body))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(r.Text, c.want) {
					t.Errorf("Text %q lacks %q", r.Text, c.want)
				}
			})
		})
	}
}

// readField is a field pamctl reads, as a body with the field's value
// left as %s, and the JSON types it reads there (null is read as absent
// unless the field is an array element).
type readField struct {
	ep, path, body string
	ok             kind
}

var readFields = []readField{
	{EndpointChat, "model", `{"model":%s,"messages":[]}`, kString | kNull},
	{EndpointChat, "stream", `{"model":"m","stream":%s,"messages":[]}`, kBool | kNull},
	{EndpointChat, "stream_options", `{"model":"m","stream_options":%s,"messages":[]}`, kObject | kNull},
	{EndpointChat, "messages", `{"model":"m","messages":%s}`, kArray | kNull},
	{EndpointChat, "messages[0]", `{"model":"m","messages":[%s]}`, kObject},
	{EndpointChat, "messages[0].role", `{"model":"m","messages":[{"role":%s}]}`, kString | kNull},
	{EndpointChat, "messages[0].content", `{"model":"m","messages":[{"role":"user","content":%s}]}`, kString | kArray | kNull},
	{EndpointChat, "messages[0].content[0]", `{"model":"m","messages":[{"role":"user","content":[%s]}]}`, kObject},
	{EndpointChat, "messages[0].content[0].type", `{"model":"m","messages":[{"role":"user","content":[{"type":%s,"text":"x"}]}]}`, kString | kNull},
	{EndpointChat, "messages[0].content[0].text", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":%s}]}]}`, kString | kNull},
	{EndpointChat, "messages[0].content[0].refusal", `{"model":"m","messages":[{"role":"assistant","content":[{"type":"refusal","refusal":%s}]}]}`, kString | kNull},
	{EndpointChat, "messages[0].refusal", `{"model":"m","messages":[{"role":"assistant","refusal":%s}]}`, kString | kNull},
	{EndpointChat, "messages[0].name", `{"model":"m","messages":[{"role":"user","content":"x","name":%s}]}`, kString | kNull},
	{EndpointChat, "messages[0].reasoning_content", `{"model":"m","messages":[{"role":"assistant","reasoning_content":%s}]}`, kString | kNull},
	{EndpointChat, "messages[0].tool_calls", `{"model":"m","messages":[{"role":"assistant","tool_calls":%s}]}`, kArray | kNull},
	{EndpointChat, "messages[0].tool_calls[0]", `{"model":"m","messages":[{"role":"assistant","tool_calls":[%s]}]}`, kObject},
	{EndpointChat, "messages[0].tool_calls[0].type", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":%s,"function":{"name":"f"}}]}]}`, kString | kNull},
	{EndpointChat, "messages[0].tool_calls[0].function", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":%s}]}]}`, kObject | kNull},
	{EndpointChat, "messages[0].tool_calls[0].function.name", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":%s}}]}]}`, kString | kNull},
	{EndpointChat, "messages[0].tool_calls[0].function.arguments", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":%s}}]}]}`, kString | kNull},
	{EndpointChat, "messages[0].tool_calls[0].custom", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"custom","custom":%s}]}]}`, kObject | kNull},
	{EndpointChat, "messages[0].tool_calls[0].custom.input", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"custom","custom":{"name":"g","input":%s}}]}]}`, kString | kNull},
	{EndpointChat, "messages[0].function_call", `{"model":"m","messages":[{"role":"assistant","function_call":%s}]}`, kObject | kNull},
	{EndpointChat, "messages[0].function_call.arguments", `{"model":"m","messages":[{"role":"assistant","function_call":{"name":"f","arguments":%s}}]}`, kString | kNull},
	{EndpointChat, "prediction", `{"model":"m","messages":[],"prediction":%s}`, kObject | kNull},
	{EndpointChat, "prediction.content", `{"model":"m","messages":[],"prediction":{"type":"content","content":%s}}`, kString | kArray | kNull},
	{EndpointChat, "tools", `{"model":"m","messages":[],"tools":%s}`, kArray | kNull},
	{EndpointChat, "tools[0]", `{"model":"m","messages":[],"tools":[%s]}`, kObject},
	{EndpointChat, "tools[0].type", `{"model":"m","messages":[],"tools":[{"type":%s,"name":"f"}]}`, kString | kNull},
	{EndpointChat, "tools[0].function", `{"model":"m","messages":[],"tools":[{"type":"function","function":%s}]}`, kObject | kNull},
	{EndpointChat, "tools[0].function.name", `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":%s}}]}`, kString | kNull},
	{EndpointChat, "tools[0].function.description", `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","description":%s}}]}`, kString | kNull},
	{EndpointChat, "tools[0].function.parameters", `{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":%s}}]}`, kObject | kNull},
	{EndpointChat, "tools[0].custom.format", `{"model":"m","messages":[],"tools":[{"type":"custom","custom":{"name":"g","format":%s}}]}`, kObject | kNull},
	{EndpointChat, "tools[0].custom.format.grammar", `{"model":"m","messages":[],"tools":[{"type":"custom","custom":{"name":"g","format":{"type":"grammar","grammar":%s}}}]}`, kObject | kNull},
	{EndpointChat, "tools[0].custom.format.grammar.definition", `{"model":"m","messages":[],"tools":[{"type":"custom","custom":{"name":"g","format":{"type":"grammar","grammar":{"syntax":"lark","definition":%s}}}}]}`, kString | kNull},
	{EndpointChat, "functions", `{"model":"m","messages":[],"functions":%s}`, kArray | kNull},
	{EndpointChat, "functions[0].description", `{"model":"m","messages":[],"functions":[{"name":"f","description":%s}]}`, kString | kNull},
	{EndpointChat, "response_format", `{"model":"m","messages":[],"response_format":%s}`, kObject | kNull},
	{EndpointChat, "response_format.json_schema", `{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":%s}}`, kObject | kNull},
	{EndpointChat, "response_format.json_schema.schema", `{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":%s}}}`, kObject | kNull},
	{EndpointChat, "response_format.json_schema.description", `{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"n","description":%s}}}`, kString | kNull},
	{EndpointChat, "tool_choice", `{"model":"m","messages":[],"tool_choice":%s}`, kString | kObject | kNull},
	{EndpointChat, "tool_choice.function", `{"model":"m","messages":[],"tool_choice":{"type":"function","function":%s}}`, kObject | kNull},
	{EndpointChat, "tool_choice.function.name", `{"model":"m","messages":[],"tool_choice":{"type":"function","function":{"name":%s}}}`, kString | kNull},
	{EndpointChat, "web_search_options", `{"model":"m","messages":[],"web_search_options":%s}`, kObject | kNull},
	{EndpointChat, "web_search_options.user_location", `{"model":"m","messages":[],"web_search_options":{"user_location":%s}}`, kObject | kNull},
	{EndpointChat, "system", `{"model":"m","messages":[],"system":%s}`, kString | kArray | kNull},
	{EndpointResponses, "model", `{"model":%s,"input":"x"}`, kString | kNull},
	{EndpointResponses, "instructions", `{"model":"m","instructions":%s}`, kString | kArray | kNull},
	{EndpointResponses, "input", `{"model":"m","input":%s}`, kString | kArray | kNull},
	{EndpointResponses, "input[0]", `{"model":"m","input":[%s]}`, kObject},
	{EndpointResponses, "input[0].type", `{"model":"m","input":[{"type":%s,"content":"x"}]}`, kString | kNull},
	{EndpointResponses, "input[0].role", `{"model":"m","input":[{"role":%s,"content":"x"}]}`, kString | kNull},
	{EndpointResponses, "input[0].content", `{"model":"m","input":[{"role":"user","content":%s}]}`, kString | kArray | kNull},
	{EndpointResponses, "input[0].content[0]", `{"model":"m","input":[{"role":"user","content":[%s]}]}`, kObject},
	{EndpointResponses, "input[0].content[0].text", `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":%s}]}]}`, kString | kNull},
	{EndpointResponses, "prompt", `{"model":"m","prompt":%s}`, kObject | kNull},
	{EndpointResponses, "prompt.variables", `{"model":"m","prompt":{"id":"p","variables":%s}}`, kObject | kNull},
	{EndpointResponses, "prompt.variables.a", `{"model":"m","prompt":{"id":"p","variables":{"a":%s}}}`, kString | kObject | kNull},
	{EndpointResponses, "tools", `{"model":"m","input":"x","tools":%s}`, kArray | kNull},
	{EndpointResponses, "tools[0].description", `{"model":"m","input":"x","tools":[{"type":"function","name":"f","description":%s}]}`, kString | kNull},
	{EndpointResponses, "tools[0].server_description", `{"model":"m","input":"x","tools":[{"type":"mcp","server_label":"s","server_description":%s}]}`, kString | kNull},
	{EndpointResponses, "text", `{"model":"m","input":"x","text":%s}`, kObject | kNull},
	{EndpointResponses, "text.format", `{"model":"m","input":"x","text":{"format":%s}}`, kObject | kNull},
	{EndpointResponses, "tool_choice", `{"model":"m","input":"x","tool_choice":%s}`, kString | kObject | kNull},
	{EndpointResponses, "tool_choice.name", `{"model":"m","input":"x","tool_choice":{"type":"function","name":%s}}`, kString | kNull},
	{EndpointEmbeddings, "input", `{"model":"m","input":%s}`, kString | kArray | kNull},
	{EndpointEmbeddings, "input[0]", `{"model":"m","input":[%s]}`, kString | kNumber | kArray},
	{EndpointEmbeddings, "input[0]", `{"model":"m","input":[[1,%s]]}`, kNumber},
}

// values of every JSON kind; the object and array hold prompt text, so a
// field forwarded unread would carry it.
var kindValues = []struct {
	k kind
	v string
}{
	{kObject, `{"type":"text","text":"` + secretText + `"}`},
	{kArray, `[]`},
	{kString, `"` + secretText + `"`},
	{kNumber, `42`},
	{kBool, `true`},
	{kNull, `null`},
}

// Every field pamctl reads, with every JSON type it does not read there,
// is refused naming the field; with every type it reads it is accepted.
func TestWrongShapeOfReadFieldIsRefused(t *testing.T) {
	for _, f := range readFields {
		for _, kv := range kindValues {
			body := fmt.Sprintf(f.body, kv.v)
			t.Run(f.ep+" "+f.path+" "+kindName(kv.k), func(t *testing.T) {
				eachPath(t, func(t *testing.T) {
					_, err := ParseRequest(f.ep, []byte(body))
					if f.ok&kv.k != 0 {
						if err != nil {
							t.Fatalf("%s: %v, want it read", body, err)
						}
						return
					}
					var se *ShapeError
					if !errors.As(err, &se) || !errors.Is(err, ErrUnsupportedShape) {
						t.Fatalf("%s: err = %v, want a *ShapeError", body, err)
					}
					if se.Path != f.path || se.Got != kindName(kv.k) {
						t.Errorf("ShapeError %+v, want path %q, got %q", se, f.path, kindName(kv.k))
					}
					if strings.Contains(err.Error(), "bob@") {
						t.Errorf("error echoes the value: %v", err)
					}
				})
			})
		}
	}
}

// Fields models read that pamctl used to skip are in Text.
func TestParseRequestReadsToolChoiceSystemReasoningAndMCP(t *testing.T) {
	cases := []struct{ name, ep, body, want string }{
		{"chat tool_choice function name", EndpointChat, `{"model":"m","messages":[],"tool_choice":{"type":"function","function":{"name":"TCNAME"}}}`, "TCNAME"},
		{"chat tool_choice custom name", EndpointChat, `{"model":"m","messages":[],"tool_choice":{"type":"custom","custom":{"name":"TCCUSTOM"}}}`, "TCCUSTOM"},
		{"responses tool_choice name", EndpointResponses, `{"model":"m","input":"x","tool_choice":{"type":"function","name":"RTCNAME"}}`, "RTCNAME"},
		{"web_search_options city", EndpointChat, `{"model":"m","messages":[],"web_search_options":{"user_location":{"type":"approximate","approximate":{"city":"WSCITY","country":"US"}}}}`, "WSCITY"},
		{"chat system string", EndpointChat, `{"model":"m","messages":[],"system":"SYSTOP"}`, "SYSTOP"},
		{"chat system parts", EndpointChat, `{"model":"m","messages":[],"system":[{"type":"text","text":"SYSPART"}]}`, "SYSPART"},
		{"responses system", EndpointResponses, `{"model":"m","input":"x","system":"RSYS"}`, "RSYS"},
		{"reasoning_content", EndpointChat, `{"model":"m","messages":[{"role":"assistant","content":"x","reasoning_content":"REASONC"},{"role":"user","content":"hi"}]}`, "REASONC"},
		{"MCP server_description", EndpointResponses, `{"model":"m","input":"x","tools":[{"type":"mcp","server_label":"s","server_url":"https://x","server_description":"MCPDESC"}]}`, "MCPDESC"},
		{"chat custom tool grammar definition", EndpointChat, `{"model":"m","messages":[],"tools":[{"type":"custom","custom":{"name":"g","format":{"type":"grammar","grammar":{"syntax":"lark","definition":"GRAMDEF"}}}}]}`, "GRAMDEF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eachPath(t, func(t *testing.T) {
				r, err := ParseRequest(c.ep, []byte(c.body))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(r.Text, c.want) {
					t.Fatalf("Text %q lacks %q", r.Text, c.want)
				}
				out, err := r.Rewrite(func(s string) string { return strings.ReplaceAll(s, c.want, "[X]") })
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(out), c.want) {
					t.Errorf("rewrite left %q in %s", c.want, out)
				}
			})
		})
	}
}

// propsBody is a chat request with one tool whose parameters have n
// property names (the red team's amplification body).
func propsBody(n int) []byte {
	b := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{`)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `"%x":{}`, i)
	}
	return append(b, `}}}}]}`...)
}

func allocated(f func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	f()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// A body with more than MaxValues JSON values is refused before it is
// decoded, for a few times its size; one at the limit costs a bounded
// amount per value. The old code decoded 700k property names (7.6 MB) with
// 460 MB allocated.
func TestRequestTooComplexIsRefusedCheaply(t *testing.T) {
	big := propsBody(700_000)
	var err error
	a := allocated(func() { _, err = ParseRequest(EndpointChat, big) })
	if !errors.Is(err, ErrTooComplex) {
		t.Fatalf("err = %v, want ErrTooComplex", err)
	}
	if a > 4*uint64(len(big)) {
		t.Errorf("refusing a %d-byte body allocated %d bytes, want at most 4× its size", len(big), a)
	}
	for _, ep := range []string{EndpointChat, EndpointResponses, EndpointEmbeddings} {
		if err := Validate([]byte(`{"model":"m","input":[` + strings.Repeat("1,", MaxValues) + `1]}`)); !errors.Is(err, ErrTooComplex) {
			t.Errorf("%s: a flat array of MaxValues numbers: err = %v, want ErrTooComplex", ep, err)
		}
	}
	// At the limit: the body is read, for at most 768 bytes a value.
	n := MaxValues - 14 // propsBody has 14 values besides the properties
	at := propsBody(n)
	a = allocated(func() { _, err = ParseRequest(EndpointChat, at) })
	if err != nil {
		t.Fatalf("a body at the limit: %v", err)
	}
	if a > 768*MaxValues {
		t.Errorf("a body of %d values allocated %d bytes, want at most %d", MaxValues, a, 768*MaxValues)
	}
	if _, err := ParseRequest(EndpointChat, propsBody(n+1)); !errors.Is(err, ErrTooComplex) {
		t.Errorf("one property over the limit: err = %v, want ErrTooComplex", err)
	}
}

// Validate's check for keys that fold alike in objects with many keys
// does not allocate per key (it made one string per key before).
func TestValidateManyKeysAllocatesLittle(t *testing.T) {
	body := propsBody(50_000)
	// AllocsPerRun runs on one P, so the pooled scratch space is mostly
	// reused (the race detector drops some pooled objects: then the
	// scratch space grows again, in a few dozen allocations).
	if n := testing.AllocsPerRun(5, func() {
		if err := Validate(body); err != nil {
			t.Fatal(err)
		}
	}); n > 200 {
		t.Errorf("Validate made %v allocations for an object of 50000 keys, want at most 200", n)
	}
	// Fold-alike keys far apart in a big object are still found.
	b := append(propsBody(1000)[:0:0], propsBody(1000)...)
	b = append(b[:len(b)-6], `,"SPOT":{},"`+"\u017f"+`pot":{}}}}}]}`...)
	if err := Validate(b); !errors.Is(err, ErrAmbiguousJSON) {
		t.Errorf("err = %v, want ambiguous", err)
	}
}
