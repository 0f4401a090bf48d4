package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/pamctl/pamctl/broker/token"
)

func TestRequestsPerMinute(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o", req: "req_rpm", limits: &token.Limits{RPM: 2}})
	for i := 0; i < 2; i++ {
		if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i+1, res.StatusCode, b)
		}
	}
	before := h.up.count()
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "30" {
		t.Fatalf("third call in a minute: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), b)
	}
	if e := apiErr(t, b); e.Code != CodeRateLimitExceeded || e.Type != "requests" || !strings.Contains(e.Message, "2 requests per minute") {
		t.Fatalf("error %+v", e)
	}
	if h.up.count() != before {
		t.Fatal("a limited call reached the upstream")
	}
	if ev := h.sink.last(t); ev.Status != 429 || ev.Decision != "deny" || !strings.Contains(strings.Join(ev.Reasons, " "), CodeRateLimitExceeded) {
		t.Fatalf("audit event %+v", ev)
	}
	// Another grant has its own counters.
	other := h.mint(grant{scope: "model:gpt-4o", limits: &token.Limits{RPM: 2}})
	if res, _ := h.do("POST", "/v1/chat/completions", other, chatBody); res.StatusCode != 200 {
		t.Fatalf("another grant was limited: %d", res.StatusCode)
	}
	h.clock.Advance(29 * time.Second)
	if res, _ := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 429 {
		t.Fatalf("after 29 s: %d, want 429", res.StatusCode)
	}
	h.clock.Advance(time.Second)
	if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		t.Fatalf("after 30 s a request has refilled: %d %s", res.StatusCode, b)
	}
}

func TestTokenBudget(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o", req: "req_budget", limits: &token.Limits{Tokens: 20}})
	// 12 tokens (JSON usage), then 7 (streamed usage): 19 of 20 used.
	if res, _ := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		t.Fatal("first call refused")
	}
	c := h.client(tok)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := h.proxy.limits.usedBy("req_budget"); got != 19 {
		t.Fatalf("budget counted %d tokens, want 19", got)
	}
	// Not exhausted yet: the next call goes (and uses 12 more).
	if res, _ := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		t.Fatal("call under budget refused")
	}
	before := h.up.count()
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" || res.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("over budget: %d %v %s", res.StatusCode, res.Header, b)
	}
	if e := apiErr(t, b); e.Code != CodeTokenBudgetExceeded || e.Type != "tokens" || !strings.Contains(e.Message, "31 of its 20-token budget") {
		t.Fatalf("error %+v", e)
	}
	if h.up.count() != before {
		t.Fatal("an over-budget call reached the upstream")
	}
}

func TestLimiterForgetsExpiredGrants(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(c.Now, nil)
	lim := &token.Limits{RPM: 1}
	if e := l.admit("g1", lim, c.Now().Add(time.Minute)); e != nil {
		t.Fatal(e)
	}
	if e := l.admit("g1", lim, c.Now().Add(time.Minute)); e == nil || e.code != CodeRateLimitExceeded || e.retryAfter != time.Minute {
		t.Fatalf("second request: %+v", e)
	}
	c.Advance(3 * time.Minute)
	if e := l.admit("g2", lim, c.Now().Add(time.Minute)); e != nil {
		t.Fatal(e)
	}
	l.mu.Lock()
	_, kept := l.grants["g1"]
	l.mu.Unlock()
	if kept {
		t.Fatal("an expired grant's counters were kept")
	}
	if e := l.admit("g3", nil, c.Now()); e != nil {
		t.Fatal("no limits means no refusal")
	}
}
