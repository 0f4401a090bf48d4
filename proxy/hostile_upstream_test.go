package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/pamctl/pamctl/proxy/mask"
)

// Red-team tests of a hostile (or broken) upstream, possibly cooperating
// with a hostile client: what the upstream sends must not reach a client
// past pamctl's masking, key scrub, tool-call firewall and trail.

// noRedirects is a client that shows the proxy's answer as it is.
func (h *harness) noRedirects() *http.Client {
	c := *h.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// doRaw is h.do without following redirects.
func (h *harness) doRaw(method, path, tok, body string) (*http.Response, []byte) {
	h.t.Helper()
	return h.doWith(h.noRedirects(), method, path, tok, body)
}

// TestHostileUpstreamRedirectsClientOffProxy: an upstream that answers a
// model call with a redirect (307, Location on another origin) sends the
// client's SDK there. Go's client (like httpx in openai-python, which
// follows redirects) re-sends the POST with the client's own, unmasked
// prompt to that origin, and takes whatever it answers as the model's
// answer: no masking of the answer, no tool-call firewall, no trail of
// what the client actually got. pamctl must not relay a redirect whose
// Location leaves the proxy (it relays no Location at all for model
// calls, whose answer is never a redirect).
func TestHostileUpstreamRedirectsClientOffProxy(t *testing.T) {
	var evilHits atomic.Int32
	var evilSaw atomic.Value
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		evilHits.Add(1)
		evilSaw.Store(string(b))
		writeJSON(w, `{"id":"chatcmpl-evil","object":"chat.completion","created":1,"model":"gpt-4o",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"mail bob@example.org"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(evil.Close)

	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			evilHits.Store(0)
			h := newHarness(t, withMasking(t, mask.Config{Default: mask.ActionMask}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", evil.URL+"/v1/chat/completions")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = io.WriteString(w, `{}`)
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})

			// As the proxy answers.
			res, b := h.doRaw("POST", "/v1/chat/completions", tok, chatWith("write to alice@example.com"))
			if loc := res.Header.Get("Location"); loc != "" {
				t.Errorf("proxy relayed %d with Location %q (body %s)", res.StatusCode, loc, b)
			}

			// As a client that follows redirects sees it (openai-python's
			// httpx client is made with follow_redirects=True; openai-go
			// v3 refuses a redirect off its base URL's origin).
			evilHits.Store(0)
			_, b = h.do("POST", "/v1/chat/completions", tok, chatWith("write to alice@example.com"))
			if n := evilHits.Load(); n > 0 {
				saw, _ := evilSaw.Load().(string)
				t.Errorf("the client followed the upstream's redirect off the proxy; that origin got the unmasked prompt %q", saw)
			}
			if strings.Contains(string(b), "bob@example.org") {
				t.Errorf("the client got an unmasked answer from another origin: %s", b)
			}
		})
	}
}

// TestHostileUpstreamStreamAnswered3xx: a stream request answered with a
// 3xx status that net/http does not follow (300, 307 without Location)
// and an SSE body. openai-go (and the other SDKs) take any status below
// 400 for success and parse the events, joining their deltas; pamctl
// routes only a status below 300 to the SSE relay, so this body is
// buffered and masked as one text: a key or an email split over two
// deltas is joined by the client only.
func TestHostileUpstreamStreamAnswered3xx(t *testing.T) {
	done := `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
	for _, status := range []int{http.StatusMultipleChoices, http.StatusTemporaryRedirect, 399} {
		for _, masked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/masked=%v", status, masked), func(t *testing.T) {
				h := streamHarness(t, masked, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(status)
					for _, e := range []string{
						chunkJSON("key: " + vaultedKey[:12]), chunkJSON(vaultedKey[12:] + " mail alice@exa"), chunkJSON("mple.com ok"),
						done, "[DONE]",
					} {
						_, _ = io.WriteString(w, "data: "+e+"\n\n")
					}
				})
				tok := h.mint(grant{scope: "model:gpt-4o"})
				c := h.client(tok)
				stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
					Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
				})
				var text strings.Builder
				for stream.Next() {
					for _, ch := range stream.Current().Choices {
						text.WriteString(ch.Delta.Content)
					}
				}
				got := text.String()
				h.remember([]byte(got))
				if strings.Contains(got, vaultedKey) {
					t.Errorf("the client joined the vaulted key from a %d stream: %q", status, got)
				}
				if masked && strings.Contains(got, "alice@example.com") {
					t.Errorf("the client joined an unmasked email from a %d stream: %q", status, got)
				}
			})
		}
	}
}

