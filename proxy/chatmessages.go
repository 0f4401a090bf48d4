package proxy

import (
	"net/http"
	"strings"
)

// The chat messages route (docs/tools.md, "Limits"): GET
// /v1/chat/completions/{id}/messages reads a stored chat completion's
// messages back, the request's and the model's, as a list
// ({"object":"list","data":[MESSAGE, ...],"first_id","last_id","has_more"}).
// Like the stored completion itself (GET /v1/chat/completions/{id}) it
// needs its endpoint: scope, takes the buffered path, is never relayed as
// a stream, and is masked and judged in its own shape with the stored
// completion's masker and judge (payload.MaskResponse and
// toolcall.RewriteAnswer in payload.EndpointChatMessages): every string
// of every message is masked, and the tool_calls and function_call of
// every message are judged as a choice's message's are.

// chatMessagesRoute reports whether method and p (a clean path, path
// parameters refused by route) are GET
// /v1/chat/completions/{id}/messages.
func chatMessagesRoute(method, p string) bool {
	id, ok := strings.CutSuffix(p, "/messages")
	return ok && method == http.MethodGet && oneSegmentUnder(id, "/v1/chat/completions/")
}
