package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// What a client's decoder could read as a tool call, the firewall judges or
// refuses; it never relays a call it did not judge. Each case came from an
// attack on the firewall: case-variant keys (encoding/json matches keys
// case-insensitively), duplicate keys, a whole message in a chunk, a name in
// two fragments (SDKs append or overwrite), and Responses argument events
// of no item the buffer holds.
func TestToolStreamRefusesWhatDecodersReadDifferently(t *testing.T) {
	const secret = "SECRETARG"
	fn := `{"index":0,"id":"c1","type":"function","function":{"name":"deny_x","arguments":"{\"` + secret + `\":1}"}}`
	chunk := func(body string) string {
		return sseData(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",` + body + `}`)
	}
	for name, c := range map[string]struct {
		chat   bool
		events []string
		fails  bool // the stream must end as malformed (else: the call is just never shown)
	}{
		"chat Tool_calls":       {true, []string{chatChunk(`{"Tool_calls":[`+fn+`]}`, ""), sseData("[DONE]")}, true},
		"chat Choices":          {true, []string{chunk(`"Choices":[{"index":0,"delta":{"tool_calls":[` + fn + `]}}]`), sseData("[DONE]")}, true},
		"chat long-s key":       {true, []string{chatChunk(`{"tool_callſ":[`+fn+`]}`, ""), sseData("[DONE]")}, true},
		"chat duplicate key":    {true, []string{chatChunk(`{"tool_calls":[],"tool_calls":[`+fn+`]}`, ""), sseData("[DONE]")}, true},
		"chat NAME beside name": {true, []string{chatChunk(`{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get_x","NAME":"deny_x","arguments":"{\"`+secret+`\":1}"}}]}`, ""), sseData("[DONE]")}, true},
		"chat message in chunk": {true, []string{chunk(`"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[` + fn + `]},"delta":{}}]`), sseData("[DONE]")}, true},
		"chat name in two fragments": {true, []string{
			chatChunk(`{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get_x","arguments":""}}]}`, ""),
			chatChunk(`{"tool_calls":[{"index":0,"function":{"name":"deny_x","arguments":"{\"`+secret+`\":1}"}}]}`, ""),
			chatChunk(`{}`, "tool_calls"), sseData("[DONE]")}, true},
		"responses lone arguments.done": {false, []string{
			respEv(1, `"type":"response.function_call_arguments.done","item_id":"fc9","output_index":0,"name":"deny_x","arguments":"{\"`+secret+`\":1}"`),
			respEv(2, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`)}, false},
		"responses input delta before its item": {false, []string{
			respEv(1, `"type":"response.custom_tool_call_input.delta","item_id":"ct1","output_index":0,"delta":"`+secret+` rm"`),
			respEv(2, `"type":"response.output_item.added","output_index":0,"item":{"id":"ct1","type":"custom_tool_call","call_id":"k","name":"deny_x","input":""}`),
			respEv(3, `"type":"response.output_item.done","output_index":0,"item":{"id":"ct1","type":"custom_tool_call","call_id":"k","name":"deny_x","input":"`+secret+` rm"}`),
			respEv(4, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`)}, false},
		"responses delta without item_id": {false, []string{
			respEv(1, `"type":"response.function_call_arguments.delta","delta":"`+secret+`"`),
			respEv(2, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`)}, false},
		"responses mcp arguments of no item": {false, []string{
			respEv(1, `"type":"response.mcp_call_arguments.delta","item_id":"m1","output_index":0,"delta":"`+secret+`"`),
			respEv(2, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`)}, false},
		"responses Function_call item": {false, []string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"f1","type":"Function_call","call_id":"k","name":"deny_x","arguments":"{\"`+secret+`\":1}"}`),
			respEv(2, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`)}, true},
		"responses duplicate type": {false, []string{
			respEv(1, `"type":"response.output_item.added","output_index":0,"item":{"id":"f1","type":"function_call","type":"message","call_id":"k","name":"deny_x","arguments":"{\"`+secret+`\":1}"}`),
			respEv(2, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`)}, true},
	} {
		t.Run(name, func(t *testing.T) {
			out, _, err := driveBuffer(c.chat, c.events, byName)
			if strings.Contains(unsaid(out), secret) || strings.Contains(unsaid(out), "deny_x") {
				t.Fatalf("the unjudged call reached the client:\n%s", out)
			}
			if c.fails && err == nil {
				t.Fatalf("not refused:\n%s", out)
			}
		})
	}
}

// A whole answer a case-insensitive decoder would read calls from
// (message.Tool_calls) is withheld, not relayed unjudged.
func TestToolAnswerWithCaseVariantKeysWithheld(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	answer := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"Tool_calls":[` +
		`{"id":"call_2","type":"function","function":{"name":"shell","arguments":"{\"command\":\"rm -rf /srv\"}"}}]},"finish_reason":"tool_calls"}]}`
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, answer) })
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"clean up"}]}`))
	req.Header.Set("Authorization", "Bearer "+h.mint(grant{scope: "model:gpt-4o"}))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "rm -rf") {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
}

// Keys that are the caller's own (a tool's parameter schema echoed in the
// response, metadata) may be spelled anyhow: the strict check reads only
// the shapes a call is read from.
func TestToolStreamAllowsFreeFormKeys(t *testing.T) {
	events := []string{
		respEv(0, `"type":"response.created","response":{"id":"r","object":"response","status":"in_progress","output":[],"metadata":{"Name":"x","ID":"y"},`+
			`"tools":[{"type":"function","name":"get_x","parameters":{"type":"object","properties":{"Type":{"type":"string"},"Input":{"type":"string"}}}}],"text":{"format":{"type":"json_schema","schema":{"properties":{"Content":{"type":"string"}}}}}}`),
	}
	seq := 0
	events = append(events, respCall(&seq, 0, "fc1", "call_1", "get_x", `{"Type":"a"}`)...)
	events = append(events, respEv(seq+1, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","metadata":{"Name":"x"},"output":[`+respItemJSON("fc1", "call_1", "get_x", `{"Type":"a"}`)+`]}`))
	out, calls, err := driveBuffer(false, events, byName)
	if err != nil || len(calls) != 1 || !strings.Contains(out, `"metadata":{"Name":"x"`) {
		t.Fatalf("err %v, calls %v:\n%s", err, calls, out)
	}
}
