package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// TestReservedAnswerHeadersNotRelayed: headers pamctl sets or keeps to
// itself (Pamctl-*, X-Request-Id, cookies, the key's organization and
// project) never come from the upstream, as headers or as trailers
// (announced or not), on a passed-through answer (audio) or a JSON one;
// trailers that may not be trailers (framing, content type) go too, and a
// harmless one stays.
func TestReservedAnswerHeadersNotRelayed(t *testing.T) {
	reserved := []string{"Pamctl-Audit-Id", "Pamctl-Grant", "Pamctl-Upstream-Request-Id", "Pamctl-Anything", "X-Request-Id", "Set-Cookie", "Openai-Organization", "Openai-Project"}
	invalid := []string{"Content-Type", "Content-Length", "Content-Encoding", "Authorization", "Www-Authenticate"}
	for _, kind := range []string{"audio", "json"} {
		for _, announced := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/announced=%v", kind, announced), func(t *testing.T) {
				h := newHarness(t)
				h.up.set(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.ReadAll(r.Body)
					hd := w.Header()
					for _, k := range reserved {
						if k != "X-Request-Id" { // the upstream's own id is read, then dropped
							hd.Set(k, "from-upstream")
						}
					}
					// Go's transport refuses an answer announcing a field no
					// trailer may be: those come unannounced.
					trailers := append([]string{"X-Fine"}, reserved...)
					if announced {
						hd.Set("Trailer", strings.Join(trailers, ", "))
					}
					if kind == "audio" {
						hd.Set("Content-Type", "audio/mpeg")
						_, _ = io.WriteString(w, "ID3 data")
					} else {
						writeJSON(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
					}
					w.(http.Flusher).Flush() // chunked: trailers can follow
					for _, k := range trailers {
						if !announced {
							k = http.TrailerPrefix + k
						}
						hd.Set(k, "from-upstream")
					}
					for _, k := range invalid {
						hd.Set(http.TrailerPrefix+k, "from-upstream")
					}
				})
				tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/speech"})
				path, body := "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`
				if kind == "audio" {
					path = "/v1/audio/speech"
				}
				res, b := h.do("POST", path, tok, body)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("%d %q", res.StatusCode, b)
				}
				for where, hd := range map[string]http.Header{"header": res.Header, "trailer": res.Trailer} {
					for k, vv := range hd {
						for _, v := range vv {
							if v == "from-upstream" && k != "X-Fine" {
								t.Errorf("%s %s: %q reached the client", where, k, v)
							}
						}
					}
				}
				for _, k := range append(reserved, invalid...) {
					if _, ok := res.Trailer[k]; ok {
						t.Errorf("trailer %s announced or sent: %v", k, res.Trailer)
					}
				}
				if res.Header.Get("Pamctl-Audit-Id") == "" || res.Header.Get("X-Request-Id") != res.Header.Get("Pamctl-Audit-Id") {
					t.Errorf("pamctl's ids: %v", res.Header)
				}
				if kind == "audio" && res.Trailer.Get("X-Fine") != "from-upstream" {
					t.Errorf("a harmless trailer was lost: %v", res.Trailer)
				}
			})
		}
	}
}

