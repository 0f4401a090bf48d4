package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// Answers in the other API's shape (chat completions and Responses).
const (
	// rmItem is a Responses function_call item proposing a denied call.
	rmItem = `{"type":"function_call","id":"fc_2","call_id":"call_2","name":"shell","arguments":"{\"command\":\"rm -rf /\"}","status":"completed"}`
	// rmToolCalls is a chat tool_calls array proposing a denied call.
	rmToolCalls = `[{"index":0,"id":"call_2","type":"function","function":{"name":"shell","arguments":"{\"command\":\"rm -rf /srv\"}"}}]`
)

// crossShapes are answers of neither route's shape that carry a denied
// call where neither judge reads it: a list, a bare item, an event, a bare
// chat message.
var crossShapes = map[string]string{
	"item list":               `{"object":"list","data":[` + rmItem + `]}`,
	"data without object":     `{"data":[` + rmItem + `]}`,
	"bare item":               rmItem,
	"item event":              `{"type":"response.output_item.done","output_index":0,"item":` + rmItem + `}`,
	"response event":          `{"type":"response.completed","response":` + responsesToolAnswer + `}`,
	"bare message":            `{"role":"assistant","content":null,"tool_calls":` + rmToolCalls + `}`,
	"message member":          `{"id":"x","message":{"role":"assistant","tool_calls":` + rmToolCalls + `}}`,
	"function_call member":    `{"id":"x","function_call":{"name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}}`,
	"bare item, type in case": strings.Replace(rmItem, `"type"`, `"Type"`, 1),
}

// TestCrossShapeAnswersWithheld: a chat completions call answered with a
// Responses object (whose output holds a function_call to shell), a
// Responses call answered with a chat.completion carrying tool_calls, or
// either answered with a list, an item, an event or a bare message, had
// its calls relayed unjudged (the judge reads choices[].message for chat
// and output for Responses; no tool.call event was written). Such answers
// are withheld with 502 on the POST routes, the stored routes and an
// endpoint: route that answers with a stored object; the route's own
// shape still passes, judged, with or without "object".
func TestCrossShapeAnswersWithheld(t *testing.T) {
	chatAnswers := map[string]string{
		"a Response":             responsesToolAnswer,
		"a Response, no object":  strings.Replace(responsesToolAnswer, `"object":"response",`, "", 1),
		"a chunk":                `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":` + rmToolCalls + `}}]}`,
		"a chunk, no object":     `{"id":"c","choices":[{"index":0,"delta":{"tool_calls":` + rmToolCalls + `}}]}`,
		"object in another case": strings.Replace(chatToolAnswer, `"object":"chat.completion"`, `"OBJECT":"chat.completion.chunk"`, 1),
		// JavaScript reads choices[0] of {"0": …} as of [ … ].
		"choices an object": strings.Replace(strings.Replace(chatToolAnswer, `"choices":[`, `"choices":{"0":`, 1), `}],"usage"`, `}},"usage"`, 1),
	}
	responsesAnswers := map[string]string{
		"a chat completion":            chatToolAnswer,
		"a chat completion, no object": strings.Replace(chatToolAnswer, `"object":"chat.completion",`, "", 1),
		"choices beside output":        strings.Replace(responsesToolAnswer, `"output":[`, `"choices":[{"index":0,"message":{"role":"assistant","tool_calls":`+rmToolCalls+`}}],"output":[`, 1),
		"output an object":             `{"id":"resp_1","object":"response","status":"completed","output":{"0":` + rmItem + `}}`,
	}
	for name, body := range crossShapes {
		chatAnswers[name] = body
		responsesAnswers[name] = body
	}
	type route struct{ method, path, body string }
	for _, tc := range []struct {
		routes  []route
		answers map[string]string
		own     []string
	}{
		{
			routes: []route{
				{"POST", "/v1/chat/completions", chatWith("clean up")},
				{"GET", "/v1/chat/completions/chatcmpl-1", ""},
			},
			answers: chatAnswers,
			own: []string{chatToolAnswer, strings.Replace(chatToolAnswer, `"object":"chat.completion",`, "", 1),
				strings.Replace(chatToolAnswer, `"created":1,`, `"created":1,"message":"success","data":null,`, 1)},
		},
		{
			routes: []route{
				{"POST", "/v1/responses", `{"model":"gpt-4o","input":"clean up"}`},
				{"GET", "/v1/responses/resp_1", ""},
				{"POST", "/v1/responses/resp_1/cancel", ""},
			},
			answers: responsesAnswers,
			own:     []string{responsesToolAnswer, strings.Replace(responsesToolAnswer, `"object":"response",`, "", 1)},
		},
		{
			// An endpoint: route answered with a stored object is judged
			// in its shape (readBackShape): not past its other members.
			routes: []route{{"POST", "/v1/responses/resp_1/tag", `{}`}},
			answers: map[string]string{
				"a Response with choices":       strings.Replace(responsesToolAnswer, `"output":[`, `"choices":[{"index":0,"message":{"role":"assistant","tool_calls":`+rmToolCalls+`}}],"output":[`, 1),
				"a chat completion with output": strings.Replace(chatToolAnswer, `"choices":`, `"output":[`+rmItem+`],"choices":`, 1),
			},
			own: []string{responsesToolAnswer, chatToolAnswer},
		},
	} {
		for _, rt := range tc.routes {
			var answer string
			h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, answer) })
			tok := h.mint(grant{scope: storedScopes})
			for name, a := range tc.answers {
				answer = a
				res, b := h.do(rt.method, rt.path, tok, rt.body)
				if strings.Contains(string(b), "rm -rf") {
					t.Errorf("%s %s, %s: a denied call reached the client: %d %s", rt.method, rt.path, name, res.StatusCode, b)
					continue
				}
				if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
					t.Errorf("%s %s, %s: %d %s, want 502", rt.method, rt.path, name, res.StatusCode, b)
				}
				if ev := h.sink.last(t); ev.Status != http.StatusBadGateway || ev.Details["detail"] == "" {
					t.Errorf("%s %s, %s: audit status %d detail %q", rt.method, rt.path, name, ev.Status, ev.Details["detail"])
				}
			}
			for i, a := range tc.own {
				answer = a
				res, b := h.do(rt.method, rt.path, tok, rt.body)
				if res.StatusCode != http.StatusOK || strings.Contains(string(b), "rm -rf") {
					t.Errorf("%s %s, own shape %d: %d %s", rt.method, rt.path, i, res.StatusCode, b)
				}
			}
		}
	}
}

