package devupstream

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// summaryWords is how many words of the prompt the default reply quotes.
const summaryWords = 12

// reply returns the assistant text for prompt, always starting with Prefix.
func (h *handler) reply(prompt string) string {
	var text string
	if h.opts.Reply != nil {
		text = h.opts.Reply(prompt)
	} else {
		text = defaultReply(prompt)
	}
	if strings.HasPrefix(text, Prefix) {
		return text
	}
	if text == "" {
		return Prefix
	}
	return Prefix + " " + text
}

// defaultReply summarises the prompt: its first words and its length.
func defaultReply(prompt string) string {
	words := strings.Fields(prompt)
	if len(words) == 0 {
		return Prefix + " I received no user message. This answer comes from pamctl's built-in mock, not a model: vault a provider key to reach a real one."
	}
	quote := strings.Join(words[:min(len(words), summaryWords)], " ")
	if len(words) > summaryWords {
		quote += " …"
	}
	n := strconv.Itoa(len(words)) + " words"
	if len(words) == 1 {
		n = "1 word"
	}
	return Prefix + ` You said: "` + quote + `" (` + n + `). This answer comes from pamctl's built-in mock, not a model: vault a provider key to reach a real one.`
}

// countTokens approximates a token count the way OpenAI's rule of thumb
// does: one token per four bytes, rounded up. It is deterministic.
func countTokens(s string) int64 {
	return int64(len(s)+3) / 4
}

// split cuts text into n pieces of nearly equal rune counts, never inside a
// rune. A text shorter than n runes gives one piece per rune.
func split(text string, n int) []string {
	runes := utf8.RuneCountInString(text)
	if runes == 0 {
		return nil
	}
	n = min(n, runes)
	parts := make([]string, 0, n)
	start, seen := 0, 0
	for i := range n {
		want := (i + 1) * runes / n // runes consumed after this piece
		end := start
		for seen < want {
			_, size := utf8.DecodeRuneInString(text[end:])
			end += size
			seen++
		}
		parts = append(parts, text[start:end])
		start = end
	}
	return parts
}

// contentText returns the text of a message content: a JSON string, or an
// array of parts whose text-like parts ("text", "input_text", "output_text")
// are joined with newlines. Anything else (null, images, audio) is no text.
func contentText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(raw, &parts) == nil {
			var texts []string
			for _, p := range parts {
				switch p.Type {
				case "text", "input_text", "output_text":
					texts = append(texts, p.Text)
				}
			}
			return strings.Join(texts, "\n")
		}
	}
	return ""
}
