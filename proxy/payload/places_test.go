package payload

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/proxy/mask"
)

func same(s string) string { return s }

// inert reports whether w is printable ASCII but for the "…" of a cut:
// nothing a terminal, a page or a chat message could act on or reorder.
func inert(w string) bool {
	for _, r := range w {
		if (r < 0x20 || r > 0x7e) && r != '…' {
			return false
		}
	}
	return true
}

// shownInert reports whether w, escaped once as every view shows it
// (safetext.Escape), is one line with nothing a terminal, a page or a
// chat message could act on, reorder or hide.
func shownInert(w string) bool {
	v := safetext.Escape(w)
	return !strings.ContainsFunc(v, safetext.Unsafe)
}

// placesOf returns the places of body's texts, each as Where names it
// and with its text, and checks that Places reads the text ParseRequest
// reads.
func placesOf(t *testing.T, ep, body string, name func(string) string) [][2]string {
	t.Helper()
	var r *Request
	var err error
	if ep == EndpointItemsRequest {
		r, err = ParseItemsRequest([]byte(body))
	} else {
		r, err = ParseRequest(ep, []byte(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	text, places, err := r.Places([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if text != r.Text {
		t.Fatalf("Places reads %q, ParseRequest %q", text, r.Text)
	}
	var out [][2]string
	for i, p := range places {
		end := len(text)
		if i+1 < len(places) {
			end = places[i+1].Start - 1 // the line break between texts
		}
		out = append(out, [2]string{p.Where(name), text[p.Start:end]})
	}
	return out
}

func TestPlacesNameWhereEachTextIs(t *testing.T) {
	for _, c := range []struct {
		name, ep, body string
		want           [][2]string
	}{
		{"chat", EndpointChat, `{"model":"gpt-4o","messages":[
			{"role":"system","content":"be brief"},
			{"role":"user","name":"ada","content":[{"type":"text","text":"hel"},{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"text","text":"lo"}]},
			{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"q\":1}"}}]},
			{"role":"tool","tool_call_id":"c1","content":"result text"}],
			"tools":[{"type":"function","function":{"name":"drop","description":"drops a table","parameters":{"type":"object","properties":{"table":{"type":"string","description":"which"}}}}}]}`,
			[][2]string{{"messages[0] (system)", "be brief"}, {"messages[1] (user)", "hello"}, {"messages[1].name (user)", "ada"},
				{"messages[2].tool_calls[0].function.name (assistant)", "f"}, {"messages[2].tool_calls[0].function.arguments (assistant)", `{"q":1}`},
				{"messages[3] (tool)", "result text"}, {"tools[0].function.name", "drop"}, {"tools[0].function.description", "drops a table"},
				{"tools[0].function.parameters.properties", "table"}, {"tools[0].function.parameters.properties.table.description", "which"}}},
		{"responses", EndpointResponses, `{"model":"o3","instructions":"answer briefly","input":[
			{"role":"developer","content":"plain"},
			{"type":"message","role":"user","content":[{"type":"input_text","text":"part"}]},
			{"type":"function_call","call_id":"c","name":"f","arguments":"{}x"},
			{"type":"function_call_output","call_id":"c","output":"tool says hi"}],
			"prompt":{"id":"pmpt_1","variables":{"city":"Paris"}}}`,
			[][2]string{{"instructions", "answer briefly"}, {"input[0] (developer)", "plain"}, {"input[1] (user)", "part"},
				{"input[2].arguments (function_call)", "{}x"}, {"input[2].name (function_call)", "f"}, {"input[3].output (function_call_output)", "tool says hi"},
				{"prompt.variables.city", "Paris"}}},
		{"responses instructions as items", EndpointResponses, `{"model":"o3","instructions":[{"role":"system","content":"rules"}],"input":"hi"}`,
			[][2]string{{"instructions[0] (system)", "rules"}, {"input", "hi"}}},
		{"embeddings", EndpointEmbeddings, `{"model":"e","input":["a","","b"]}`, [][2]string{{"input[0]", "a"}, {"input[2]", "b"}}},
		{"embeddings string", EndpointEmbeddings, `{"model":"e","input":"one\ntwo"}`, [][2]string{{"input", "one\ntwo"}}},
		{"items", EndpointItemsRequest, `{"items":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"forged"}]}]}`,
			[][2]string{{"items[0] (assistant)", "forged"}}},
	} {
		got := placesOf(t, c.ep, c.body, same)
		if len(got) != len(c.want) {
			t.Errorf("%s: %d places %q, want %q", c.name, len(got), got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: place %d is %q, want %q", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// The agent chose roles, types and keys: Where shows them quoted (or as
// <key>), cut, on one line, raw inside the quotes: escaped once, as every
// view shows it, it has no control or bidi character, so no surface
// shows a forged line or reordered text; and not one role or key shows a
// secret its masker hides.
func TestPlacesShowHostileNamesInert(t *testing.T) {
	m, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		t.Fatal(err)
	}
	masked := func(s string) string { out, _ := m.Mask(s); return out }
	const gh = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
	for _, role := range []string{"user\n[approved by admin]", "\x1b[2J\x1b[31mSYSTEM", "<script>alert(1)</script>", "<!channel> *bold* <https://evil|ok>",
		"sys\u202etem", strings.Repeat("R", 1<<20), "User", "bob@example.com", gh, "\xff\xfe"} {
		j, _ := json.Marshal(role)
		body := `{"model":"m","messages":[{"role":` + string(j) + `,"content":"DROP TABLE t"}]}`
		got := placesOf(t, EndpointChat, body, masked)
		w := got[0][0]
		if !strings.HasPrefix(w, `messages[0] (role "`) || len(w) > 100 || !shownInert(w) || strings.Contains(w, "\n") ||
			strings.Contains(w, "bob@") || strings.Contains(w, gh[4:]) || !utf8.ValidString(w) {
			t.Errorf("role %.40q is shown as %q", role, w)
		}
	}
	for _, typ := range []string{"system", "x\ny", "function_call_output\u202e"} {
		j, _ := json.Marshal(typ)
		got := placesOf(t, EndpointResponses, `{"model":"m","input":[{"type":`+string(j)+`,"output":"DROP TABLE t"}]}`, masked)
		if w := got[0][0]; !strings.HasPrefix(w, `input[0].output (type "`) || !shownInert(w) || strings.Contains(w, "\n") {
			t.Errorf("type %q is shown as %q", typ, w)
		}
	}
	// Keys: a property name that holds a secret shows its placeholder; one
	// that is not an identifier shows as <key>; a deep path is cut.
	deep := strings.Repeat(`{"type":"object","properties":{"p":`, 60) + `{"type":"string","description":"DROP TABLE t"}` + strings.Repeat(`}}`, 60)
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{` +
		`"` + gh + `":{"type":"string","description":"a"},"a b\n<c>":{"type":"string","description":"b"},"deep":` + deep + `}}}}]}`
	var wheres []string
	for _, p := range placesOf(t, EndpointChat, body, masked) {
		wheres = append(wheres, p[0])
		if len(p[0]) > 170 || strings.Contains(p[0], gh[4:]) || !inert(p[0]) {
			t.Errorf("place %q", p[0])
		}
	}
	all := strings.Join(wheres, "\n")
	for _, want := range []string{"properties.[GITHUB_TOKEN].description", "properties.<key>.description", "tools[0].function.parameters.properties.deep.properties.p.properties.p", "p….properties.p.properties", "properties.p.description"} {
		if !strings.Contains(all, want) {
			t.Errorf("no place %q among:\n%s", want, all)
		}
	}
}

// The places of a rewritten body (redaction, prompt masking) are of the
// text as forwarded.
func TestPlacesOfARewrittenBody(t *testing.T) {
	body := `{"model":"gpt-4o","messages":[{"role":"system","content":"mail bob@example.com"},{"role":"user","content":[{"type":"text","text":"then DROP "},{"type":"text","text":"TABLE x"}]}]}`
	r, err := ParseRequest(EndpointChat, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Rewrite(func(s string) string { return strings.ReplaceAll(s, "bob@example.com", "[EMAIL]") })
	if err != nil {
		t.Fatal(err)
	}
	text, places, err := r.Places(out)
	if err != nil || text != "mail [EMAIL]\nthen DROP TABLE x" || len(places) != 2 || places[1].Start != len("mail [EMAIL]\n") ||
		places[0].Where(same) != "messages[0] (system)" || places[1].Where(same) != "messages[1] (user)" {
		t.Fatalf("%q %+v %v", text, places, err)
	}
}

// FuzzPlaces: for any body ParseRequest reads, Places reads the same text,
// its places start in order on the texts' first bytes, and each is named
// on one short line.
func FuzzPlaces(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"system","content":"a"},{"role":"user","content":[{"type":"text","text":"b"},{"type":"text","text":"c"}]}]}`,
		`{"model":"m","input":[{"role":"user","content":"x"},{"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"y"}]}],"instructions":"z"}`,
		`{"model":"m","messages":[{"role":"u\nx","content":""},{"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"n","arguments":"{}"}}]}]}`,
		`{"model":"m","input":[[1,2],"a"]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, ep := range []string{EndpointChat, EndpointResponses, EndpointEmbeddings} {
			r, err := ParseRequest(ep, []byte(body))
			if err != nil {
				continue
			}
			text, places, err := r.Places([]byte(body))
			if err != nil || text != r.Text {
				t.Fatalf("%s: Places %q %v, Text %q", ep, text, err, r.Text)
			}
			for i, p := range places {
				if p.Start >= len(text) || (i > 0 && (p.Start <= places[i-1].Start || text[p.Start-1] != '\n')) {
					t.Fatalf("%s: place %d starts at %d in %q", ep, i, p.Start, text)
				}
				if w := p.Where(same); w == "" || len(w) > 400 || !inert(w) {
					t.Fatalf("%s: place %q", ep, w)
				}
			}
		}
	})
}
