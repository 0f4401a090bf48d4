package payload

import (
	"errors"
	"fmt"

	"github.com/pamctl/pamctl/proxy/mask"
)

// Item shapes: the answers and request bodies of the routes that read or
// write Responses items one by one instead of inside a Response (docs/tools.md).
const (
	// EndpointItems is the answer shape of an item list: GET
	// /v1/responses/{id}/input_items, GET /v1/conversations/{id}/items and
	// POST /v1/conversations/{id}/items answer with
	// {"object":"list","data":[ITEM, ...],"first_id",...}.
	EndpointItems = "/v1/conversations/{id}/items"
	// EndpointItem is the answer shape of one item (GET
	// /v1/conversations/{id}/items/{item_id}): the item itself.
	EndpointItem = "/v1/conversations/{id}/items/{item_id}"
	// EndpointItemsRequest is the request body of POST /v1/conversations
	// and POST /v1/conversations/{id}/items: {"items":[ITEM, ...],
	// "metadata":{...}}, whose items are read like a Responses request's
	// input items.
	EndpointItemsRequest = "/v1/conversations"
)

// ErrNotItems is wrapped when an answer due as an item list (or one item)
// is not one: the proxy withholds it rather than relay it unread.
var ErrNotItems = errors.New("payload: the answer is not the items its route returns")

// itemsRequestKeys are the top-level keys of an items request body.
var itemsRequestKeys = []string{"items", "metadata"}

// ParseItemsRequest parses the body of POST /v1/conversations or POST
// /v1/conversations/{id}/items as ParseRequest parses a model call's: it
// refuses what decoders may read differently and reads every text of
// its items as a Responses request's input items (Text, Unscanned,
// Rewrite). The request names no model.
func ParseItemsRequest(body []byte) (*Request, error) {
	if err := Validate(body); err != nil {
		return nil, err
	}
	root, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	r := &Request{Endpoint: EndpointItemsRequest, Raw: body, root: root}
	w := &walker{visit: func(g int, s string) string {
		r.fields = append(r.fields, field{s: s, g: g})
		return s
	}}
	walkRequest(EndpointItemsRequest, root, w)
	if w.err != nil {
		return nil, w.err
	}
	r.Text = joinGroups(r.fields)
	r.Unscanned = w.unscanned
	return r, nil
}

// walkItemsRequest visits the items of an items request body.
func walkItemsRequest(root map[string]any, w *walker) {
	w.keys(root, itemsRequestKeys)
	if w.shape(root, "items", kArray, "an array of input items") {
		w.push("items")
		w.items(root["items"].([]any))
		w.pop()
	}
}

// maskItems is MaskResponse for the item shapes. An item list must be an
// object whose "object" (when present) is "list" and whose "data" is an
// array of objects; one item must be an object. Anything else fails
// with ErrNotItems, masking on or off. Every string of every item is
// masked as a Response's output items are (structural members excepted),
// and so is whatever else the list holds; a list's usage, if any, is not
// read (its items were counted when they were made).
func maskItems(ep string, body []byte, m *mask.Masker) ([]byte, Result, error) {
	res := Result{Counts: mask.Counts{}}
	root, err := decodeObject(body)
	if err != nil {
		return nil, res, fmt.Errorf("%w: not a JSON object", ErrNotItems)
	}
	var items []any
	if ep == EndpointItems {
		if o, present := root["object"]; present && o != "list" {
			return nil, res, fmt.Errorf("%w: object is not \"list\"", ErrNotItems)
		}
		list, ok := root["data"].([]any)
		if !ok {
			return nil, res, fmt.Errorf("%w: data is not an array", ErrNotItems)
		}
		items = list
	} else {
		items = []any{root}
	}
	for i, v := range items {
		if obj(v) == nil {
			return nil, res, fmt.Errorf("%w: data[%d] is not an object", ErrNotItems, i)
		}
	}
	summarize := func() {
		var sum summary
		sum.outputItems(items)
		res.Summary = sum.String()
	}
	if !m.Enabled() {
		summarize()
		return body, res, nil
	}
	f := countingMask(m, res.Counts)
	for _, v := range items {
		stripLogprobs(obj(v), true)
		MaskStrings(v, f, nil)
	}
	if ep == EndpointItems {
		// "data" holds the items, masked above (and counted once).
		// Pagination ids and anything else the upstream put in the list
		// are masked like any string.
		MaskStrings(root, f, func(k string) bool { return k == "data" })
	}
	summarize() // of the masked text: the audit trail keeps it
	out, err := encode(root)
	return out, res, err
}