// TestNoProtocolSwitch: a client's Upgrade never reaches the upstream, and
// an upstream's 101 Switching Protocols (or another 1xx as the final
// answer), which ReverseProxy would turn into a raw tunnel between client
// and upstream past masking, the key scrub and the trail, is a failed
// call: the client gets a 502 and the trail says why.
func TestNoProtocolSwitch(t *testing.T) {
	key := vaultedKey
	for _, path := range []string{"/v1/audio/speech", "/v1/chat/completions"} {
		for _, clientAsks := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/client-asks=%v", path, clientAsks), func(t *testing.T) {
				var sawUpgrade atomic.Bool
				h := newHarness(t)
				h.up.set(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.ReadAll(r.Body)
					if r.Header.Get("Upgrade") != "" || strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
						sawUpgrade.Store(true)
					}
					k := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
					conn, bw, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					_, _ = bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw " + k + "\n")
					_ = bw.Flush()
				})
				tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/speech"})
				hdr := []string{}
				if clientAsks {
					hdr = []string{"Connection", "Upgrade", "Upgrade", "websocket"}
				}
				res, b := h.do("POST", path, tok, `{"model":"gpt-4o","messages":[]}`, hdr...)
				if res.StatusCode != http.StatusBadGateway {
					t.Errorf("client got %d %v %q, want 502", res.StatusCode, res.Header, b)
				}
				if strings.Contains(strings.ToLower(string(b)), strings.ToLower(key)) {
					t.Errorf("key in the answer: %q", b)
				}
				if sawUpgrade.Load() {
					t.Error("the client's Upgrade reached the upstream")
				}
				waitFor(t, "the call's audit event", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) > 0 })
				if ev := h.sink.last(t); ev.Status != http.StatusBadGateway || ev.Error == "" {
					t.Errorf("audit status %d error %q, want 502 and why", ev.Status, ev.Error)
				}
			})
		}
	}
}

// TestNoRangeForwarded: a client's Range and If-Range never reach the
// upstream (each slice of an answer would be checked alone, and joined by
// the client), so an upstream that serves ranges answers whole.
func TestNoRangeForwarded(t *testing.T) {
	var saw atomic.Value
	h := newHarness(t)
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		saw.Store(r.Header.Get("Range") + "|" + r.Header.Get("If-Range"))
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "f", time.Time{}, strings.NewReader("0123456789"))
	})
	tok := h.mint(grant{scope: "endpoint:/v1/files/*"})
	res, b := h.do("GET", "/v1/files/file-1/content", tok, "", "Range", "bytes=2-4", "If-Range", `"x"`)
	if res.StatusCode != http.StatusOK || string(b) != "0123456789" {
		t.Errorf("%d %q, want the whole answer", res.StatusCode, b)
	}
	if got, _ := saw.Load().(string); got != "|" {
		t.Errorf("upstream saw Range|If-Range %q", got)
	}
}

