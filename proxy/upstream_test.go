package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// healthy asserts the proxy still answers a normal call.
func (h *harness) healthy(tok string) {
	h.t.Helper()
	h.up.set(nil)
	if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		h.t.Fatalf("proxy unhealthy after the failure: %d %s", res.StatusCode, b)
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/v1"
	ln.Close() // nothing listens there now: connection refused
	h := newHarness(t, func(o *Options) {
		o.Upstreams = append(o.Upstreams, Upstream{Name: "dead", URL: dead})
		o.Keys = keySource{"openai": vaultedKey, "dead": vaultedKey}
	})
	tok := h.mint(grant{scope: "model:gpt-4o model:dead/gpt-4o", req: "req_dead"})
	res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"dead/gpt-4o","messages":[]}`)
	if res.StatusCode != 502 || apiErr(t, b).Code != CodeUpstreamUnreachable {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	ev := h.sink.last(t)
	if ev.Status != 502 || !strings.Contains(ev.Error, CodeUpstreamUnreachable) || ev.Target != "dead" || ev.Grant != "req_dead" {
		t.Fatalf("audit event %+v", ev)
	}
	// The model list needs every upstream.
	res, b = h.do("GET", "/v1/models", tok, "")
	if res.StatusCode != 502 || apiErr(t, b).Code != CodeUpstreamUnreachable {
		t.Fatalf("models with a dead upstream: %d %s", res.StatusCode, b)
	}
	h.healthy(tok)
}

func TestUpstreamErrorsPassThroughInOpenAIShape(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})

	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		_, _ = io.WriteString(w, `{"error":{"message":"The server had an error while processing your request.","type":"server_error","code":null,"param":null}}`)
	})
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 500 || apiErr(t, b).Message != "The server had an error while processing your request." {
		t.Fatalf("upstream 500: %d %s", res.StatusCode, b)
	}
	if ev := h.sink.last(t); ev.Status != 500 || ev.Details["detail"] != "upstream answered 500" {
		t.Fatalf("audit event %+v", ev)
	}

	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(503)
		_, _ = io.WriteString(w, "<html>Service Unavailable</html>")
	})
	res, b = h.do("POST", "/v1/chat/completions", tok, chatBody)
	if e := apiErr(t, b); res.StatusCode != 503 || e.Code != CodeUpstreamError || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("upstream HTML 503: %d %s", res.StatusCode, b)
	}

	// A 429 from the upstream keeps its status and its OpenAI body.
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(429)
		_, _ = io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded","param":null}}`)
	})
	res, b = h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "7" || apiErr(t, b).Code != "rate_limit_exceeded" {
		t.Fatalf("upstream 429: %d %v %s", res.StatusCode, res.Header, b)
	}
	h.healthy(tok)
}

// TestUpstreamRefusesVaultedKey: the provider's 401 quotes part of the key
// it got; none of it may reach the client.
func TestUpstreamRefusesVaultedKey(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Keys = keySource{"openai": vaultedKey + "-stale"} })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 502 || apiErr(t, b).Code != CodeUpstreamAuth || !strings.Contains(string(b), "pamctl vault set openai") {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	if strings.Contains(string(b), "sk-") {
		t.Fatalf("part of the key reached the client: %s", b)
	}
	if ev := h.sink.last(t); ev.Status != 502 || !strings.Contains(ev.Error, CodeUpstreamAuth) {
		t.Fatalf("audit event %+v", ev)
	}
}

func TestMissingProviderKey(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Keys = keySource{} })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 502 || apiErr(t, b).Code != CodeProviderKey || !strings.Contains(string(b), "pamctl vault set openai") {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	if h.up.count() != 0 {
		t.Fatal("a call without a key reached the upstream")
	}
}

// unreadableKeys is a vault whose store does not answer.
type unreadableKeys struct{}

func (unreadableKeys) ProviderKey(context.Context, string) (string, error) {
	return "", fmt.Errorf("%w: etcd: context deadline exceeded", ErrProviderKeyUnavailable)
}

// TestUnreadableProviderKey: a key the store could not hand out just now
// (etcd without quorum before the gate notices) is a 503 to retry, not a
// 502 telling an administrator to vault a key that is there; for chat and
// for the model list alike.
func TestUnreadableProviderKey(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Keys = unreadableKeys{} })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for _, c := range []struct{ method, path, body string }{{"POST", "/v1/chat/completions", chatBody}, {"GET", "/v1/models", ""}} {
		res, b := h.do(c.method, c.path, tok, c.body)
		if res.StatusCode != 503 || apiErr(t, b).Code != CodeProviderKey || res.Header.Get("Retry-After") == "" ||
			strings.Contains(string(b), "vault set") || !strings.Contains(string(b), "Retry") {
			t.Fatalf("%s %s: %d %v %s", c.method, c.path, res.StatusCode, res.Header, b)
		}
	}
	if h.up.count() != 0 {
		t.Fatal("a call without a key reached the upstream")
	}
}

func TestUpstreamTimeout(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Upstreams[0].Timeout = 100 * time.Millisecond })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	release := make(chan struct{})
	defer close(release)
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		select { // hang past the proxy's header timeout
		case <-release:
		case <-r.Context().Done():
		}
	})
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 504 || apiErr(t, b).Code != CodeUpstreamTimeout {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	if ev := h.sink.last(t); ev.Status != 504 || !strings.Contains(ev.Error, CodeUpstreamTimeout) {
		t.Fatalf("audit event %+v", ev)
	}
	h.healthy(tok)
}

