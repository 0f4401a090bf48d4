package proxy

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/pamctl/pamctl/proxy/payload"
)

// The item routes (docs/tools.md, "Limits"): Responses items read back
// one by one instead of inside a Response. Their answers are masked and
// judged item by item, with the stored Response's masker and judge
// (payload.MaskResponse and toolcall.RewriteAnswer in the item shapes);
// the request bodies that add items to a conversation are read like a
// Responses request's input items (prompt rules, prompt masking).

// classifyItems names the item route of method and p (a clean path), or
// epOther:
//
//	GET  /v1/responses/{id}/input_items          epItems
//	GET  /v1/conversations/{id}/items            epItems
//	POST /v1/conversations/{id}/items            epItems (answers with the items it added)
//	GET  /v1/conversations/{id}/items/{item_id}  epItem
func classifyItems(method, p string) endpointKind {
	if method != http.MethodGet && method != http.MethodPost {
		return epOther
	}
	if id, ok := strings.CutSuffix(p, "/input_items"); ok && method == http.MethodGet && oneSegmentUnder(id, "/v1/responses/") {
		return epItems
	}
	rest, ok := strings.CutPrefix(p, "/v1/conversations/")
	if !ok {
		return epOther
	}
	seg := strings.Split(rest, "/")
	switch {
	case len(seg) == 2 && seg[0] != "" && seg[1] == "items":
		return epItems
	case len(seg) == 3 && seg[0] != "" && seg[1] == "items" && seg[2] != "" && method == http.MethodGet:
		return epItem
	}
	return epOther
}

// itemsRequest reports whether a call's body adds items to a
// conversation: POST /v1/conversations (its initial items) and POST
// /v1/conversations/{id}/items, in any letter case (an upstream that
// folds paths would add them all the same; the route refuses the case
// variants it knows, and this one is read rather than passed unread).
func itemsRequest(method, p string) bool {
	p = strings.ToLower(p)
	return method == http.MethodPost && (p == "/v1/conversations" || classifyItems(method, p) == epItems && strings.HasPrefix(p, "/v1/conversations/"))
}

// parseItemsRequest reads the items a call adds to a conversation into
// c.req, as a Responses request's input items are read: the prompt rules
// see their text, prompt masking and redact rules rewrite it, and what
// pamctl cannot read is recorded as unscanned. Bodies JSON decoders could
// read differently, or with an "items" that is not an array of objects,
// are refused (400). Other calls, and an empty body, are left alone.
func (p *Proxy) parseItemsRequest(c *call) *apiError {
	if !itemsRequest(c.method, c.path) || len(bytes.TrimSpace(c.body)) == 0 {
		return nil
	}
	req, err := payload.ParseItemsRequest(c.body)
	if err != nil {
		if ae := refusedBody(err); ae != nil {
			return ae
		}
		return errBadRequest(CodeInvalidJSON, "", "The request body is not a valid JSON object. Send the same JSON you would send to OpenAI.", err)
	}
	c.req = req
	return nil
}

// storedObject is the answer shape of a stored answer whose top-level
// "object" is object, read back on a route whose shape is shape: a
// Response, a chat completion, or ("list") the route's list, an item list
// or a chat completion's messages; "" for any other.
func storedObject(object, shape string) string {
	if object == "list" {
		if shape == payload.EndpointChatMessages {
			return shape
		}
		return payload.EndpointItems
	}
	return storedObjects[object]
}
