package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/toolcall"
)

// chatMsgScopes may read stored chat completions (and their messages)
// back, beside tool scopes.
const chatMsgScopes = toolScopes + " endpoint:/v1/chat/completions/*"

const chatMsgPath = "/v1/chat/completions/chatcmpl-1/messages"

// Messages as GET /v1/chat/completions/{id}/messages holds them
// (ChatCompletionStoreMessage): the request's and the model's.
const (
	msgUser      = `{"id":"chatcmpl-1-0","role":"user","content":"mail ops@example.com","name":null,"content_parts":null}`
	msgUserParts = `{"id":"chatcmpl-1-1","role":"user","content":null,"content_parts":[{"type":"text","text":"my card 4111 1111 1111 1111"}]}`
	msgTool      = `{"id":"chatcmpl-1-2","role":"tool","tool_call_id":"call_0","content":"key AKIAIOSFODNN7EXAMPLE"}`
	callAllowed  = `{"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":\"git status\"}"}}`
	callDenied   = `{"id":"call_2","type":"function","function":{"name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}}`
	callRedacted = `{"id":"call_3","type":"function","function":{"name":"http","arguments":"{\"url\":\"https://x\",\"auth\":\"tok-abcdef123456\"}"}}`
	msgDenied    = `{"id":"chatcmpl-1-3","role":"assistant","content":null,"refusal":null,"tool_calls":[` + callAllowed + `,` + callDenied + `]}`
)

// assistantWith is an assistant message holding calls.
func assistantWith(id, content string, calls ...string) string {
	c := "null"
	if content != "" {
		b, _ := json.Marshal(content)
		c = string(b)
	}
	return `{"id":"` + id + `","role":"assistant","content":` + c + `,"tool_calls":[` + strings.Join(calls, ",") + `]}`
}

// msgList is a messages list as OpenAI answers it.
func msgList(msgs ...string) string {
	first, last := "", ""
	if len(msgs) > 0 {
		var a, b struct{ ID string }
		_ = json.Unmarshal([]byte(msgs[0]), &a)
		_ = json.Unmarshal([]byte(msgs[len(msgs)-1]), &b)
		first, last = a.ID, b.ID
	}
	return `{"object":"list","data":[` + strings.Join(msgs, ",") + `],"first_id":"` + first + `","last_id":"` + last + `","has_more":true}`
}

// chatMsgListJSON is what the tests read of a messages list.
type chatMsgListJSON struct {
	Object  string `json:"object"`
	FirstID string `json:"first_id"`
	LastID  string `json:"last_id"`
	HasMore bool   `json:"has_more"`
	Data    []struct {
		ID           string            `json:"id"`
		Role         string            `json:"role"`
		Content      *string           `json:"content"`
		ToolCalls    []json.RawMessage `json:"tool_calls"`
		FunctionCall json.RawMessage   `json:"function_call"`
	} `json:"data"`
}