// TestBodilessModelAnswersRefused: a model call (streamed or not), a
// stored answer read back (a Response, a chat completion, their items and
// messages) or a model's description, answered with no content (204,
// 205) or a 304 nobody asked for, is a failed call, not an empty whole
// answer.
func TestBodilessModelAnswersRefused(t *testing.T) {
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`, http.StatusNoContent},
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`, http.StatusResetContent},
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`, http.StatusNotModified},
		{"POST", "/v1/chat/completions", streamReq, http.StatusNotModified},
		{"POST", "/v1/embeddings", `{"model":"gpt-4o","input":"x"}`, http.StatusNoContent},
		{"GET", "/v1/responses/resp_1", "", http.StatusNotModified},
		{"GET", "/v1/responses/resp_1", "", http.StatusNoContent},
		{"GET", "/v1/responses/resp_1", "", http.StatusResetContent},
		{"POST", "/v1/responses/resp_1/cancel", "", http.StatusNoContent},
		{"GET", "/v1/chat/completions/chatcmpl-1", "", http.StatusNoContent},
		{"POST", "/v1/chat/completions/chatcmpl-1", `{"metadata":{}}`, http.StatusResetContent},
		{"GET", "/v1/responses/resp_1/input_items", "", http.StatusNoContent},
		{"GET", "/v1/chat/completions/chatcmpl-1/messages", "", http.StatusResetContent},
		{"GET", "/v1/models/gpt-4o", "", http.StatusNoContent},
		{"GET", "/v1/models/gpt-4o", "", http.StatusResetContent},
		{"GET", "/v1/models/gpt-4o", "", http.StatusNotModified},
	} {
		t.Run(fmt.Sprint(tc.path, "/", tc.status, "/", len(tc.body)), func(t *testing.T) {
			h := newHarness(t)
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				w.WriteHeader(tc.status)
			})
			tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/responses/* endpoint:/v1/chat/completions/*"})
			res, b := h.do(tc.method, tc.path, tok, tc.body)
			if res.StatusCode != http.StatusBadGateway {
				t.Errorf("%d %q, want 502", res.StatusCode, b)
			}
			waitFor(t, "the call's audit event", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) > 0 })
			if ev := h.sink.last(t); ev.Status != http.StatusBadGateway || ev.Error == "" {
				t.Errorf("audit status %d error %q", ev.Status, ev.Error)
			}
		})
	}
}

// TestStatusOutsideHTTPRefused: an upstream status outside 100-599 (Go's
// transport reads any three digits: 999, 600, 099) is no HTTP status a
// client knows; it was relayed as the client's status line (with
// pamctl's error body, as for any status past 399). It is a 502 for every
// kind of call, and the trail says what the upstream answered.
func TestStatusOutsideHTTPRefused(t *testing.T) {
	for _, status := range []string{"999", "600", "099"} {
		for _, call := range []struct{ method, path, body string }{
			{"POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`},
			{"POST", "/v1/chat/completions", streamReq},
			{"POST", "/v1/audio/speech", `{"model":"tts-1","input":"hi"}`},
			{"GET", "/v1/responses/resp_1", ""},
		} {
			t.Run(status+call.path+fmt.Sprint(len(call.body)), func(t *testing.T) {
				h := newHarness(t)
				answer := chatToolAnswer
				h.up.set(rawAnswer(t, "HTTP/1.1 "+status+" Odd\r\nContent-Type: application/json\r\nContent-Length: "+fmt.Sprint(len(answer))+"\r\n\r\n"+answer))
				tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/speech endpoint:/v1/responses/*"})
				res, b := h.doRaw(call.method, call.path, tok, call.body)
				if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
					t.Fatalf("client got %d %s, want 502", res.StatusCode, b)
				}
				waitFor(t, "the call's audit event", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) > 0 })
				if ev := h.sink.last(t); ev.Status != http.StatusBadGateway || !strings.Contains(ev.Error+ev.Details["detail"], strings.TrimLeft(status, "0")) {
					t.Errorf("audit status %d error %q detail %q", ev.Status, ev.Error, ev.Details["detail"])
				}
			})
		}
	}
}

// TestResetContentCarriesNoBody: a 205 has no content (RFC 9110), but Go
// relays whatever body an upstream sends with one, and a client may read
// it. On an endpoint: route a 205 with content (JSON or not, sized or
// chunked) is a 502; one without is relayed as it came, empty. (Model and
// stored routes refuse every 205: TestBodilessModelAnswersRefused.)
func TestResetContentCarriesNoBody(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		chunked           bool
	}{
		{"json", "application/json", `{"id":"file-1","object":"file","purpose":"mail bob@example.org"}`, false},
		{"json chunked", "application/json", `{"id":"file-1","object":"file"}`, true},
		{"binary", "application/octet-stream", "ID3 data", false},
		{"binary chunked", "application/octet-stream", "ID3 data", true},
		{"empty", "application/json", "", false},
		{"empty chunked", "application/json", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(http.StatusResetContent)
				if tc.chunked {
					w.(http.Flusher).Flush()
				}
				_, _ = io.WriteString(w, tc.body)
			})
			tok := h.mint(grant{scope: "endpoint:/v1/files"})
			res, b := h.do("POST", "/v1/files", tok, `{"purpose":"x"}`)
			if tc.body == "" {
				if res.StatusCode != http.StatusResetContent || len(b) != 0 {
					t.Errorf("an empty 205: %d %q", res.StatusCode, b)
				}
				return
			}
			if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
				t.Errorf("a 205 with content: %d %q, want 502", res.StatusCode, b)
			}
			waitFor(t, "the call's audit event", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) > 0 })
			if ev := h.sink.last(t); ev.Status != http.StatusBadGateway || ev.Error == "" {
				t.Errorf("audit status %d error %q", ev.Status, ev.Error)
			}
		})
	}
}