// TestHostileUpstreamErrorEscapedPII: an error answer is masked as raw
// text (bufferedAnswer, status >= 400), so PII the upstream spells with
// JSON escapes is not seen by the masker, and the client's JSON decoder
// reads it back. (The key scrub reads escapes; the masker does not.)
func TestHostileUpstreamErrorEscapedPII(t *testing.T) {
	for _, tc := range []struct{ name, spelled, plain string }{
		{"email \\u0040", `bob\u0040example.org`, "bob@example.org"},
		{"email \\u0065", `b\u006fb@example.org`, "bob@example.org"},
		{"card \\u0020", `4111\u00201111\u00201111\u00201111`, "4111 1111 1111 1111"},
		{"ssn \\u002d", `123\u002d45\u002d6789`, "123-45-6789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"error":{"message":"no account for `+tc.spelled+`","type":"invalid_request_error","param":null,"code":null}}`)
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			res, b := h.do("POST", "/v1/chat/completions", tok, chatWith("hi"))
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("got %d %s", res.StatusCode, b)
			}
			e := apiErr(t, b)
			if strings.Contains(e.Message, tc.plain) {
				t.Errorf("the client's decoder reads unmasked %q in the upstream's error: %q (raw %s)", tc.plain, e.Message, b)
			}
		})
	}
}

// TestHostileUpstreamNonGoJSONEscapedPII: a model answer that
// encoding/json rejects but an SDK's decoder reads is masked by
// maskAnswer as raw text (decodeObject failed), which does not read JSON
// escapes, and its usage is not counted. openai-node (fetch's
// Response.json() strips a leading BOM; V8's JSON.parse has no nesting
// limit) and openai-python (json.loads of bytes detects utf-8-sig, reads
// NaN and Infinity) decode it as the answer, with the escaped email in
// clear.
func TestHostileUpstreamNonGoJSONEscapedPII(t *testing.T) {
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	for _, tc := range []struct{ name, prefix, extra, reader string }{
		{"BOM", "\ufeff", `"x":1`, "openai-node, openai-python"},
		{"NaN", "", `"x":NaN`, "openai-python"},
		{"Infinity", "", `"x":-Infinity`, "openai-python"},
		{"deeper than encoding/json reads", "", `"x":` + deep, "openai-node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, tc.prefix+`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",`+
					`"choices":[{"index":0,"message":{"role":"assistant","content":"mail bob\u0040example.org"},"finish_reason":"stop"}],`+
					`"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},`+tc.extra+`}`)
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			res, b := h.do("POST", "/v1/chat/completions", tok, chatWith("hi"))
			if res.StatusCode != http.StatusOK {
				return // withheld: fine
			}
			if bytes.Contains(b, []byte(`bob\u0040example.org`)) || bytes.Contains(b, []byte("bob@example.org")) {
				t.Errorf("relayed %d bytes that %s decode with the email unmasked (starts %.120q)", len(b), tc.reader, b)
			}
		})
	}
}

// TestHostileUpstreamDuplicateContent pins: a chat answer whose message
// has "content" twice (decoders read the last) is masked as decoders read
// it, whichever duplicate holds the email, and whether the fast path or
// the generic path handles it.
func TestHostileUpstreamDuplicateContent(t *testing.T) {
	for _, msg := range []string{
		`"content":"hi","content":"mail bob@example.org"`,
		`"content":"mail bob@example.org","content":"hi"`,
		`"content":"hi","refusal":null,"content":"mail bob\u0040example.org"`,
	} {
		t.Run(msg, func(t *testing.T) {
			h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",`+
					`"choices":[{"index":0,"message":{"role":"assistant",`+msg+`},"finish_reason":"stop"}]}`)
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			res, b := h.do("POST", "/v1/chat/completions", tok, chatWith("hi"))
			if res.StatusCode != http.StatusOK {
				return
			}
			if strings.Contains(string(b), "bob@example.org") || strings.Contains(string(b), `bob\u0040example.org`) {
				t.Errorf("a duplicate content member kept its email: %s", b)
			}
		})
	}
}