// TestChatMessagesMaskedAndJudged: GET /v1/chat/completions/{id}/messages
// is masked and judged like the stored chat completion: every string of
// every message is masked, a denied call (tool_calls or the legacy
// function_call, whatever the message's role) is removed and explained in
// its message's content, an allowed one kept, a redacted one carries the
// masked arguments, and the pagination fields pass. Before, the list was
// relayed as the upstream sent it.
func TestChatMessagesMaskedAndJudged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		msgs   []string
		leaks  []string          // must not reach the client
		want   []string          // must reach the client (raw JSON)
		calls  map[string]int    // message id -> tool calls left
		texts  map[string]string // message id -> content must contain
		events int               // tool.call events
	}{
		{
			name:  "PII in every kind of message",
			msgs:  []string{msgUser, msgUserParts, msgTool, assistantWith("chatcmpl-1-4", "sent to ops@example.com")},
			leaks: []string{"ops@example.com", "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE"},
			want:  []string{"[EMAIL]", "[AWS_ACCESS_KEY]"},
		},
		{
			name:   "a denied call among allowed ones",
			msgs:   []string{msgUser, msgDenied},
			leaks:  []string{"rm -rf", "call_2", "ops@example.com"},
			want:   []string{"git status", "call_1"},
			calls:  map[string]int{"chatcmpl-1-3": 1},
			texts:  map[string]string{"chatcmpl-1-3": `rule "no-rm-rf"`},
			events: 2,
		},
		{
			name:   "the only call denied, after the model's text",
			msgs:   []string{assistantWith("m", "cleaning up", callDenied)},
			leaks:  []string{"rm -rf"},
			calls:  map[string]int{"m": 0},
			texts:  map[string]string{"m": "cleaning up\n\npamctl blocked a call of tool \"shell\""},
			events: 1,
		},
		{
			name:   "a legacy function_call denied",
			msgs:   []string{`{"id":"m","role":"assistant","content":null,"function_call":{"name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}}`},
			leaks:  []string{"rm -rf", "function_call"},
			texts:  map[string]string{"m": `rule "no-rm-rf"`},
			events: 1,
		},
		{
			name:   "a redacted call",
			msgs:   []string{assistantWith("m", "", callRedacted)},
			leaks:  []string{"tok-abcdef123456"},
			want:   []string{"https://x"},
			calls:  map[string]int{"m": 1},
			events: 1,
		},
		{
			name:   "calls in a message that is not the assistant's",
			msgs:   []string{`{"id":"u","role":"user","content":"hi","tool_calls":[` + callDenied + `]}`, `{"id":"n","content":null,"tool_calls":[` + callDenied + `]}`},
			leaks:  []string{"rm -rf"},
			calls:  map[string]int{"u": 0, "n": 0},
			events: 2,
		},
		{
			name:   "a denied call in every message of a page",
			msgs:   []string{assistantWith("a", "", callDenied), msgTool, assistantWith("b", "", callAllowed, callDenied)},
			leaks:  []string{"rm -rf", "AKIAIOSFODNN7EXAMPLE"},
			calls:  map[string]int{"a": 0, "b": 1},
			events: 3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != chatMsgPath {
					http.NotFound(w, r)
					return
				}
				writeJSON(w, msgList(tc.msgs...))
			})
			res, got := h.do("GET", chatMsgPath+"?limit=20&order=asc", h.mint(grant{scope: chatMsgScopes}), "")
			if res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, got)
			}
			for _, leak := range tc.leaks {
				if strings.Contains(string(got), leak) {
					t.Errorf("%q reached the client: %s", leak, got)
				}
			}
			for _, want := range tc.want {
				if !strings.Contains(string(got), want) {
					t.Errorf("missing %q: %s", want, got)
				}
			}
			var l chatMsgListJSON
			if err := json.Unmarshal(got, &l); err != nil {
				t.Fatal(err)
			}
			var first, last struct{ ID string }
			_ = json.Unmarshal([]byte(tc.msgs[0]), &first)
			_ = json.Unmarshal([]byte(tc.msgs[len(tc.msgs)-1]), &last)
			if l.Object != "list" || l.FirstID != first.ID || l.LastID != last.ID || !l.HasMore || len(l.Data) != len(tc.msgs) {
				t.Fatalf("the list's fields: %s", got)
			}
			for _, m := range l.Data {
				if n, ok := tc.calls[m.ID]; ok && len(m.ToolCalls) != n {
					t.Errorf("message %s keeps %d calls, want %d: %s", m.ID, len(m.ToolCalls), n, got)
				}
				if want, ok := tc.texts[m.ID]; ok && (m.Content == nil || !strings.Contains(*m.Content, want)) {
					t.Errorf("message %s's content, want %q: %s", m.ID, want, got)
				}
			}
			if n := len(h.sink.ofType(audit.TypeToolCall)); n != tc.events {
				t.Errorf("tool.call events: %d, want %d", n, tc.events)
			}
			// The audit summary is the masked text (or else the proposed
			// calls, as the stored chat completion's is).
			ev := h.sink.last(t)
			if ev.Type != audit.TypeProxyCall || ev.Decision != "allow" || strings.Contains(ev.Response, "ops@example.com") {
				t.Errorf("the call's event: %+v", ev)
			}
		})
	}
}

