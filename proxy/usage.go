package proxy

// usageJSON covers both usage shapes: chat completions and embeddings
// (prompt_tokens, completion_tokens) and the Responses API (input_tokens,
// output_tokens).
type usageJSON struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

func (u *usageJSON) usage() tokenUsage {
	out := tokenUsage{Input: u.PromptTokens + u.InputTokens, Output: u.CompletionTokens + u.OutputTokens, Total: u.TotalTokens}
	if out.Total == 0 {
		out.Total = out.Input + out.Output
	}
	return out
}