// TestHostileUpstreamToolFirewallNonGoJSON pins: a tool-call answer in
// JSON that encoding/json does not read (BOM, NaN, nesting deeper than it
// allows), or under a 3xx status, is withheld when a tool rule is in
// force, never relayed with its denied call.
func TestHostileUpstreamToolFirewallNonGoJSON(t *testing.T) {
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	body := strings.TrimSuffix(chatToolAnswer, "}")
	for _, tc := range []struct {
		name   string
		status int
		answer string
	}{
		{"BOM", 200, "\ufeff" + chatToolAnswer},
		{"NaN", 200, body + `,"x":NaN}`},
		{"deep", 200, body + `,"x":` + deep + `}`},
		{"300", 300, chatToolAnswer},
		{"300 BOM", 300, "\ufeff" + chatToolAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(t, toolRules))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.answer)
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			res, b := h.doRaw("POST", "/v1/chat/completions", tok, chatWith("clean up"))
			if strings.Contains(string(b), "rm -rf /srv") {
				t.Errorf("%d relayed a denied call: %.200s", res.StatusCode, b)
			}
		})
	}
}

// TestHostileUpstreamModelListPII: the model list and a model's
// description are answers too, written by the upstream; with response
// masking on, PII it puts in them (owned_by, an id the scope's wildcard
// covers, any member of a model's description) reaches the client
// unmasked: listModels re-encodes the upstream's fields without masking,
// and maskAnswer passes an epModel answer (no answer shape) unmasked.
func TestHostileUpstreamModelListPII(t *testing.T) {
	h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			writeJSON(w, `{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1,"owned_by":"bob@example.org"},`+
				`{"id":"gpt-4o-call-555-867-5309-bob@example.org","object":"model","created":1,"owned_by":"x"}]}`)
			return
		}
		writeJSON(w, `{"id":"gpt-4o","object":"model","created":1,"owned_by":"bob@example.org","description":"ask bob\u0040example.org"}`)
	})
	tok := h.mint(grant{scope: "model:gpt-4o*"})
	res, b := h.do("GET", "/v1/models", tok, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("list: %d %s", res.StatusCode, b)
	}
	if strings.Contains(string(b), "bob@example.org") {
		t.Errorf("the model list relays unmasked PII: %s", b)
	}
	res, b = h.do("GET", "/v1/models/gpt-4o", tok, "")
	if res.StatusCode == http.StatusOK && (strings.Contains(string(b), "bob@example.org") || strings.Contains(string(b), `bob\u0040example.org`)) {
		t.Errorf("a model's description relays unmasked PII: %s", b)
	}
}

// TestHostileUpstreamModelListKeyAndScope pins: the model list never
// names a model the grant does not cover, and a model named after the
// vaulted key (literal or JSON-escaped) is scrubbed.
func TestHostileUpstreamModelListKeyAndScope(t *testing.T) {
	h := newHarness(t)
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			writeJSON(w, `{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1,"owned_by":"`+uEscape(vaultedKey)+`"},`+
				`{"id":"gpt-4o-`+vaultedKey+`","object":"model","created":1,"owned_by":"x"},`+
				`{"id":"o3-secret","object":"model","created":1,"owned_by":"x"},`+
				`{"id":"GPT-4O","object":"model","created":1,"owned_by":"x"},`+
				`{"id":"gpt-4o","object":"model","created":1,"owned_by":"dup"}]}`)
			return
		}
		writeJSON(w, `{"id":"`+uEscape(vaultedKey)+`","object":"model","created":1,"owned_by":"`+vaultedKey+`"}`)
	})
	tok := h.mint(grant{scope: "model:gpt-4o*"})
	res, b := h.do("GET", "/v1/models", tok, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("list: %d %s", res.StatusCode, b)
	}
	if strings.Contains(string(b), "o3-secret") {
		t.Errorf("the list names a model outside the scope: %s", b)
	}
	if l := leaks(vaultedKey, res, b, h); len(l) > 0 {
		t.Errorf("key in %v: %s", l, b)
	}
	res, b = h.do("GET", "/v1/models/gpt-4o", tok, "")
	if l := leaks(vaultedKey, res, b, h); len(l) > 0 {
		t.Errorf("key in %v: %s", l, b)
	}
}

