package devupstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

type responsesRequest struct {
	Model              string            `json:"model"`
	Input              json.RawMessage   `json:"input"`
	Instructions       json.RawMessage   `json:"instructions"`
	Stream             bool              `json:"stream"`
	MaxOutputTokens    *int64            `json:"max_output_tokens"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Metadata           map[string]string `json:"metadata"`
	Temperature        *float64          `json:"temperature"`
	TopP               *float64          `json:"top_p"`
	User               *string           `json:"user"`
}

// prompt returns the last user input's text and the approximate token count
// of the instructions and all inputs. input is a string or a list of items.
func (q *responsesRequest) prompt() (string, int64, *apiError) {
	texts := []string{contentText(q.Instructions)}
	prompt := ""
	raw := bytes.TrimSpace(q.Input)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, jsonNull):
	case raw[0] == '"':
		prompt = contentText(raw)
		texts = append(texts, prompt)
	case raw[0] == '[':
		var items []struct {
			Type    string          `json:"type"`
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(raw, &items); err != nil {
			return "", 0, invalidParam("input", "expected a string or a list of input items.")
		}
		for _, it := range items {
			text := contentText(it.Content)
			texts = append(texts, text)
			if it.Role == "user" && (it.Type == "" || it.Type == "message") {
				prompt = text
			}
		}
	default:
		return "", 0, invalidParam("input", "expected a string or a list of input items.")
	}
	return prompt, countTokens(strings.Join(texts, "\n")), nil
}

type outputText struct {
	Type        string            `json:"type"`
	Text        string            `json:"text"`
	Annotations []json.RawMessage `json:"annotations"`
	Logprobs    []json.RawMessage `json:"logprobs"`
}

type outputMessage struct {
	Type    string       `json:"type"`
	ID      string       `json:"id"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []outputText `json:"content"`
}

type responseUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int64 `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int64 `json:"total_tokens"`
}

// response is OpenAI's Response object. It has no output_text field: the
// SDKs compute that from output.
type response struct {
	ID                 string          `json:"id"`
	Object             string          `json:"object"`
	CreatedAt          int64           `json:"created_at"`
	Status             string          `json:"status"`
	Background         bool            `json:"background"`
	CompletedAt        *int64          `json:"completed_at"`
	Error              json.RawMessage `json:"error"`
	IncompleteDetails  json.RawMessage `json:"incomplete_details"`
	Instructions       json.RawMessage `json:"instructions"`
	MaxOutputTokens    *int64          `json:"max_output_tokens"`
	Model              string          `json:"model"`
	Output             []outputMessage `json:"output"`
	ParallelToolCalls  bool            `json:"parallel_tool_calls"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Reasoning          struct {
		Effort  *string `json:"effort"`
		Summary *string `json:"summary"`
	} `json:"reasoning"`
	ServiceTier string  `json:"service_tier"`
	Store       bool    `json:"store"`
	Temperature float64 `json:"temperature"`
	Text        struct {
		Format struct {
			Type string `json:"type"`
		} `json:"format"`
	} `json:"text"`
	ToolChoice string            `json:"tool_choice"`
	Tools      []json.RawMessage `json:"tools"`
	TopP       float64           `json:"top_p"`
	Truncation string            `json:"truncation"`
	Usage      *responseUsage    `json:"usage"`
	User       *string           `json:"user"`
	Metadata   map[string]string `json:"metadata"`
}

// Streaming event shapes, named after their "type".
type (
	responseEvent struct {
		Type           string    `json:"type"`
		SequenceNumber int       `json:"sequence_number"`
		Response       *response `json:"response"`
	}
	itemEvent struct {
		Type           string        `json:"type"`
		SequenceNumber int           `json:"sequence_number"`
		OutputIndex    int           `json:"output_index"`
		Item           outputMessage `json:"item"`
	}
	partEvent struct {
		Type           string     `json:"type"`
		SequenceNumber int        `json:"sequence_number"`
		ItemID         string     `json:"item_id"`
		OutputIndex    int        `json:"output_index"`
		ContentIndex   int        `json:"content_index"`
		Part           outputText `json:"part"`
	}
	textDeltaEvent struct {
		Type           string            `json:"type"`
		SequenceNumber int               `json:"sequence_number"`
		ItemID         string            `json:"item_id"`
		OutputIndex    int               `json:"output_index"`
		ContentIndex   int               `json:"content_index"`
		Delta          string            `json:"delta"`
		Logprobs       []json.RawMessage `json:"logprobs"`
	}
	textDoneEvent struct {
		Type           string            `json:"type"`
		SequenceNumber int               `json:"sequence_number"`
		ItemID         string            `json:"item_id"`
		OutputIndex    int               `json:"output_index"`
		ContentIndex   int               `json:"content_index"`
		Text           string            `json:"text"`
		Logprobs       []json.RawMessage `json:"logprobs"`
	}
)