// TestChatMessagesSDK: the Go SDK reads the judged list as it reads
// OpenAI's.
func TestChatMessagesSDK(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, msgList(msgUser, msgDenied)) })
	cl := h.client(h.mint(grant{scope: chatMsgScopes}))
	page, err := cl.Chat.Completions.Messages.List(context.Background(), "chatcmpl-1", openai.ChatCompletionMessageListParams{Limit: openai.Int(2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].Content != "mail [EMAIL]" || len(page.Data[1].ToolCalls) != 1 ||
		page.Data[1].ToolCalls[0].ID != "call_1" || !strings.Contains(page.Data[1].Content, "pamctl blocked a call of tool") ||
		strings.Contains(page.RawJSON(), "rm -rf") || !page.HasMore {
		t.Fatalf("messages: %s", page.RawJSON())
	}
}

// TestChatMessagesHostileShapes: an upstream answering the messages route
// with something that is not a list of messages, or with messages
// decoders would read differently (duplicate or case-variant keys), never
// gets a call past the judge: the answer is judged in the route's shape
// or withheld with 502, as the other stored routes do.
func TestChatMessagesHostileShapes(t *testing.T) {
	manyCalls := make([]string, toolcall.MaxCallsPerAnswer+1)
	for i := range manyCalls {
		manyCalls[i] = fmt.Sprintf(`{"id":"c%d","type":"function","function":{"name":"shell","arguments":"{\"command\":\"ls\"}"}}`, i)
	}
	denied := assistantWith("m", "", callDenied)
	cases := []struct {
		name, body string
		want       shapeOutcome
	}{
		{"the list", msgList(msgUser, denied), judged},
		{"data not an array", `{"object":"list","data":` + denied + `}`, withheld},
		{"data missing", `{"object":"list","messages":[` + denied + `]}`, withheld},
		{"data null", `{"object":"list","data":null}`, withheld},
		{"data of strings", `{"object":"list","data":["rm -rf /"]}`, withheld},
		{"data with a list in it", `{"object":"list","data":[[` + denied + `]]}`, withheld},
		{"no object", `{"data":[` + denied + `]}`, judged},
		{"object is a chat completion", `{"object":"chat.completion","data":[` + denied + `],"choices":[{"index":0,"message":` + denied + `}]}`, withheld},
		{"object in another case", `{"object":"List","data":[` + denied + `]}`, withheld},
		{"object not a string", `{"object":7,"data":[` + denied + `]}`, withheld},
		{"Data beside data", `{"object":"list","data":[],"Data":[` + denied + `]}`, withheld},
		{"Data alone", `{"object":"list","Data":[` + denied + `]}`, withheld},
		{"OBJECT beside object", `{"object":"list","OBJECT":"chat.completion","data":[` + denied + `]}`, withheld},
		{"data twice, the call first", `{"object":"list","data":[` + denied + `],"data":[]}`, either},
		{"data twice, the call last", `{"object":"list","data":[],"data":[` + denied + `]}`, either},
		{"data twice, one spelt with an escape", `{"object":"list","data":[],"d\u0061ta":[` + denied + `]}`, either},
		{"tool_calls twice in a message", msgList(`{"id":"m","role":"assistant","tool_calls":[],"tool_calls":[` + callDenied + `]}`), either},
		{"Tool_Calls in a message", msgList(`{"id":"m","role":"assistant","Tool_Calls":[` + callDenied + `]}`), withheld},
		{"Tool_Calls beside tool_calls", msgList(`{"id":"m","role":"assistant","tool_calls":[],"Tool_Calls":[` + callDenied + `]}`), withheld},
		{"Function_Call in a message", msgList(`{"id":"m","role":"assistant","Function_Call":{"name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}}`), withheld},
		{"Arguments in a call", msgList(strings.Replace(denied, `"arguments"`, `"Arguments"`, 1)), withheld},
		{"command twice in the arguments", msgList(assistantWith("m", "", `{"id":"c","type":"function","function":{"name":"shell","arguments":"{\"command\":\"ls\",\"command\":\"rm -rf /\"}"}}`)), withheld},
		{"tool_calls not an array", msgList(`{"id":"m","role":"assistant","tool_calls":` + callDenied + `}`), withheld},
		{"a call without its function", msgList(`{"id":"m","role":"assistant","tool_calls":[{"id":"c","type":"function","name":"shell","arguments":"{\"command\":\"rm -rf /\"}"}]}`), withheld},
		{"a call's arguments not a string", msgList(`{"id":"m","role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"shell","arguments":{"command":"rm -rf /"}}}]}`), withheld},
		{"function_call not an object", msgList(`{"id":"m","role":"assistant","function_call":"rm -rf /"}`), withheld},
		{"a role in another case", msgList(`{"id":"m","role":"Assistant","tool_calls":[` + callDenied + `]}`), judged},
		{"more calls than one answer may hold", msgList(assistantWith("m", "", manyCalls...)), withheld},
		{"a bare array", `[` + denied + `]`, withheld},
		{"not JSON", `rm -rf /`, withheld},
		{"trailing data", msgList(msgUser) + `{"data":[` + denied + `]}`, withheld},
		{"pagination fields of every type", `{"object":"list","data":[` + denied + `],"first_id":{"x":1},"last_id":null,"has_more":"yes"}`, judged},
	}
	for _, masking := range []bool{false, true} {
		h, answer := judgedAnswering(t, masking)
		tok := h.mint(grant{scope: chatMsgScopes})
		for _, tc := range cases {
			answer(tc.body)
			res, got := h.do("GET", chatMsgPath, tok, "")
			name := fmt.Sprintf("masking %v, %s", masking, tc.name)
			if strings.Contains(string(got), "rm -rf") || strings.Contains(string(got), "Tool_Calls") || strings.Contains(string(got), "Function_Call") {
				t.Errorf("%s: a denied call reached the client: %d %s", name, res.StatusCode, got)
				continue
			}
			if tc.want.wrong(res.StatusCode) {
				t.Errorf("%s: %d %s", name, res.StatusCode, got)
			}
		}
	}
}

// TestChatMessagesWithoutJudge: without tool scopes or tool_call rules the
// messages are still masked (nothing is judged), and an answer that is
// not a list of messages is still withheld.
func TestChatMessagesWithoutJudge(t *testing.T) {
	h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	var mu sync.Mutex
	body := msgList(msgUser, msgUserParts, msgTool, msgDenied)
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		writeJSON(w, body)
	})
	tok := h.mint(grant{scope: "endpoint:/v1/chat/completions/*"})
	res, got := h.do("GET", chatMsgPath, tok, "")
	if res.StatusCode != 200 || strings.Contains(string(got), "ops@example.com") || strings.Contains(string(got), "AKIAIOSFODNN7EXAMPLE") ||
		strings.Contains(string(got), "4111 1111 1111 1111") || !strings.Contains(string(got), "rm -rf") {
		t.Fatalf("%d %s", res.StatusCode, got)
	}
	if n := len(h.sink.ofType(audit.TypeToolCall)); n != 0 {
		t.Fatalf("tool.call events without a judge: %d", n)
	}
	for _, bad := range []string{
		`{"object":"list","data":{"role":"user","content":"ops@example.com"}}`,
		`{"object":"chat.completion","data":[` + msgUser + `]}`,
		`["ops@example.com"]`,
	} {
		mu.Lock()
		body = bad
		mu.Unlock()
		if res, got := h.do("GET", chatMsgPath, tok, ""); res.StatusCode != http.StatusBadGateway || strings.Contains(string(got), "ops@example.com") {
			t.Errorf("%s: %d %s", bad, res.StatusCode, got)
		}
	}
}