// rangeUpstream answers every call with content, honouring Range as any
// static file server, CDN or caching gateway does (http.ServeContent).
func rangeUpstream(t *testing.T, ct, content string) *harness {
	h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ct)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(content))
	})
	return h
}

// getRanges fetches path in two byte ranges split at cut and joins them.
func (h *harness) getRanges(method, path, tok, body string, cut int) (string, []int) {
	h.t.Helper()
	var joined strings.Builder
	var statuses []int
	for _, rg := range []string{fmt.Sprintf("bytes=0-%d", cut-1), fmt.Sprintf("bytes=%d-", cut)} {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, h.srv.URL+path, rd)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Range", rg)
		res, err := h.noRedirects().Do(req)
		if err != nil {
			h.t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		h.remember(b)
		statuses = append(statuses, res.StatusCode)
		if res.StatusCode == http.StatusPartialContent {
			joined.Write(b)
		}
	}
	return joined.String(), statuses
}

// TestHostileClientRangeSplitsKey: a client's Range header is forwarded;
// an upstream (or a gateway before it) that honours it answers 206 with a
// slice, and the key scrub and the masker see each slice alone. A client
// that asks for the answer in two ranges split inside the vaulted key
// joins the key, and the trail records two clean calls.
func TestHostileClientRangeSplitsKey(t *testing.T) {
	content := "config dump: OPENAI_API_KEY=" + vaultedKey + "\n"
	cut := strings.Index(content, vaultedKey) + 20
	h := rangeUpstream(t, "text/plain", content)
	tok := h.mint(grant{scope: "endpoint:/v1/files/*"})
	joined, st := h.getRanges("GET", "/v1/files/file-1/content", tok, "", cut)
	if strings.Contains(joined, vaultedKey) {
		t.Errorf("the client joined the vaulted key from two ranges (statuses %v): %q", st, joined)
	}
}

// TestHostileClientRangeSplitsMaskedAnswer: the same for a model call's
// answer: each 206 slice is masked as text on its own, so an email split
// between two ranges is never masked.
func TestHostileClientRangeSplitsMaskedAnswer(t *testing.T) {
	answer := `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"mail bob@example.org now"},"finish_reason":"stop"}]}`
	cut := strings.Index(answer, "@example")
	h := rangeUpstream(t, "application/json", answer)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	joined, st := h.getRanges("POST", "/v1/chat/completions", tok, chatWith("hi"), cut)
	if strings.Contains(joined, "bob@example.org") {
		t.Errorf("the client joined an unmasked answer from two ranges (statuses %v): %q", st, joined)
	}
}

