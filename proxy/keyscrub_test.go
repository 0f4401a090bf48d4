package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/scrub"
)

// azureKey is an opaque key with no known shape: no detector finds it.
const azureKey = "3f9c2b7e1d4a4c8e9b0f6a5d2e7c1b94"

// otherKey is vaulted for another upstream; no call of these tests uses it.
const otherKey = "sk-other-UNUSED-0a1b2c3d4e5f60718293a4b5c6d7e8f9"

// listingKeys is a vault that can list its keys' values.
type listingKeys map[string]string

func (k listingKeys) ProviderKey(_ context.Context, name string) (string, error) {
	return keySource(k).ProviderKey(context.Background(), name)
}

func (k listingKeys) ProviderKeyValues(context.Context) ([]string, error) {
	var out []string
	for _, v := range k {
		out = append(out, v)
	}
	return out, nil
}

var _ KeyLister = listingKeys(nil)

// uEscape spells s as JSON \u escapes, every byte.
func uEscape(s string) string {
	var b strings.Builder
	for i, c := range []byte(s) {
		if i%2 == 0 {
			fmt.Fprintf(&b, `\u%04x`, c)
		} else {
			fmt.Fprintf(&b, `\u%04X`, c)
		}
	}
	return b.String()
}

func chunkJSON(content string) string {
	return `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}`
}

// echoCase is one way an upstream hands the key it got back.
type echoCase struct {
	name   string
	stream bool
	serve  func(w http.ResponseWriter, key string)
}

