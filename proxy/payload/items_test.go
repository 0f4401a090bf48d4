package payload

import (
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// TestMaskItems: the item shapes are masked item by item (data is not a
// base64 payload here), with masking on or off a body that is not the
// route's items is refused, and a list's usage is never read.
func TestMaskItems(t *testing.T) {
	on, err := mask.New(mask.Config{Default: mask.ActionMask})
	if err != nil {
		t.Fatal(err)
	}
	off, _ := mask.New(mask.Config{})
	const item = `{"type":"function_call_output","id":"o","call_id":"c","output":"mail ops@example.com"}`
	for _, tc := range []struct {
		name, ep, body string
		bad            bool
		want           []string
	}{
		{"list", EndpointItems, `{"object":"list","data":[` + item + `],"first_id":"o","last_id":"ops@example.com","has_more":false}`, false,
			[]string{`"output":"mail [EMAIL]"`, `"last_id":"[EMAIL]"`, `"first_id":"o"`}},
		{"list without object", EndpointItems, `{"data":[` + item + `]}`, false, []string{`[EMAIL]`}},
		{"one item", EndpointItem, item, false, []string{`"output":"mail [EMAIL]"`}},
		{"logprobs", EndpointItems, `{"object":"list","data":[{"type":"message","content":[{"type":"output_text","text":"x","logprobs":[{"token":"ops@example.com"}]}]}]}`, false, []string{`"logprobs":[]`}},
		{"object not list", EndpointItems, `{"object":"response","data":[]}`, true, nil},
		{"object not a string", EndpointItems, `{"object":1,"data":[]}`, true, nil},
		{"data an object", EndpointItems, `{"object":"list","data":` + item + `}`, true, nil},
		{"data missing", EndpointItems, `{"object":"list"}`, true, nil},
		{"data of strings", EndpointItems, `{"object":"list","data":["ops@example.com"]}`, true, nil},
		{"an array", EndpointItem, `[` + item + `]`, true, nil},
		{"not JSON", EndpointItem, `ops@example.com`, true, nil},
		{"trailing data", EndpointItem, item + `{}`, true, nil},
	} {
		for _, m := range []*mask.Masker{off, on} {
			out, res, err := MaskResponse(tc.ep, []byte(tc.body), m)
			if tc.bad {
				if !errors.Is(err, ErrNotItems) {
					t.Errorf("%s (masking %v): want ErrNotItems, got %v %s", tc.name, m.Enabled(), err, out)
				}
				continue
			}
			if err != nil || res.HasUsage {
				t.Fatalf("%s: %v %+v", tc.name, err, res)
			}
			if !m.Enabled() {
				if string(out) != tc.body {
					t.Errorf("%s: changed with masking off: %s", tc.name, out)
				}
				continue
			}
			if strings.Contains(string(out), "ops@example.com") && tc.name != "logprobs" {
				t.Errorf("%s: unmasked: %s", tc.name, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("%s: missing %s: %s", tc.name, w, out)
				}
			}
		}
	}
}

// TestParseItemsRequest: the items a conversation request adds are read
// like a Responses request's input items and rewritten in place.
func TestParseItemsRequest(t *testing.T) {
	body := `{"items":[{"type":"message","role":"user","content":[{"type":"input_text","text":"mail ops@example.com"}]},` +
		`{"type":"function_call_output","call_id":"c","output":"done"},{"type":"input_image","image_url":"data:x"},` +
		`{"type":"message","role":"user","content":[{"type":"input_image","image_url":"https://x"}]}],"metadata":{"topic":"secret"}}`
	r, err := ParseItemsRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != "mail ops@example.com\ndone" || len(r.Unscanned) != 2 || strings.Contains(r.Text, "secret") {
		t.Fatalf("text %q, unscanned %q", r.Text, r.Unscanned)
	}
	out, err := r.Rewrite(func(s string) string { return strings.ReplaceAll(s, "ops@example.com", "[EMAIL]") })
	if err != nil || !strings.Contains(string(out), "mail [EMAIL]") || !strings.Contains(string(out), `"metadata":{"topic":"secret"}`) {
		t.Fatalf("%v %s", err, out)
	}
	for _, bad := range []string{`{"Items":[]}`, `{"items":{}}`, `{"items":[1]}`, `{"items":[],"items":[]}`, `[]`, `{"items":[{"type":"message","Content":"x"}]}`} {
		if _, err := ParseItemsRequest([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