// TestChatMessagesRefusals: the messages route needs its endpoint: scope
// (as before), is never relayed as a stream (asked for, or sent anyway),
// and respects the proxy's buffer for an answer it inspects.
func TestChatMessagesRefusals(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	var mu sync.Mutex
	mode := ""
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch mode {
		case "sse":
			w.Header().Set("Content-Type", "text/event-stream")
			sseWrite(w, "", `{"object":"list","data":[`+msgDenied+`]}`)
		case "sse-as-json":
			writeJSON(w, "data: {\"object\":\"list\",\"data\":["+msgDenied+"]}\n\n")
		case "huge":
			writeJSON(w, msgList(`{"id":"u","role":"user","content":"`+strings.Repeat("a", maxResponseBody)+`"}`, msgDenied))
		default:
			writeJSON(w, msgList(msgDenied))
		}
	})
	tok := h.mint(grant{scope: chatMsgScopes})
	before := h.up.count()
	for _, q := range []string{"?stream=true", "?stream=1", "?order=asc&stream=true", "?STREAM=true", "?stream;=1"} {
		res, got := h.do("GET", chatMsgPath+q, tok, "")
		if res.StatusCode != 400 || !strings.Contains(string(got), CodeUnsupportedShape) {
			t.Errorf("%s: %d %s", q, res.StatusCode, got)
		}
	}
	if n := h.up.count(); n != before {
		t.Fatalf("refused reads reached the upstream: %d", n-before)
	}
	for _, m := range []string{"sse", "sse-as-json"} {
		mu.Lock()
		mode = m
		mu.Unlock()
		for _, method := range []string{"GET", "POST", "DELETE", "QUERY"} {
			if m == "sse-as-json" && method != "GET" {
				continue
			}
			res, got := h.do(method, chatMsgPath, tok, "")
			if res.StatusCode != http.StatusBadGateway || strings.Contains(string(got), "rm -rf") || !strings.Contains(string(got), CodeUpstreamUnexpectedStream) {
				t.Errorf("%s: %s: %d %s", m, method, res.StatusCode, got)
			}
		}
	}
	mu.Lock()
	mode = "huge"
	mu.Unlock()
	if res, got := h.do("GET", chatMsgPath, tok, ""); res.StatusCode != http.StatusBadGateway || !strings.Contains(string(got), CodeUpstreamTooLarge) {
		t.Fatalf("an answer over the buffer: %d %.300s", res.StatusCode, got)
	}
	mu.Lock()
	mode = ""
	mu.Unlock()
	for _, scope := range []string{toolScopes, toolScopes + " endpoint:/v1/chat/completions/chatcmpl-1"} {
		if res, got := h.do("GET", chatMsgPath, h.mint(grant{scope: scope}), ""); res.StatusCode != 403 || !strings.Contains(string(got), "endpoint:"+chatMsgPath) {
			t.Errorf("without its endpoint scope (%s): %d %s", scope, res.StatusCode, got)
		}
	}
	if res, got := h.do("GET", chatMsgPath, h.mint(grant{scope: toolScopes + " endpoint:" + chatMsgPath}), ""); res.StatusCode != 200 || strings.Contains(string(got), "rm -rf") {
		t.Errorf("with its exact endpoint scope: %d %s", res.StatusCode, got)
	}
	// A path that differs only in letter case is refused, not relayed.
	if res, got := h.do("GET", "/v1/chat/completions/chatcmpl-1/Messages", tok, ""); res.StatusCode != 404 || strings.Contains(string(got), "rm -rf") {
		t.Errorf("a case-variant path: %d %s", res.StatusCode, got)
	}
}