// TestStreamCutMidway: the upstream dies after the first delta. The client
// gets what came, then an error event the SDK raises, then a clean end; the
// trail records the failure; the proxy keeps working.
func TestStreamCutMidway(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		writeChatStream(w, "gpt-4o", true, func() bool {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close() // mid-chunk death: no terminating chunk
			}
			return false
		})
	})
	c := h.client(tok)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var text strings.Builder
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	err := stream.Err()
	if text.String() != "Hello" || err == nil || !strings.Contains(err.Error(), CodeStreamInterrupted) {
		t.Fatalf("text %q, err %v", text.String(), err)
	}
	ev := h.sink.last(t)
	if ev.Status != 200 || !strings.Contains(ev.Error, CodeStreamInterrupted) || ev.Details["detail"] != "upstream stream interrupted" {
		t.Fatalf("audit event %+v", ev)
	}
	h.healthy(tok)
}

// TestStreamIsRelayedEventByEvent: the upstream waits until the client
// holds the first event before sending the rest; a proxy that buffered the
// stream would deadlock here.
func TestStreamIsRelayedEventByEvent(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	gotFirst := make(chan struct{})
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		writeChatStream(w, "gpt-4o", true, func() bool {
			select {
			case <-gotFirst:
				return true
			case <-time.After(5 * time.Second):
				return false
			}
		})
	})
	req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(res.Body)
	var seen []string
	for {
		line, err := rd.ReadString('\n')
		if strings.Contains(line, `"content":"Hello"`) && len(seen) > 0 {
			close(gotFirst)
		}
		if strings.HasPrefix(line, "data: ") {
			seen = append(seen, strings.TrimSpace(strings.TrimPrefix(line, "data: ")))
		}
		if err != nil {
			break
		}
	}
	h.remember([]byte(strings.Join(seen, "\n")))
	if len(seen) != 5 || seen[len(seen)-1] != "[DONE]" {
		t.Fatalf("client saw %d events: %v", len(seen), seen)
	}
	for _, s := range seen {
		if strings.Contains(s, `"choices":[]`) {
			t.Fatalf("usage-only chunk reached a client that did not ask for it: %s", s)
		}
	}
	if ev := h.sink.last(t); ev.Usage == nil || ev.Usage.TotalTokens != 7 {
		t.Fatalf("audit event %+v", ev)
	}
}

// TestClientDisconnectCancelsUpstream: a client that goes away mid-stream
// cancels the upstream call, and the trail says so.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	canceled := make(chan struct{})
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		writeChatStream(w, "gpt-4o", true, func() bool {
			select {
			case <-r.Context().Done():
				close(canceled)
			case <-time.After(5 * time.Second):
			}
			return false
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(res.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call was not canceled")
	}
	waitFor(t, "the audit event", func() bool {
		calls := h.sink.all()
		return len(calls) == 1 && calls[0].Status == statusClientClosed
	})
}

// TestAuditFailureWithholdsAnswer: pamctl fails closed when the trail
// cannot record a call.
func TestAuditFailureWithholdsAnswer(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	h.sink.fail.Store(true)
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 503 || apiErr(t, b).Code != CodeAuditUnavailable || strings.Contains(string(b), "Hello from") {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	c := h.client(tok)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	for stream.Next() {
	}
	var se interface{ Error() string }
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), CodeAuditUnavailable) || !errors.As(err, &se) {
		t.Fatalf("stream without audit ended with %v", err)
	}
	if !strings.Contains(h.logs.String(), "audit append failed") {
		t.Fatal("the audit failure was not logged")
	}
}

// TestStreamFramingCRLFAndSplitWrites: an upstream that ends lines with
// CRLF and flushes events in pieces still streams cleanly, the usage chunk
// is still recognised and dropped, and [DONE] is still held for the audit.
func TestStreamFramingCRLFAndSplitWrites(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(content string) string {
			return `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}`
		}
		raw := ": keep-alive\r\n\r\n" +
			"data: " + chunk("Hel") + "\r\n\r\n" +
			"data: " + chunk("lo") + "\r\n\r\n" +
			`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}` + "\r\n\r\n" +
			"data: [DONE]\r\n\r\n"
		for len(raw) > 0 { // 7-byte writes, each flushed
			n := min(7, len(raw))
			_, _ = io.WriteString(w, raw[:n])
			w.(http.Flusher).Flush()
			raw = raw[n:]
		}
	})
	c := h.client(tok)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var text strings.Builder
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) == 0 {
			t.Fatal("usage-only chunk reached the client")
		}
		text.WriteString(ch.Choices[0].Delta.Content)
	}
	if err := stream.Err(); err != nil || text.String() != "Hello" {
		t.Fatalf("text %q, err %v", text.String(), err)
	}
	if ev := h.sink.last(t); ev.Usage == nil || ev.Usage.TotalTokens != 3 || ev.Error != "" {
		t.Fatalf("audit event %+v", ev)
	}
}

// TestVaultedKeyNeverEchoed: an upstream that echoes the key it got, in a
// normal answer, does not get it to the client; and a secret prints
// redacted whatever the verb.
func TestVaultedKeyNeverEchoed(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,`+
			`"message":{"role":"assistant","content":"you sent `+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")+`"},"finish_reason":"stop"}]}`)
	})
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 200 || !strings.Contains(string(b), "you sent [redacted]") {
		t.Fatalf("got %d %s", res.StatusCode, b)
	}
	s := secret{vaultedKey}
	j, _ := json.Marshal(struct{ K secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), string(j)} {
		if strings.Contains(out, vaultedKey) {
			t.Fatalf("secret printed: %s", out)
		}
	}
}
