package devupstream

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// fingerprint is the system_fingerprint of every chat answer.
const fingerprint = "fp_pamctl_mock"

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// prompt returns the last user message's text (the last message's when no
// user spoke) and the approximate token count of all messages.
func (c *chatRequest) prompt() (string, int64) {
	last := -1
	texts := make([]string, len(c.Messages))
	for i, m := range c.Messages {
		texts[i] = contentText(m.Content)
		if m.Role == "user" {
			last = i
		}
	}
	if last < 0 {
		last = len(c.Messages) - 1
	}
	return texts[last], countTokens(strings.Join(texts, "\n"))
}

type chatUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
		AudioTokens  int64 `json:"audio_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens          int64 `json:"reasoning_tokens"`
		AudioTokens              int64 `json:"audio_tokens"`
		AcceptedPredictionTokens int64 `json:"accepted_prediction_tokens"`
		RejectedPredictionTokens int64 `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
}

type chatMessage struct {
	Role        string            `json:"role"`
	Content     string            `json:"content"`
	Refusal     *string           `json:"refusal"`
	Annotations []json.RawMessage `json:"annotations"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatMessage     `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             chatUsage    `json:"usage"`
	ServiceTier       string       `json:"service_tier"`
	SystemFingerprint string       `json:"system_fingerprint"`
}

type chunkDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chunkChoice struct {
	Index        int             `json:"index"`
	Delta        chunkDelta      `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type chatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	ServiceTier       string        `json:"service_tier"`
	SystemFingerprint string        `json:"system_fingerprint"`
	Choices           []chunkChoice `json:"choices"`
	// Usage is omitted unless the client asked for it; then it is null on
	// every chunk but the last, as OpenAI sends it.
	Usage any `json:"usage,omitempty"`
}

var jsonNull = json.RawMessage("null")

func (h *handler) chatCompletions(w http.ResponseWriter, r *http.Request, body []byte) *apiError {
	var req chatRequest
	if e := decode(body, &req); e != nil {
		return e
	}
	if req.Model == "" {
		return missingParam("model")
	}
	if len(req.Messages) == 0 {
		return missingParam("messages")
	}
	prompt, promptTokens := req.prompt()
	text := h.reply(prompt)
	var usage chatUsage
	usage.PromptTokens = promptTokens
	usage.CompletionTokens = countTokens(text)
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens

	id, created := newID("chatcmpl-"), time.Now().Unix()
	if !req.Stream {
		writeJSON(w, http.StatusOK, chatCompletion{
			ID: id, Object: "chat.completion", Created: created, Model: req.Model,
			Choices: []chatChoice{{
				Message:      chatMessage{Role: "assistant", Content: text, Annotations: []json.RawMessage{}},
				Logprobs:     jsonNull,
				FinishReason: "stop",
			}},
			Usage:             usage,
			ServiceTier:       "default",
			SystemFingerprint: fingerprint,
		})
		return nil
	}

	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	chunk := func(delta chunkDelta, finish *string) chatChunk {
		c := chatChunk{
			ID: id, Object: "chat.completion.chunk", Created: created, Model: req.Model,
			ServiceTier: "default", SystemFingerprint: fingerprint,
			Choices: []chunkChoice{{Delta: delta, Logprobs: jsonNull, FinishReason: finish}},
		}
		if includeUsage {
			c.Usage = jsonNull
		}
		return c
	}

	s := newSSE(w, r)
	empty := ""
	if !s.event("", chunk(chunkDelta{Role: "assistant", Content: &empty}, nil)) {
		return nil
	}
	for i, piece := range split(text, h.opts.Deltas) {
		if i > 0 && !h.pause(r) {
			return nil
		}
		if !s.event("", chunk(chunkDelta{Content: &piece}, nil)) {
			return nil
		}
	}
	stop := "stop"
	if !s.event("", chunk(chunkDelta{}, &stop)) {
		return nil
	}
	if includeUsage {
		last := chunk(chunkDelta{}, nil)
		last.Choices = []chunkChoice{}
		last.Usage = usage
		if !s.event("", last) {
			return nil
		}
	}
	s.raw("", []byte("[DONE]"))
	return nil
}