// TestHostileUpstreamStreamNonGoJSON: a streamed event that is JSON
// encoding/json does not read (NaN, Infinity, a BOM, nesting past its
// bound) or JSON that is not an object (a string, an array) was masked as
// text, which does not read JSON escapes; openai-python decodes each
// event's data with json.loads, NaN and all, and handed the agent the
// escaped email in clear (and, with a tool rule in force and masking off,
// the event was dropped without a word). Such an event now ends the
// stream with an upstream_error event, recorded as such, on chat and
// Responses streams, with masking on or only a tool rule.
func TestHostileUpstreamStreamNonGoJSON(t *testing.T) {
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	chat := func(extra string) string {
		return `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"mail bob\u0040example.org"},"finish_reason":null}]` + extra + `}`
	}
	resp := func(extra string) string {
		return `{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"mail bob\u0040example.org"` + extra + `}`
	}
	for _, tc := range []struct{ name, prefix, extra, whole string }{
		{"NaN", "", `,"x":NaN`, ""},
		{"Infinity", "", `,"created":-Infinity`, ""},
		{"BOM", "\ufeff", "", ""},
		{"deep", "", `,"x":` + deep, ""},
		{"trailing value", "", `} {`, ""},
		{"a string", "", "", `"mail bob\u0040example.org"`},
		{"an array", " ", "", `[{"content":"mail bob\u0040example.org"}]`},
	} {
		for _, setup := range []string{"masked", "tool rule"} {
			for _, ep := range []string{"chat", "responses"} {
				t.Run(tc.name+"/"+setup+"/"+ep, func(t *testing.T) {
					opt := withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask})
					if setup == "tool rule" {
						opt = withRules(t, toolRules)
					}
					h := newHarness(t, opt)
					data, path, body := chat(tc.extra), "/v1/chat/completions", streamReq
					if ep == "responses" {
						data, path, body = resp(tc.extra), "/v1/responses", `{"model":"gpt-4o","stream":true,"input":"hi"}`
					}
					if tc.whole != "" {
						data = tc.whole
					}
					h.up.set(func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("Content-Type", "text/event-stream")
						_, _ = io.WriteString(w, "data: "+tc.prefix+data+"\n\n")
						if ep == "chat" {
							_, _ = io.WriteString(w, "data: [DONE]\n\n")
						} else {
							_, _ = io.WriteString(w, "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"output\":[]}}\n\n")
						}
					})
					tok := h.mint(grant{scope: "model:gpt-4o"})
					res, b := h.do("POST", path, tok, body)
					if res.StatusCode != http.StatusOK {
						t.Fatalf("status %d: %s", res.StatusCode, b)
					}
					if strings.Contains(string(b), `bob\u0040example.org`) || strings.Contains(string(b), "bob@example.org") {
						t.Errorf("the event reached the client with the email json.loads reads: %q", b)
					}
					if !strings.Contains(string(b), `"code":"upstream_error"`) {
						t.Errorf("the stream did not end with an upstream_error event: %q", b)
					}
					if e := h.sink.last(t); !strings.Contains(e.Error, "upstream_error") || !strings.Contains(e.Details["detail"], "JSON the proxy cannot read") {
						t.Errorf("audit: error %q, detail %q", e.Error, e.Details["detail"])
					}
				})
			}
		}
	}
}

