package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// TestChatMessagesRedteamOtherReadings: an endpoint: answer of another
// method on the messages path (or any route) whose data holds a message
// with a denied call, or a call item, is judged or withheld however the
// upstream spells it: "data" given again (in another letter case, null,
// or twice), a message's or item's read key given again, so that
// encoding/json reads no call where other decoders (Python's json, a
// first-wins decoder) read one; trailing data, which encoding/json
// refuses and json.Decoder reads past; NaN, which Python's json reads.
// Before, readBackShape saw no call and the answer was relayed as sent.
func TestChatMessagesRedteamOtherReadings(t *testing.T) {
	denied := assistantWith("m", "", callDenied)
	item := `{"type":"function_call","id":"fc_1","call_id":"call_9","name":"shell","arguments":"{\"command\":\"rm -rf /\"}","status":"completed"}`
	cases := []struct{ name, body string }{
		{"a call item beside the message", `{"object":"list","data":[` + strings.Replace(item, "rm -rf /", "git status", 1) + `,` + denied + `]}`},
		{"Data after data", `{"object":"list","data":[` + denied + `],"Data":[]}`},
		{"DATA null after data", `{"object":"list","data":[` + denied + `],"DATA":null}`},
		{"data twice, the call first", `{"object":"list","data":[` + denied + `],"data":[]}`},
		{"Tool_Calls null after tool_calls", msgList(`{"id":"m","role":"assistant","tool_calls":[` + callDenied + `],"Tool_Calls":null}`)},
		{"tool_calls twice, the call first", msgList(`{"id":"m","role":"assistant","tool_calls":[` + callDenied + `],"tool_calls":null}`)},
		{"Function_Call null after function_call", msgList(`{"id":"m","role":"assistant","function_call":{"name":"shell","arguments":"{\"command\":\"rm -rf /\"}"},"Function_Call":null}`)},
		{"trailing data", `{"object":"list","data":[` + denied + `]} {}`},
		{"NaN", `{"object":"list","data":[` + denied + `],"n":NaN}`},
		{"an item, Data after data", `{"object":"list","data":[` + item + `],"Data":[]}`},
		{"an item, Type after type", `{"object":"list","data":[` + strings.Replace(item, `"status"`, `"Type":"message","status"`, 1) + `]}`},
		{"an item, trailing data", `{"object":"list","data":[` + item + `]}]`},
	}
	for _, masking := range []bool{false, true} {
		h, answer := judgedAnswering(t, masking)
		tok := h.mint(grant{scope: chatMsgScopes})
		for _, tc := range cases {
			answer(tc.body)
			for _, method := range []string{"PATCH", "QUERY"} {
				res, got := h.do(method, chatMsgPath, tok, "")
				if strings.Contains(string(got), "rm -rf") {
					t.Errorf("masking %v, %s %s: a denied call reached the agent: %d %s", masking, method, tc.name, res.StatusCode, got)
				}
			}
		}
		// What holds no call another decoder reads passes as before: a
		// JSONL file with calls in it, text, run steps, a list of files.
		for _, ok := range []string{
			`{"messages":[` + denied + `]}` + "\n" + `{"messages":[` + denied + `]}` + "\n",
			`the model's function_call, {"tool_calls": NaN`,
			`{"object":"list","data":[{"object":"thread.run.step","step_details":{"type":"tool_calls","tool_calls":[]}}],"has_more":false}`,
			`{"object":"list","data":[{"object":"file","id":"file-1","filename":"a_call.txt"}],"has_more":false}`,
		} {
			answer(ok)
			if res, got := h.do("PATCH", chatMsgPath, tok, ""); res.StatusCode != http.StatusOK || string(got) != ok {
				t.Errorf("masking %v, %q: %d %s", masking, ok, res.StatusCode, got)
			}
		}
	}
}

// TestChatMessagesRedteamMaskedOtherReadings: with response masking on and
// no judge, the messages such an answer holds are masked or the answer
// withheld: a "Data" after "data" does not hand their PII over.
func TestChatMessagesRedteamMaskedOtherReadings(t *testing.T) {
	h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	body := `{"object":"list","data":[` + assistantWith("m", "mail ops@example.com", callDenied) + `],"Data":[]}`
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, body) })
	tok := h.mint(grant{scope: "endpoint:/v1/chat/completions/*"})
	if res, got := h.do("PATCH", chatMsgPath, tok, ""); strings.Contains(string(got), "ops@example.com") {
		t.Fatalf("PII reached the agent: %d %s", res.StatusCode, got)
	}
}
