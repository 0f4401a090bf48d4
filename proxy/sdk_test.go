package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/pamctl/pamctl/broker/audit"
)

// client is the official OpenAI Go SDK pointed at the proxy with a pamctl
// token as its API key, as `pamctl exec` sets it up.
func (h *harness) client(tok string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(h.srv.URL+"/v1/"),
		option.WithAPIKey(tok),
		option.WithMaxRetries(0),
		option.WithHTTPClient(h.srv.Client()),
	)
}

// checkForwarded asserts the upstream's last request carried the vaulted key
// and none of the client's credentials.
func (h *harness) checkForwarded(path string) seenRequest {
	h.t.Helper()
	reqs := h.up.requests()
	if len(reqs) == 0 {
		h.t.Fatalf("nothing reached the upstream")
	}
	r := reqs[len(reqs)-1]
	if r.Path != path {
		h.t.Fatalf("upstream got %s, want %s", r.Path, path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+vaultedKey {
		h.t.Fatalf("upstream Authorization = %q, want the vaulted key", got)
	}
	if r.Header.Get("Api-Key") != "" {
		h.t.Fatal("the client's api-key header reached the upstream")
	}
	return r
}

func TestOpenAISDKThroughProxy(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o model:text-embedding-3-small", req: "req_sdk"})
	c := h.client(tok)
	ctx := context.Background()

	t.Run("chat completion", func(t *testing.T) {
		var raw *http.Response
		res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		}, option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if res.Choices[0].Message.Content != "Hello from openai" || res.Usage.TotalTokens != 12 {
			t.Fatalf("answer: %+v", res)
		}
		h.checkForwarded("/v1/chat/completions")
		if raw.Header.Get("Pamctl-Grant") != "req_sdk" || raw.Header.Get("Pamctl-Audit-Id") == "" {
			t.Fatalf("pamctl headers: %v", raw.Header)
		}
		if raw.Header.Get("Set-Cookie") != "" || raw.Header.Get("Openai-Organization") != "" {
			t.Fatalf("upstream account headers reached the client: %v", raw.Header)
		}
		if raw.Header.Get("Pamctl-Upstream-Request-Id") != "upstream-openai" {
			t.Fatalf("upstream request id not kept: %v", raw.Header)
		}
		e := h.sink.last(t)
		if e.Status != 200 || e.Model != "gpt-4o" || e.Grant != "req_sdk" || e.Usage == nil || e.Usage.TotalTokens != 12 ||
			e.Actor == nil || e.Actor.Subject != "alice@example.com" || e.Actor.TokenID == "" || e.Decision != "allow" ||
			e.Details["request_id"] != raw.Header.Get("Pamctl-Audit-Id") || e.Client == nil || !strings.Contains(e.Client.UserAgent, "OpenAI/Go") {
			t.Fatalf("audit event: %+v", e)
		}
	})

	t.Run("streamed chat completion", func(t *testing.T) {
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		})
		var text strings.Builder
		chunks := 0
		for stream.Next() {
			ch := stream.Current()
			chunks++
			if len(ch.Choices) == 0 {
				t.Fatalf("the client got a usage-only chunk it did not ask for: %s", ch.RawJSON())
			}
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != "Hello world" || chunks != 4 {
			t.Fatalf("streamed %q in %d chunks", text.String(), chunks)
		}
		r := h.checkForwarded("/v1/chat/completions")
		var sent struct {
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		_ = json.Unmarshal(r.Body, &sent)
		if !sent.StreamOptions.IncludeUsage {
			t.Fatalf("the proxy did not ask for streamed usage: %s", r.Body)
		}
		e := h.sink.last(t)
		if e.Usage == nil || e.Usage.TotalTokens != 7 || e.Details["stream"] != "true" || e.Status != 200 {
			t.Fatalf("audit event: %+v", e)
		}
	})

	t.Run("streamed chat completion with usage asked", func(t *testing.T) {
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "gpt-4o",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var usage int64
		for stream.Next() {
			if u := stream.Current().Usage; u.TotalTokens > 0 {
				usage = u.TotalTokens
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if usage != 7 {
			t.Fatalf("client asked for usage and got %d tokens", usage)
		}
	})

	t.Run("responses create", func(t *testing.T) {
		res, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model: "gpt-4o",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.OutputText() != "Hello there" {
			t.Fatalf("output %q", res.OutputText())
		}
		h.checkForwarded("/v1/responses")
		if e := h.sink.last(t); e.Usage == nil || e.Usage.InputTokens != 4 || e.Usage.OutputTokens != 6 || e.Endpoint != "POST /v1/responses" {
			t.Fatalf("audit event: %+v", e)
		}
	})

	t.Run("responses stream", func(t *testing.T) {
		stream := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
			Model: "gpt-4o",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
		})
		var text strings.Builder
		var types []string
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			if ev.Type == "response.output_text.delta" {
				text.WriteString(ev.Delta)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != "Hello there" || !slices.Equal(types, []string{"response.created", "response.output_text.delta", "response.output_text.delta", "response.completed"}) {
			t.Fatalf("stream %q, events %v", text.String(), types)
		}
		if e := h.sink.last(t); e.Usage == nil || e.Usage.TotalTokens != 10 || e.Details["stream"] != "true" {
			t.Fatalf("audit event: %+v", e)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		res, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("vector me")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Data) != 1 || len(res.Data[0].Embedding) != 3 {
			t.Fatalf("embeddings: %+v", res)
		}
		h.checkForwarded("/v1/embeddings")
		if e := h.sink.last(t); e.Usage == nil || e.Usage.TotalTokens != 3 || e.Model != "text-embedding-3-small" {
			t.Fatalf("audit event: %+v", e)
		}
	})

	t.Run("models list", func(t *testing.T) {
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if !slices.Equal(ids, []string{"gpt-4o", "text-embedding-3-small"}) {
			t.Fatalf("models in scope: %v", ids)
		}
		h.checkForwarded("/v1/models")
		if e := h.sink.last(t); e.Status != 200 || e.Endpoint != "GET /v1/models" {
			t.Fatalf("audit event: %+v", e)
		}
	})

	t.Run("model outside scope", func(t *testing.T) {
		before := h.up.count()
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Code != CodeModelNotInScope ||
			!strings.Contains(apiErr.Message, "pamctl request --scope model:gpt-4o-mini") {
			t.Fatalf("got %v", err)
		}
		if h.up.count() != before {
			t.Fatal("a refused call reached the upstream")
		}
		if e := h.sink.last(t); e.Decision != "deny" || e.Status != 403 {
			t.Fatalf("audit event: %+v", e)
		}
	})

	if n := len(h.sink.ofType(audit.TypeProxyCall)); n != 8 {
		t.Fatalf("%d proxy.call events for 8 calls", n)
	}
}
