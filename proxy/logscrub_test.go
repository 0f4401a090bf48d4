package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/scrub"
)

type stringerOf string

func (s stringerOf) String() string { return string(s) }

// TestLogScrubsKeys: whatever way a key reaches a log line (message,
// attribute key or value, an error, a Stringer, a struct, a group, an
// attribute fixed with With), the line holds none of it, text and JSON
// alike; what holds no key is logged as it was.
func TestLogScrubsKeys(t *testing.T) {
	const key = "sk-proj-LOGLEAK0123456789abcdefghij"
	var keys atomic.Pointer[scrub.Set]
	keys.Store(scrub.New(key))
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			var next slog.Handler = slog.NewTextHandler(&buf, nil)
			if format == "json" {
				next = slog.NewJSONHandler(&buf, nil)
			}
			log := slog.New(&keyScrubHandler{next: next, keys: &keys})
			log.With("fixed", "x"+key).WithGroup("g").Warn("msg "+key,
				"err", fmt.Errorf("malformed HTTP status code %q", key),
				"str", stringerOf(key),
				"any", struct{ K string }{key},
				"list", []string{"a", key},
				"x-"+key, 1,
				slog.Group("inner", "deep", key, "n", 7),
				"clean", "fine", "num", 42, "e2", errors.New("plain"))
			out := buf.String()
			if strings.Contains(out, key) || strings.Contains(out, key[8:]) {
				t.Errorf("key logged: %s", out)
			}
			for _, want := range []string{"fine", "42", "plain", "malformed HTTP status code", "7"} {
				if !strings.Contains(out, want) {
					t.Errorf("%q lost: %s", want, out)
				}
			}
		})
	}
	// No keys known yet: the line is logged as it is.
	var none atomic.Pointer[scrub.Set]
	var buf bytes.Buffer
	slog.New(&keyScrubHandler{next: slog.NewTextHandler(&buf, nil), keys: &none}).Warn("m", "v", "abc")
	if !strings.Contains(buf.String(), "v=abc") {
		t.Errorf("got %s", buf.String())
	}
}

// TestUpstreamQuotesMaskedInLogAndTrail: Go's transport quotes the bytes of
// an answer it cannot parse in its error, and a refusal quotes the object
// an answer claims to be; with response masking on, PII the upstream put
// there is masked in the log line and the audit detail, as the answer
// would have been (the key is scrubbed from the log as a whole).
func TestUpstreamQuotesMaskedInLogAndTrail(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve http.HandlerFunc
		path  string
	}{
		{"malformed header", rawAnswer(t, "HTTP/1.1 200 OK\r\nmail bob@example.org\r\n\r\n"), "/v1/chat/completions"},
		{"malformed response", rawAnswer(t, "mail bob@example.org and more\r\n\r\n"), "/v1/chat/completions"},
		{"stored object", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, `{"object":"mail bob@example.org","id":"resp_1"}`)
		}, "/v1/responses/resp_1"},
		// Quoted as the upstream wrote it: masking reads the escape as
		// a decoder would (the log's %q doubles its backslash).
		{"stored object, escaped", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, `{"object":"mail bob\u0040example.org","id":"resp_1"}`)
		}, "/v1/responses/resp_1"},
		{"malformed response, escaped", rawAnswer(t, "mail bob\\u0040example.org and more\r\n\r\n"), "/v1/chat/completions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(tc.serve)
			tok := h.mint(grant{scope: storedScopes})
			method, body := "POST", chatBody
			if strings.HasPrefix(tc.path, "/v1/responses/") {
				method, body = "GET", ""
			}
			res, b := h.do(method, tc.path, tok, body)
			if res.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d: %s", res.StatusCode, b)
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "[EMAIL") {
				t.Errorf("the quote is not in the log, masked: %s", logs)
			}
			if strings.Contains(logs, "bob@example.org") || strings.Contains(logs, "u0040example.org") {
				t.Errorf("logged the upstream's PII: %s", logs)
			}
			ev, _ := json.Marshal(h.sink.all())
			if strings.Contains(string(ev), "bob@example.org") || strings.Contains(string(ev), "u0040example.org") {
				t.Errorf("the trail holds the upstream's PII: %s", ev)
			}
		})
	}
}

// TestUpstreamQuotesWholeOrNotAtAll: an upstream text a refusal quotes is
// quoted whole (the key scrub and the masker then read all of it) or, past
// maxQuote bytes, by its length only: a quote cut at 40 bytes held all of
// a vaulted key but its last byte, and an address cut in its domain.
func TestUpstreamQuotesWholeOrNotAtAll(t *testing.T) {
	for _, object := range []string{
		"AAAAAAAA" + vaultedKey,
		strings.Repeat("A", 40) + vaultedKey,
		strings.Repeat("x", 30) + " mail bob@corp-secret.example.org",
	} {
		t.Run(fmt.Sprint(len(object)), func(t *testing.T) {
			h := newHarness(t, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{"object":"`+object+`","id":"resp_1"}`)
			})
			tok := h.mint(grant{scope: storedScopes})
			res, b := h.do("GET", "/v1/responses/resp_1", tok, "")
			if res.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d: %s", res.StatusCode, b)
			}
			ev, _ := json.Marshal(h.sink.all())
			for _, where := range []string{h.logs.String(), string(ev)} {
				for _, part := range []string{vaultedKey[:len(vaultedKey)-1], vaultedKey[1:], "corp-secret"} {
					if strings.Contains(where, part) {
						t.Errorf("%q in: %s", part, where)
					}
				}
			}
		})
	}
}
