package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/mask"
)

// TestStoredAnswerOtherRoutesMasked: the scope that reads a stored answer
// back (endpoint:/v1/chat/completions/*, endpoint:/v1/responses/*) also
// covers other routes whose answer is that very stored object: updating
// a stored chat completion's metadata (POST /v1/chat/completions/{id})
// and cancelling a background response (POST /v1/responses/{id}/cancel)
// answer with the whole object. They must not hand it over unmasked and
// unjudged; a list of stored completions is withheld.
func TestStoredAnswerOtherRoutesMasked(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/responses/resp_1/cancel":
			writeJSON(w, responsesToolAnswer)
		case r.Method == "POST" && r.URL.Path == "/v1/chat/completions/chatcmpl-1":
			writeJSON(w, chatToolAnswer)
		case r.Method == "GET" && r.URL.Path == "/v1/chat/completions":
			writeJSON(w, `{"object":"list","data":[`+chatToolAnswer+`],"has_more":false}`)
		default:
			http.NotFound(w, r)
		}
	})
	tok := h.mint(grant{scope: storedScopes + " endpoint:/v1/chat/completions"})
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/responses/resp_1/cancel", ""},
		{"POST", "/v1/chat/completions/chatcmpl-1", `{"metadata":{"k":"v"}}`},
		{"GET", "/v1/chat/completions", ""},
	} {
		res, body := h.do(tc.method, tc.path, tok, tc.body)
		for _, leak := range []string{"rm -rf", "tok-abcdef123456", "ops@example.com"} {
			if strings.Contains(string(body), leak) {
				t.Errorf("%s %s: %q reached the client: %d %s", tc.method, tc.path, leak, res.StatusCode, body)
			}
		}
	}
}

// TestStoredBackgroundUsageCounted: a background response's POST answers
// "queued" without usage; its usage arrives only when it is read back, so
// that read must count it against the grant's budget.
func TestStoredBackgroundUsageCounted(t *testing.T) {
	h := newHarness(t)
	const done = `{"id":"resp_b","object":"response","status":"completed","background":true,"model":"gpt-4o","output":[` +
		`{"type":"message","id":"m1","role":"assistant","content":[{"type":"output_text","text":"done","annotations":[]}]}],` +
		`"usage":{"input_tokens":400,"output_tokens":600,"total_tokens":1000}}`
	h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, done) })
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/*", limits: &token.Limits{Tokens: 500}})
	if res, body := h.do("GET", "/v1/responses/resp_b", tok, ""); res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	res, body := h.do("GET", "/v1/responses/resp_b", tok, "")
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), CodeTokenBudgetExceeded) {
		t.Fatalf("a background response's 1000 tokens were not counted against a 500 budget: %d %s", res.StatusCode, body)
	}
}

// TestStoredStreamQueryUnparsed: a query Go does not parse (a ';'
// separator, a bad escape) hides its pairs from the stream check, yet was
// forwarded verbatim: an upstream splitting on ';' reads stream=true.
func TestStoredStreamQueryUnparsed(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules))
	var rawQueries []string
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		rawQueries = append(rawQueries, r.URL.RawQuery)
		writeJSON(w, responsesToolAnswer)
	})
	tok := h.mint(grant{scope: storedScopes})
	for _, q := range []string{"?include=x;stream=true", "?stream=%zz", "?Stream=true", "?STREAM=1"} {
		res, body := h.do("GET", "/v1/responses/resp_1"+q, tok, "")
		if res.StatusCode != 400 {
			t.Errorf("%s: %d %s (upstream saw %q)", q, res.StatusCode, body, rawQueries)
		}
	}
}