// TestHostileUpstreamNonObjectAnswer: a 2xx answer that is not one JSON
// object (a JSON string, array, null, number, plain text, nothing) to a
// model call, a stored answer read back or a model's description was
// masked as text, which does not read JSON escapes: the JSON string
// "mail victim.doe\u0040corp-secret.org" (what openai-python returns its
// caller when the answer is not a dict) reached the client with 200 and
// the address in clear once decoded. Every such answer is withheld with
// 502, and nothing of it reaches the client or the trail.
func TestHostileUpstreamNonObjectAnswer(t *testing.T) {
	const secret = "corp-secret"
	for _, a := range []struct{ name, ctype, body string }{
		{"string", "application/json", `"mail victim.doe\u0040corp-secret.org"`},
		{"string in white space", "application/json", " \n\"mail victim.doe\\u0040corp-secret.org\"\n"},
		{"array", "application/json", `["mail victim.doe\u0040corp-secret.org"]`},
		{"null", "application/json", `null`},
		{"number", "application/json", `4111111111111111`},
		{"text", "text/plain", `mail victim.doe@corp-secret.org`},
		{"empty", "application/json", ``},
	} {
		for _, call := range []struct{ method, path, body string }{
			{"POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`},
			{"POST", "/v1/responses", `{"model":"gpt-4o","input":"hi"}`},
			{"POST", "/v1/embeddings", `{"model":"gpt-4o","input":"hi"}`},
			{"GET", "/v1/responses/resp_1", ""},
			{"POST", "/v1/responses/resp_1/cancel", ""},
			{"GET", "/v1/chat/completions/chatcmpl-1", ""},
			{"GET", "/v1/responses/resp_1/input_items", ""},
			{"GET", "/v1/models/gpt-4o", ""},
		} {
			t.Run(a.name+" "+call.method+call.path, func(t *testing.T) {
				h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
				h.up.set(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", a.ctype)
					_, _ = io.WriteString(w, a.body)
				})
				tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/* endpoint:/v1/chat/completions/*"})
				res, b := h.do(call.method, call.path, tok, call.body)
				if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
					t.Fatalf("relayed %d %s", res.StatusCode, b)
				}
				if strings.Contains(string(b), secret) || strings.Contains(string(b), "4111111111111111") {
					t.Errorf("the client got the answer: %s", b)
				}
				ev := h.sink.last(t)
				if ev.Status != http.StatusBadGateway || ev.Error == "" {
					t.Errorf("audit status %d error %q", ev.Status, ev.Error)
				}
				if all := fmt.Sprintf("%+v", ev); strings.Contains(all, secret) || strings.Contains(all, "4111111111111111") {
					t.Errorf("the trail holds the answer: %s", all)
				}
			})
		}
	}
}

// TestHostileUpstreamModelListNotAList: encoding/json decodes null, {},
// one model, an error object or another list-like object into an empty
// model list, so an upstream answering GET /v1/models with one got a 200
// list holding only the scope's own models, as if the upstream had none.
// A model list that is not a list is a 502, and the trail says why; a
// list without "object", or an empty one a Go server writes ("data":
// null, or none, beside "object":"list"), is still a list.
func TestHostileUpstreamModelListNotAList(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"one model", `{"id":"gpt-4o","object":"model","created":1,"owned_by":"openai"}`, false},
		{"empty object", `{}`, false},
		{"an error", `{"error":{"message":"overloaded","type":"server_error"}}`, false},
		{"null", `null`, false},
		{"a string", `"list"`, false},
		{"another object's data", `{"object":"chat.completion","data":[{"id":"gpt-4o","object":"model","created":1,"owned_by":"x"}]}`, false},
		{"object in another case", `{"OBJECT":"page","data":[]}`, false},
		{"object not a string", `{"object":1,"data":[]}`, false},
		{"data not an array", `{"object":"list","data":{"id":"gpt-4o"}}`, false},
		{"data null without object", `{"data":null}`, false},
		{"list", `{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1,"owned_by":"openai"}]}`, true},
		{"no object", `{"data":[{"id":"gpt-4o","object":"model","created":1,"owned_by":"openai"}]}`, true},
		{"empty, null data", `{"object":"list","data":null}`, true},
		{"empty, no data", `{"object":"list"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, tc.body) })
			tok := h.mint(grant{scope: "model:gpt-4o*"})
			res, b := h.do("GET", "/v1/models", tok, "")
			if tc.ok {
				if res.StatusCode != http.StatusOK {
					t.Fatalf("a list: %d %s", res.StatusCode, b)
				}
				return
			}
			if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
				t.Fatalf("not a list, relayed as one: %d %s", res.StatusCode, b)
			}
			if ev := h.sink.last(t); ev.Status != http.StatusBadGateway || ev.Details["detail"] == "" {
				t.Errorf("audit status %d detail %q", ev.Status, ev.Details["detail"])
			}
		})
	}
}

// TestEmbeddingsAnswerInEventsRefused: an embeddings call has no stream,
// but an answer labelled text/event-stream went to the SSE relay, which
// reads no embeddings shape and relayed its events unmasked (a JSON string
// event "mail bob\u0040example.org" included): neither one JSON object nor
// a stream pamctl reads. It is withheld with 502
// upstream_unexpected_stream, like any non-stream call answered in events.
func TestEmbeddingsAnswerInEventsRefused(t *testing.T) {
	h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	h.up.set(writeEvents([]string{sseData(`"mail bob\u0040example.org"`), sseData(`{"object":"list","data":[],"note":"bob@example.org"}`), sseData("[DONE]")}))
	for _, body := range []string{`{"model":"gpt-4o","input":"x"}`, `{"model":"gpt-4o","input":"x","stream":true}`} {
		res, b := h.do("POST", "/v1/embeddings", h.mint(grant{scope: "model:gpt-4o"}), body)
		if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamUnexpectedStream || strings.Contains(string(b), "bob") {
			t.Errorf("%s: %d %s", body, res.StatusCode, b)
		}
	}
}