func echoCases() []echoCase {
	sse := func(w http.ResponseWriter, events ...string) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range events {
			_, _ = io.WriteString(w, "data: "+e+"\n\n")
			w.(http.Flusher).Flush()
		}
	}
	done := `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
	return []echoCase{
		{"stream literal", true, func(w http.ResponseWriter, k string) {
			sse(w, chunkJSON("your key is "+k), done, "[DONE]")
		}},
		{"stream split over two events", true, func(w http.ResponseWriter, k string) {
			sse(w, chunkJSON("key: "+k[:9]), chunkJSON(k[9:]+" ok"), done, "[DONE]")
		}},
		{"stream u-escaped", true, func(w http.ResponseWriter, k string) {
			sse(w, chunkJSON(uEscape(k)), done, "[DONE]")
		}},
		{"stream one byte per write", true, func(w http.ResponseWriter, k string) {
			w.Header().Set("Content-Type", "text/event-stream")
			all := "data: " + chunkJSON(k) + "\n\n: " + k + "\n\ndata: " + done + "\n\ndata: [DONE]\n\n"
			for i := 0; i < len(all); i++ {
				_, _ = io.WriteString(w, all[i:i+1])
				w.(http.Flusher).Flush()
			}
		}},
		{"stream in event name and id", true, func(w http.ResponseWriter, k string) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: "+k+"\nid: "+k+"\ndata: "+chunkJSON("x")+"\n\ndata: "+done+"\n\ndata: [DONE]\n\n")
		}},
		{"text/plain", false, func(w http.ResponseWriter, k string) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "Authorization: Bearer "+k)
		}},
		{"no content type", false, func(w http.ResponseWriter, k string) {
			w.Header()["Content-Type"] = nil
			_, _ = io.WriteString(w, "Bearer "+k)
		}},
		{"json u-escaped and slash", false, func(w http.ResponseWriter, k string) {
			writeJSON(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`+
				uEscape(k)+` and `+strings.ReplaceAll(k, "-", `\u002d`)+`"},"finish_reason":"stop"}],"model":"`+k+`"}`)
		}},
		{"error body", false, func(w http.ResponseWriter, k string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"bad key `+k+`","type":"invalid_request_error","code":"`+uEscape(k)+`"}}`)
		}},
		{"html error", false, func(w http.ResponseWriter, k string) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "<p>"+k+"</p>")
		}},
		{"headers", false, func(w http.ResponseWriter, k string) {
			w.Header().Set("X-Echo", "Bearer "+k)
			w.Header().Set("Location", "https://up.example/?key="+url.QueryEscape(k))
			w.Header().Set("X-Request-Id", k)
			writeJSON(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
		}},
	}
}

// leaks reports where key or a long piece of it shows in what a client got
// or the trail holds.
func leaks(key string, res *http.Response, body []byte, h *harness) []string {
	var where []string
	piece := key[4 : len(key)-4]
	has := func(s string) bool { return strings.Contains(s, key) || strings.Contains(s, piece) }
	if has(string(body)) || strings.Contains(string(body), uEscape(key)[:24]) {
		where = append(where, "body")
	}
	for name, vals := range res.Header {
		if has(name) || has(strings.Join(vals, " ")) {
			where = append(where, "header "+name)
		}
		if u, _ := url.QueryUnescape(strings.Join(vals, " ")); has(u) {
			where = append(where, "header (decoded) "+name)
		}
	}
	// A client joins a stream's deltas: the key must not come back so.
	if joined := joinDeltas(body); has(joined) {
		where = append(where, "joined deltas")
	}
	ev, _ := json.Marshal(h.sink.all())
	if has(string(ev)) || strings.Contains(string(ev), uEscape(key)[:24]) {
		where = append(where, "audit")
	}
	if has(h.logs.String()) {
		where = append(where, "log")
	}
	return where
}

// joinDeltas concatenates the decoded content deltas of a chat stream.
func joinDeltas(body []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(data), &ch) == nil {
			for _, c := range ch.Choices {
				b.WriteString(c.Delta.Content)
			}
		}
	}
	return b.String()
}

// echoHarness is a proxy whose upstream accepts key and answers with serve.
func echoHarness(t *testing.T, key string, masked bool, serve func(http.ResponseWriter, string), more ...harnessOption) *harness {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		k := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if k != key {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		serve(w, k)
	}))
	t.Cleanup(up.Close)
	opts := []harnessOption{func(o *Options) {
		o.Keys = listingKeys{"openai": key, "other": otherKey}
		o.Upstreams = []Upstream{{Name: "openai", URL: up.URL + "/v1"}}
	}}
	if masked {
		opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	}
	return newHarness(t, append(opts, more...)...)
}

// TestVaultedKeyNeverLeaves: whatever the masking, the key's shape, the
// content type or the way the upstream spells the key, neither the client
// nor the trail ever gets it.
func TestVaultedKeyNeverLeaves(t *testing.T) {
	for _, key := range []string{vaultedKey, azureKey} {
		for _, masked := range []bool{false, true} {
			for _, ec := range echoCases() {
				name := fmt.Sprintf("%s/masked=%v/%s", key[:6], masked, ec.name)
				t.Run(name, func(t *testing.T) {
					h := echoHarness(t, key, masked, ec.serve)
					tok := h.mint(grant{scope: "model:gpt-4o"})
					body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
					if ec.stream {
						body = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`
					}
					res, b := h.do("POST", "/v1/chat/completions", tok, body)
					if where := leaks(key, res, b, h); len(where) > 0 {
						t.Errorf("the key reached: %v\nstatus %d body %s", where, res.StatusCode, b)
					}
					if res.StatusCode == http.StatusOK && !strings.Contains(string(b), "[redacted]") && ec.name != "headers" {
						t.Errorf("no marker where the key was: %s", b)
					}
				})
			}
		}
	}
}

