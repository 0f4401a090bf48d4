package proxy

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// The audit event keeps the first SummaryBytes of each answer: 4 KiB by
// default, less when configured.
func TestAuditResponseSummaryLength(t *testing.T) {
	answer := strings.Repeat("é", 3000) // 6000 bytes
	for _, tc := range []struct {
		limit, want int
	}{{0, DefaultSummaryBytes}, {100, 100}} {
		h := newHarness(t, func(o *Options) { o.SummaryBytes = tc.limit })
		h.up.set(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,`+
				`"message":{"role":"assistant","content":"`+answer+`"},"finish_reason":"stop"}],`+
				`"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`)
		})
		res, b := h.do("POST", "/v1/chat/completions", h.mint(grant{scope: "model:gpt-4o"}), chatWith("hi"))
		if res.StatusCode != 200 || !strings.Contains(string(b), answer) {
			t.Fatalf("limit %d: the client must get the whole answer: %d", tc.limit, res.StatusCode)
		}
		got := h.sink.last(t).Response
		if len(got) != tc.want || !utf8.ValidString(got) || !strings.HasPrefix(answer, got) {
			t.Fatalf("limit %d: summary of %d bytes (valid UTF-8 %v), want %d", tc.limit, len(got), utf8.ValidString(got), tc.want)
		}
	}
}
