package payload

import (
	"errors"
	"fmt"

	"github.com/pamctl/pamctl/proxy/mask"
)

// EndpointChatMessages is the answer shape of GET
// /v1/chat/completions/{id}/messages, a stored chat completion's messages
// read back: {"object":"list","data":[MESSAGE, ...],"first_id",
// "last_id","has_more"}, each message a chat message with its id (role,
// content or content_parts, refusal, tool_calls, function_call, audio,
// annotations, name).
const EndpointChatMessages = "/v1/chat/completions/{id}/messages"

// ErrNotMessages is wrapped when an answer due as a chat completion's
// messages is not a list of messages: the proxy withholds it rather than
// relay it unread.
var ErrNotMessages = errors.New("payload: the answer is not the chat messages its route returns")

// maskChatMessages is MaskResponse for EndpointChatMessages. The answer
// must be an object whose "object" (when present) is "list" and whose
// "data" is an array of objects; anything else fails with ErrNotMessages,
// masking on or off. Every string of every message is masked as a chat
// answer's message is (structural strings excepted: ids, roles, names,
// base64 audio; see exempt), and so is whatever else the list holds (pagination ids
// included); a list has no usage of its own.
func maskChatMessages(body []byte, m *mask.Masker) ([]byte, Result, error) {
	res := Result{Counts: mask.Counts{}}
	root, err := decodeObject(body)
	if err != nil {
		return nil, res, fmt.Errorf("%w: not a JSON object", ErrNotMessages)
	}
	if o, present := root["object"]; present && o != "list" {
		return nil, res, fmt.Errorf("%w: object is not \"list\"", ErrNotMessages)
	}
	msgs, ok := root["data"].([]any)
	if !ok {
		return nil, res, fmt.Errorf("%w: data is not an array", ErrNotMessages)
	}
	for i, v := range msgs {
		if obj(v) == nil {
			return nil, res, fmt.Errorf("%w: data[%d] is not an object", ErrNotMessages, i)
		}
	}
	if !m.Enabled() {
		res.Summary = chatMessagesSummary(msgs)
		return body, res, nil
	}
	f := countingMask(m, res.Counts)
	for _, v := range msgs {
		MaskStrings(v, f, nil)
	}
	// "data" holds the messages, masked above (and counted once).
	MaskStrings(root, f, func(k string) bool { return k == "data" })
	res.Summary = chatMessagesSummary(msgs) // of the masked text, as the audit trail keeps it
	out, err := encode(root)
	return out, res, err
}

// chatMessagesSummary is the text (or else the tool calls) of the
// assistant messages among msgs.
func chatMessagesSummary(msgs []any) string {
	var sum summary
	for _, v := range msgs {
		msg := obj(v)
		if r, _ := msg["role"].(string); r == "assistant" {
			sum.chatMessage(msg)
		}
	}
	return sum.String()
}
