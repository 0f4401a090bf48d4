package audit

import (
	"strings"
	"testing"
	"time"
)

// proxyCallEvent is what the proxy records for an ordinary chat call (the
// benchmark's: a 1 KB prompt, its digest, a short masked answer).
func proxyCallEvent() *Event {
	prompt := strings.Repeat("Please review the following design notes for our internal ticket router and tell me whether the retry policy is sound. ", 9) + "Q&A <soon>."
	return &Event{
		Type: TypeProxyCall,
		Actor: &Actor{Subject: "bench-agent", Groups: []string{"ml"}, Issuer: "bench", Kind: KindService,
			TokenID: "ff504067d12720814d8d336670be706d"},
		Grant: "req_31ce1d28d25a3312b29f", Request: "req_31ce1d28d25a3312b29f", Target: "openai",
		Decision: "allow", Reasons: []string{"scope model:gpt-4o-mini"}, Model: "gpt-4o-mini",
		Endpoint: "POST /v1/chat/completions", Prompt: prompt, PromptSHA256: PromptDigest(prompt),
		Response: "[pamctl mock upstream] You said: \"Please review the following design notes …\" (179 words).",
		Usage:    &Usage{InputTokens: 280, OutputTokens: 58, TotalTokens: 338},
		Masked:   map[string]int{"EMAIL": 1, "PHONE": 2},
		Status:   200, LatencyMS: 3,
		Client:  &Client{RemoteAddr: "127.0.0.1:48982", UserAgent: "Go-http-client/1.1"},
		Details: map[string]string{"request_id": "req_197df94ad03e4ec43a16cb72", "upstream": "openai", "upstream_request_id": "req_32lkqyd7edijy2ex7ts7nwavc7"},
	}
}

// BenchmarkNewDraft is what drafting a proxied call's event costs its
// caller (on the request's path, before the append waits for the disk).
func BenchmarkNewDraft(b *testing.B) {
	now := time.Date(2026, 12, 6, 3, 58, 47, 998611167, time.UTC)
	e := proxyCallEvent()
	b.ReportAllocs()
	for b.Loop() {
		ev := *e
		if _, err := NewDraft(&ev, now); err != nil {
			b.Fatal(err)
		}
	}
}