func TestClassifyChatMessages(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         endpointKind
	}{
		{"GET", "/v1/chat/completions/chatcmpl-1/messages", epChatMessages},
		{"GET", "/v1/chat/completions/CHATCMPL-1/messages", epChatMessages},
		{"POST", "/v1/chat/completions/chatcmpl-1/messages", epOther},
		{"DELETE", "/v1/chat/completions/chatcmpl-1/messages", epOther},
		{"GET", "/v1/chat/completions//messages", epOther},
		{"GET", "/v1/chat/completions/messages", epStoredChat}, // a completion whose id is "messages"
		{"GET", "/v1/chat/completions/chatcmpl-1/x/messages", epOther},
		{"GET", "/v1/chat/completions/chatcmpl-1/messages/msg_1", epOther},
		{"GET", "/v1/chat/completions/chatcmpl-1", epStoredChat},
	} {
		if got := classify(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
	if payload.EndpointChatMessages != toolcall.EndpointChatMessages {
		t.Fatal("payload and toolcall name the messages shape differently")
	}
	if !storedPath(chatMsgPath) || epChatMessages.String() != "stored_chat_messages" || epChatMessages.answerPath() != payload.EndpointChatMessages {
		t.Fatal("the messages route is a stored answer's")
	}
}

// TestChatMessagesOnOtherRoutes: an endpoint: answer of another method or
// route that is a list of chat messages with calls (an upstream serving
// the list to POST, PATCH or QUERY, a method override a framework reads
// from the body, a route pamctl does not know) is masked and judged as
// the messages route's is; other lists are relayed as before.
func TestChatMessagesOnOtherRoutes(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	const files = `{"object":"list","data":[{"object":"file","id":"file-1","filename":"notes.txt","purpose":"assistants"}],"has_more":false}`
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/files":
			writeJSON(w, files)
		case "/v1/chat/completions/chatcmpl-1/messages_export":
			writeJSON(w, msgList(msgUser, `{"id":"m","role":"assistant","Tool_Calls":[`+callDenied+`]}`))
		default:
			writeJSON(w, msgList(msgUser, msgDenied))
		}
	})
	tok := h.mint(grant{scope: chatMsgScopes + " endpoint:/v1/files"})
	for _, tc := range []struct {
		method, path, body, ct string
		status                 int
	}{
		{"POST", chatMsgPath, `{"_method":"GET"}`, "application/json", 200},
		{"POST", chatMsgPath, "_method=GET", "application/x-www-form-urlencoded", 200},
		{"PATCH", chatMsgPath, "", "", 200},
		{"QUERY", chatMsgPath, "", "", 200},
		{"GET", "/v1/chat/completions/chatcmpl-1/messages_export", "", "", http.StatusBadGateway},
	} {
		var hdr []string
		if tc.ct != "" {
			hdr = []string{"Content-Type", tc.ct}
		}
		res, got := h.do(tc.method, tc.path, tok, tc.body, hdr...)
		if res.StatusCode != tc.status || strings.Contains(string(got), "rm -rf") || strings.Contains(string(got), "ops@example.com") {
			t.Errorf("%s %s: chat messages reached the agent unmasked or unjudged: %d %s", tc.method, tc.path, res.StatusCode, got)
		}
	}
	if res, got := h.do("GET", "/v1/files", tok, ""); res.StatusCode != 200 || string(got) != files {
		t.Fatalf("another list: %d %s", res.StatusCode, got)
	}
}