// TestCrossShapeAnswersWithheldWithoutJudge: the shape is the route's
// whether or not a judge applies (as for stored answers).
func TestCrossShapeAnswersWithheldWithoutJudge(t *testing.T) {
	h := newHarness(t)
	var answer string
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, answer) })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for path, a := range map[string]string{"/v1/chat/completions": responsesToolAnswer, "/v1/responses": chatToolAnswer} {
		answer = a
		if res, b := h.do("POST", path, tok, `{"model":"gpt-4o","input":"hi","messages":[]}`); res.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %d %s", path, res.StatusCode, b)
		}
	}
}

// TestToolStreamCrossShapeEvents: the stream firewall reads a chat
// stream's calls from choices[].delta and a Responses stream's from its
// items; an event of the other API's shape (a Responses item, event or
// arguments delta in a chat stream; a chat chunk, message or tool_calls
// in a Responses stream; a list or a bare item in either) was relayed
// unjudged, or never seen when it held no marker the chat buffer looks
// for (a shell_call, a program); text deltas of the other shape were
// relayed masked event by event, not joined as a client joins them. Such
// an event ends the stream as malformed while a judge applies, and
// nothing of it reaches the client.
func TestToolStreamCrossShapeEvents(t *testing.T) {
	const secret = "SECRETARG"
	fnItem := `{"id":"fc1","type":"function_call","call_id":"k","name":"deny_x","arguments":"{\"` + secret + `\":1}"}`
	shellItem := `{"id":"sh1","type":"shell_call","call_id":"k","status":"completed","action":{"commands":["` + secret + `"]}}`
	programItem := `{"id":"p1","type":"program","call_id":"k","code":"` + secret + `"}`
	toolCalls := `[{"index":0,"id":"c1","type":"function","function":{"name":"deny_x","arguments":"{\"` + secret + `\":1}"}}]`
	text := chatChunk(`{"role":"assistant","content":"On it."}`, "")
	done := respEv(9, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`)
	for name, c := range map[string]struct {
		chat   bool
		events []string
	}{
		"chat: function_call item event":   {true, []string{text, respEv(1, `"type":"response.output_item.done","output_index":0,"item":`+fnItem), sseData("[DONE]")}},
		"chat: shell_call item event":      {true, []string{text, respEv(1, `"type":"response.output_item.added","output_index":0,"item":`+shellItem), sseData("[DONE]")}},
		"chat: program item event":         {true, []string{text, sseData(`{"type":"response.output_item.done","item":` + programItem + `}`), sseData("[DONE]")}},
		"chat: response event":             {true, []string{text, respEv(1, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[`+fnItem+`]}`), sseData("[DONE]")}},
		"chat: arguments delta event":      {true, []string{text, respEv(1, `"type":"response.function_call_arguments.delta","item_id":"fc1","output_index":0,"delta":"`+secret+`"`), sseData("[DONE]")}},
		"chat: bare item":                  {true, []string{text, sseData(shellItem), sseData("[DONE]")}},
		"chat: output member":              {true, []string{text, sseData(`{"id":"x","object":"chat.completion.chunk","output":[` + fnItem + `]}`), sseData("[DONE]")}},
		"chat: item list":                  {true, []string{text, sseData(`{"object":"list","data":[` + programItem + `]}`), sseData("[DONE]")}},
		"chat: message at the top":         {true, []string{text, sseData(`{"id":"x","message":{"role":"assistant","tool_calls":` + toolCalls + `}}`), sseData("[DONE]")}},
		"responses: chat chunk":            {false, []string{chatChunk(`{"tool_calls":`+toolCalls+`}`, ""), done}},
		"responses: chat completion":       {false, []string{sseData(`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","tool_calls":` + toolCalls + `}}]}`), done}},
		"responses: tool_calls at the top": {false, []string{sseData(`{"role":"assistant","tool_calls":` + toolCalls + `}`), done}},
		"responses: message list":          {false, []string{sseData(`{"object":"list","data":[{"role":"assistant","tool_calls":` + toolCalls + `}]}`), done}},
		"responses: bare item":             {false, []string{respEv(1, strings.TrimSuffix(strings.TrimPrefix(fnItem, "{"), "}")), done}},
		"responses: bare program item":     {false, []string{sseData(programItem), done}},
		// Text deltas of the other shape: the relay masks them event by
		// event, not joined as the client joins them.
		"chat: output_text deltas": {true, []string{text,
			respEv(1, `"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"`+secret[:4]+`"`),
			respEv(2, `"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"`+secret[4:]+`"`), sseData("[DONE]")}},
		"responses: chat content chunks": {false, []string{
			chatChunk(`{"content":"`+secret[:4]+`"}`, ""), chatChunk(`{"content":"`+secret[4:]+`"}`, ""), done}},
	} {
		t.Run(name, func(t *testing.T) {
			out, _, err := driveBuffer(c.chat, c.events, byName)
			if strings.Contains(unsaid(out), secret) || strings.Contains(unsaid(out), secret[4:]) || strings.Contains(unsaid(out), "deny_x") {
				t.Fatalf("an unjudged call reached the client:\n%s", out)
			}
			if err == nil || err.Code != CodeToolCallMalformed {
				t.Fatalf("the stream was not ended as malformed (%v):\n%s", err, out)
			}
		})
	}
}