func (h *handler) responses(w http.ResponseWriter, r *http.Request, body []byte) *apiError {
	var req responsesRequest
	if e := decode(body, &req); e != nil {
		return e
	}
	if req.Model == "" {
		return missingParam("model")
	}
	prompt, inputTokens, e := req.prompt()
	if e != nil {
		return e
	}
	text := h.reply(prompt)
	usage := &responseUsage{InputTokens: inputTokens, OutputTokens: countTokens(text)}
	usage.TotalTokens = usage.InputTokens + usage.OutputTokens

	resp := &response{
		ID: newID("resp_"), Object: "response", CreatedAt: time.Now().Unix(),
		Status: "in_progress", Error: jsonNull, IncompleteDetails: jsonNull, Instructions: jsonNull,
		MaxOutputTokens: req.MaxOutputTokens, Model: req.Model, Output: []outputMessage{},
		ParallelToolCalls: true, PreviousResponseID: req.PreviousResponseID,
		ServiceTier: "default", Temperature: 1, TopP: 1, ToolChoice: "auto",
		Tools: []json.RawMessage{}, Truncation: "disabled", User: req.User,
		Metadata: map[string]string{},
	}
	if len(bytes.TrimSpace(req.Instructions)) > 0 {
		resp.Instructions = req.Instructions
	}
	if req.Temperature != nil {
		resp.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		resp.TopP = *req.TopP
	}
	if req.Metadata != nil {
		resp.Metadata = req.Metadata
	}
	resp.Text.Format.Type = "text"

	itemID := newID("msg_")
	final := outputText{Type: "output_text", Text: text, Annotations: []json.RawMessage{}, Logprobs: []json.RawMessage{}}
	done := outputMessage{Type: "message", ID: itemID, Status: "completed", Role: "assistant", Content: []outputText{final}}
	complete := func() *response {
		c := *resp
		c.Status = "completed"
		at := time.Now().Unix()
		c.CompletedAt = &at
		c.Output = []outputMessage{done}
		c.Usage = usage
		return &c
	}

	if !req.Stream {
		writeJSON(w, http.StatusOK, complete())
		return nil
	}

	s := newSSE(w, r)
	seq := -1
	next := func() int { seq++; return seq } // sequence_number: 0, 1, 2, …
	send := s.event
	if !send("response.created", responseEvent{"response.created", next(), resp}) ||
		!send("response.in_progress", responseEvent{"response.in_progress", next(), resp}) {
		return nil
	}
	added := outputMessage{Type: "message", ID: itemID, Status: "in_progress", Role: "assistant", Content: []outputText{}}
	if !send("response.output_item.added", itemEvent{"response.output_item.added", next(), 0, added}) {
		return nil
	}
	emptyPart := outputText{Type: "output_text", Text: "", Annotations: []json.RawMessage{}, Logprobs: []json.RawMessage{}}
	if !send("response.content_part.added", partEvent{"response.content_part.added", next(), itemID, 0, 0, emptyPart}) {
		return nil
	}
	for i, piece := range split(text, h.opts.Deltas) {
		if i > 0 && !h.pause(r) {
			return nil
		}
		ev := textDeltaEvent{"response.output_text.delta", next(), itemID, 0, 0, piece, []json.RawMessage{}}
		if !send(ev.Type, ev) {
			return nil
		}
	}
	if !send("response.output_text.done", textDoneEvent{"response.output_text.done", next(), itemID, 0, 0, text, []json.RawMessage{}}) ||
		!send("response.content_part.done", partEvent{"response.content_part.done", next(), itemID, 0, 0, final}) ||
		!send("response.output_item.done", itemEvent{"response.output_item.done", next(), 0, done}) {
		return nil
	}
	send("response.completed", responseEvent{"response.completed", next(), complete()})
	return nil
}
