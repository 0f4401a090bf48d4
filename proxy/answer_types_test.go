package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// TestUnparsedAnswerTypesMasked: a model call's 2xx answer in a type
// pamctl does not parse is withheld unless it is a JSON object (masked as
// one), never passed through verbatim; upstream errors are masked.
func TestUnparsedAnswerTypesMasked(t *testing.T) {
	const pii = "ops@example.com"
	for name, c := range map[string]struct {
		ctype  string
		status int
		body   string
	}{
		"text/plain":       {"text/plain", 200, "write to " + pii},
		"x-ndjson":         {"application/x-ndjson", 200, `{"content":"` + pii + `"}` + "\n"},
		"no content type":  {"", 200, pii},
		"sse as text":      {"text/plain", 200, "data: " + chunkJSON(pii) + "\n\ndata: [DONE]\n\n"},
		"octet-stream":     {"application/octet-stream", 200, pii},
		"json error":       {"application/json", 400, `{"error":{"message":"bad input ` + pii + `","type":"invalid_request_error"}}`},
		"html error":       {"text/html", 500, "<p>" + pii + "</p>"},
		"sse error status": {"text/event-stream", 500, "data: " + pii + "\n\n"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				if c.ctype == "" {
					w.Header()["Content-Type"] = nil
				} else {
					w.Header().Set("Content-Type", c.ctype)
				}
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			for _, path := range []string{"/v1/chat/completions", "/v1/responses"} {
				res, b := h.do("POST", path, tok, `{"model":"gpt-4o","input":"hi","messages":[]}`)
				if strings.Contains(string(b), pii) {
					t.Errorf("%s: %d %s passed verbatim: %s", path, res.StatusCode, res.Header.Get("Content-Type"), b)
				}
				if c.status < 300 && notObject([]byte(c.body)) != "" && res.StatusCode != http.StatusBadGateway {
					t.Errorf("%s: a 2xx answer that is not a JSON object was relayed: %d %s", path, res.StatusCode, b)
				}
			}
			if ev := h.sink.last(t); strings.Contains(ev.Response+ev.Error+ev.Details["detail"], pii) {
				t.Errorf("the trail holds it: %+v", ev)
			}
		})
	}
}