// TestToolStreamCrossShapeThroughProxy: a chat stream answered with a
// Responses function_call to shell, and a Responses stream answered with
// a chat chunk's tool_calls, end as malformed under the tool rules; the
// denied call never reaches the client.
func TestToolStreamCrossShapeThroughProxy(t *testing.T) {
	rmCall := `{"id":"fc_2","type":"function_call","call_id":"call_2","name":"shell","arguments":"{\"command\":\"rm -rf /\"}","status":"completed"}`
	for _, tc := range []struct {
		name, path, body string
		events           []string
	}{
		{"chat stream, Responses item", "/v1/chat/completions", streamReq, []string{
			chatChunk(`{"role":"assistant","content":"On it."}`, ""),
			respEv(1, `"type":"response.output_item.done","output_index":0,"item":`+rmCall),
			sseData("[DONE]"),
		}},
		{"Responses stream, chat tool_calls", "/v1/responses", `{"model":"gpt-4o","stream":true,"input":"clean up"}`, []string{
			respEv(0, `"type":"response.created","response":{"id":"r","object":"response","status":"in_progress","output":[]}`),
			chatChunk(`{"tool_calls":`+rmToolCalls+`}`, ""),
			respEv(2, `"type":"response.completed","response":{"id":"r","object":"response","status":"completed","output":[]}`),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(t, toolRules))
			h.up.set(writeEvents(tc.events))
			res, b := h.do("POST", tc.path, h.mint(grant{scope: toolScopes}), tc.body)
			if strings.Contains(string(b), "rm -rf") {
				t.Fatalf("the denied call reached the client: %d %s", res.StatusCode, b)
			}
			if !strings.Contains(string(b), CodeToolCallMalformed) {
				t.Errorf("the stream did not end as malformed: %d %s", res.StatusCode, b)
			}
		})
	}
}
