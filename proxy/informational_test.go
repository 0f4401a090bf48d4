package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// TestInformationalAnswersCarryNoKey: an upstream's 1xx answers (103 Early
// Hints and the like, which ReverseProxy relays as they come, before the
// final answer and before modifyResponse sees anything) are not relayed,
// so they never carry the vaulted key to the client, and the headers pamctl
// set on the answer (which ReverseProxy clears after relaying one) stay,
// whichever kind of answer follows.
func TestInformationalAnswersCarryNoKey(t *testing.T) {
	const key = "QWERTYsecretVAULT42"
	for _, kind := range []string{"json", "stream", "audio"} {
		t.Run(kind, func(t *testing.T) {
			h := echoHarness(t, key, false, func(w http.ResponseWriter, k string) {
				hd := w.Header()
				hd.Set("Link", "</x?k="+k+">; rel=preload")
				hd.Set("X-"+k, "1")
				hd.Set("X-Echo", strings.ToLower(k))
				hd.Set("X-Fine", "ok")
				w.WriteHeader(http.StatusEarlyHints)
				for name := range hd {
					delete(hd, name)
				}
				writeKindAnswer(w, kind)
			})
			tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/speech"})
			path, body := kindRequest(kind)
			var mu sync.Mutex
			var got []http.Header
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, hd textproto.MIMEHeader) error {
					mu.Lock()
					defer mu.Unlock()
					got = append(got, http.Header(hd).Clone())
					return nil
				},
			})
			req, err := http.NewRequestWithContext(ctx, "POST", h.srv.URL+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			res, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			lk := strings.ToLower(key)
			mu.Lock()
			defer mu.Unlock()
			if len(got) > 0 {
				t.Errorf("%d informational answers relayed: %v", len(got), got)
			}
			for _, hd := range got {
				for name, vals := range hd {
					if strings.Contains(strings.ToLower(name+" "+strings.Join(vals, " ")), lk) {
						t.Errorf("1xx header %s: %v", name, vals)
					}
				}
			}
			for _, name := range []string{"X-Request-Id", "Pamctl-Audit-Id", "Pamctl-Grant"} {
				if res.Header.Get(name) == "" {
					t.Errorf("answer lost %s: %v", name, res.Header)
				}
			}
			if strings.Contains(strings.ToLower(h.logs.String()), lk) {
				t.Errorf("logged: %s", h.logs.String())
			}
		})
	}
}

// writeKindAnswer writes the answer of one kind the header tests try:
// "json" (a chat completion), "stream" (a chat stream) or "audio" (a
// passed-through binary answer).
func writeKindAnswer(w http.ResponseWriter, kind string) {
	switch kind {
	case "json":
		writeJSON(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
	case "stream":
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: "+chunkJSON("hi")+"\n\ndata: [DONE]\n\n")
	case "audio":
		w.Header().Set("Content-Type", "audio/mpeg")
		_, _ = io.WriteString(w, "ID3 data")
	}
}

// kindRequest is the path and body of a call answered with kind
// (writeKindAnswer); a grant needs model:gpt-4o endpoint:/v1/audio/speech.
func kindRequest(kind string) (path, body string) {
	switch kind {
	case "stream":
		return "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[]}`
	case "audio":
		return "/v1/audio/speech", `{"model":"gpt-4o","messages":[]}`
	}
	return "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`
}