// TestOtherVaultedKeysScrubbed: a key vaulted for another upstream is
// scrubbed too, when the vault can list its keys.
func TestOtherVaultedKeysScrubbed(t *testing.T) {
	h := echoHarness(t, vaultedKey, false, func(w http.ResponseWriter, _ string) {
		w.Header().Set("X-Other", otherKey)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: "+chunkJSON(otherKey[:10])+"\n\ndata: "+chunkJSON(otherKey[10:])+"\n\ndata: [DONE]\n\n")
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","stream":true,"messages":[]}`)
	if where := leaks(otherKey, res, b, h); len(where) > 0 {
		t.Errorf("another vaulted key reached: %v\n%s", where, b)
	}
}

// TestKeyScrubbedFromTrail: audit fields fed by the upstream (summary,
// error detail, upstream request id) never hold the key.
func TestKeyScrubbedFromTrail(t *testing.T) {
	h := echoHarness(t, azureKey, false, func(w http.ResponseWriter, k string) {
		w.Header().Set("X-Request-Id", "id-"+k)
		writeJSON(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"k=`+k+`"},"finish_reason":"stop"}]}`)
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","messages":[]}`)
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	ev := h.sink.last(t)
	if !strings.Contains(ev.Response, "[redacted]") {
		t.Errorf("summary %q", ev.Response)
	}
	if where := leaks(azureKey, res, b, h); len(where) > 0 {
		t.Errorf("the key reached: %v", where)
	}
}

// oneByteReader hands out its input one byte per Read.
type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func (r *oneByteReader) Close() error { return nil }

// TestScrubBodyOneByteReads: the key split over many reads, and in the
// trailers, is caught.
func TestScrubBodyOneByteReads(t *testing.T) {
	trailer := http.Header{"X-Echo": {"Bearer " + azureKey}, "X-Fine": {"ok"}}
	in := "a " + azureKey + " b " + uEscape(azureKey) + " c " + azureKey[:10]
	b, err := io.ReadAll(newScrubBody(&oneByteReader{in}, keySetOf(azureKey), &trailer))
	if err != nil {
		t.Fatal(err)
	}
	if want := "a [redacted] b [redacted] c " + azureKey[:10]; string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
	if trailer.Get("X-Echo") != "" || trailer.Get("X-Fine") != "ok" {
		t.Errorf("trailers %v", trailer)
	}
}

// TestPassThroughAndModelListScrubbed: answers of granted endpoints that
// pass through (audio, files) and the model list are scrubbed too.
func TestPassThroughAndModelListScrubbed(t *testing.T) {
	h := echoHarness(t, azureKey, false, func(w http.ResponseWriter, k string) {
		w.Header().Set("Content-Type", "audio/mpeg")
		_, _ = io.WriteString(w, "ID3"+k)
	})
	tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/speech"})
	res, b := h.do("POST", "/v1/audio/speech", tok, `{"model":"gpt-4o","input":"hi"}`)
	if where := leaks(azureKey, res, b, h); len(where) > 0 || !strings.Contains(string(b), "[redacted]") {
		t.Errorf("pass-through: the key reached %v: %q", where, b)
	}

	h = echoHarness(t, azureKey, false, func(w http.ResponseWriter, k string) {
		writeJSON(w, `{"object":"list","data":[{"id":"`+k+`","object":"model"},{"id":"gpt-4o","object":"model"}]}`)
	})
	tok = h.mint(grant{scope: "model:*"})
	res, b = h.do("GET", "/v1/models", tok, "")
	if where := leaks(azureKey, res, b, h); len(where) > 0 {
		t.Errorf("model list: the key reached %v: %s", where, b)
	}
}

func keySetOf(keys ...string) *scrub.Set { return scrub.New(keys...) }

// TestEncodedAnswerRefused: an answer in a content encoding the proxy did
// not ask for (so cannot read) is refused, not relayed unread.
func TestEncodedAnswerRefused(t *testing.T) {
	for _, ce := range []string{"br", "deflate", "x-custom"} {
		h := echoHarness(t, azureKey, false, func(w http.ResponseWriter, k string) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", ce)
			_, _ = io.WriteString(w, "opaque bytes "+k)
		})
		tok := h.mint(grant{scope: "model:gpt-4o"})
		res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","messages":[]}`)
		if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamError {
			t.Errorf("%s: got %d %s", ce, res.StatusCode, b)
		}
	}
}
