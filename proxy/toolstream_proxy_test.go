package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/pamctl/pamctl/proxy/toolcall"
)

// judgeCalls makes the proxy judge the tool calls of every call to h's
// upstream with j, as the tool policy does for a grant it applies to.
func judgeCalls(h *harness, j toolcall.Judge) {
	up := h.proxy.byName["openai"]
	inner := up.rp
	up.rp = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		callFrom(r.Context()).tools = j
		inner.ServeHTTP(w, r)
	})
}

// writeEvents streams events, one write and flush each.
func writeEvents(events []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range events {
			_, _ = io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

// chatToolEvents is a chat stream: text, then three parallel calls
// (allowed, denied, redacted), their arguments one byte a chunk and
// interleaved, then usage.
func chatToolEvents() []string {
	events := []string{
		chatChunk(`{"role":"assistant","content":""}`, ""),
		chatChunk(`{"content":"On it."}`, ""),
	}
	events = append(events, interleave(
		toolFrags(0, "call_a", "read_file", `{"path":"/etc/hosts"}`),
		toolFrags(1, "call_b", "deny_shell", `{"cmd":"rm -rf /srv"}`),
		toolFrags(2, "call_c", "redact_read", `{"path":"alice@example.com"}`))...)
	return append(events, chatChunk(`{}`, "tool_calls"),
		sseData(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}`),
		sseData("[DONE]"))
}

func TestToolStreamChatThroughProxy(t *testing.T) {
	for _, masked := range []bool{false, true} {
		t.Run(fmt.Sprintf("masked=%v", masked), func(t *testing.T) {
			h := streamHarness(t, masked, writeEvents(chatToolEvents()))
			var judged []string
			judgeCalls(h, toolcall.JudgeFunc(func(_ context.Context, c toolcall.Call) (toolcall.Verdict, error) {
				judged = append(judged, c.Name+" "+c.Arguments)
				return byName(c), nil
			}))
			c := h.client(h.mint(grant{scope: "model:gpt-4o"}))
			stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
				Model:    "gpt-4o",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hosts?")},
			})
			var acc openai.ChatCompletionAccumulator
			var raw strings.Builder
			for stream.Next() {
				ch := stream.Current()
				raw.WriteString(ch.RawJSON())
				if !acc.AddChunk(ch) {
					t.Fatalf("the SDK's accumulator refused a chunk: %s", ch.RawJSON())
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(judged) != 3 || judged[1] != `deny_shell {"cmd":"rm -rf /srv"}` {
				t.Fatalf("judged %q", judged)
			}
			if masked && judged[2] != `redact_read {"path":"[EMAIL]"}` {
				t.Errorf("the judge saw %q, not what the client would get", judged[2])
			}
			if s := unsaid(raw.String()); strings.Contains(s, "deny_shell") || strings.Contains(s, "rm -rf") || strings.Contains(s, "call_b") {
				t.Fatalf("the denied call reached the client: %s", raw.String())
			}
			msg := acc.Choices[0].Message
			if len(msg.ToolCalls) != 2 || msg.ToolCalls[0].Function.Name != "read_file" || msg.ToolCalls[0].Function.Arguments != `{"path":"/etc/hosts"}` ||
				msg.ToolCalls[0].ID != "call_a" || msg.ToolCalls[1].Function.Name != "redact_read" || msg.ToolCalls[1].Function.Arguments != `{"path":"[MASKED]"}` {
				t.Fatalf("tool calls %+v", msg.ToolCalls)
			}
			if acc.Choices[0].FinishReason != "tool_calls" || !strings.HasPrefix(msg.Content, "On it.") || !strings.Contains(msg.Content, "Tool deny_shell is blocked by rule no-deny.") {
				t.Fatalf("finish %q content %q", acc.Choices[0].FinishReason, msg.Content)
			}
			if e := h.sink.last(t); e.Status != 200 || e.Usage == nil || e.Usage.TotalTokens != 14 {
				t.Fatalf("audit %+v", e)
			}
		})
	}
}

func TestToolStreamChatAllDeniedEndsWithStop(t *testing.T) {
	events := append(toolFrags(0, "call_x", "deny_delete", `{"table":"users"}`), chatChunk(`{}`, "tool_calls"), sseData("[DONE]"))
	h := streamHarness(t, false, writeEvents(events))
	judgeCalls(h, toolcall.JudgeFunc(func(_ context.Context, c toolcall.Call) (toolcall.Verdict, error) { return byName(c), nil }))
	c := h.client(h.mint(grant{scope: "model:gpt-4o"}))
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("drop it")},
	})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices[0].Message.ToolCalls) != 0 || acc.Choices[0].FinishReason != "stop" || acc.Choices[0].Message.Content != "Tool deny_delete is blocked by rule no-deny." {
		t.Fatalf("got %+v", acc.Choices[0])
	}
}

func TestToolStreamResponsesThroughProxy(t *testing.T) {
	events := respStream([][4]string{
		{"fc_a", "call_a", "read_file", `{"path":"/etc/hosts"}`},
		{"fc_b", "call_b", "deny_shell", `{"cmd":"rm -rf /srv"}`},
		{"fc_c", "call_c", "get_time", `{}`},
	})
	for _, masked := range []bool{false, true} {
		t.Run(fmt.Sprintf("masked=%v", masked), func(t *testing.T) {
			h := streamHarness(t, masked, writeEvents(events))
			judgeCalls(h, toolcall.JudgeFunc(func(_ context.Context, c toolcall.Call) (toolcall.Verdict, error) { return byName(c), nil }))
			c := h.client(h.mint(grant{scope: "model:gpt-4o"}))
			stream := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
				Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("go")},
			})
			var final responses.Response
			var raw strings.Builder
			last := int64(-1)
			for stream.Next() {
				ev := stream.Current()
				raw.WriteString(ev.RawJSON())
				// The relay's masking may repeat a number (a held-back
				// tail goes out with the number of the event it precedes).
				if ev.SequenceNumber != last+1 && !(masked && ev.SequenceNumber == last) {
					t.Errorf("sequence_number %d after %d", ev.SequenceNumber, last)
				}
				last = ev.SequenceNumber
				if ev.Type == "response.completed" {
					final = ev.Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if s := unsaid(raw.String()); strings.Contains(s, "deny_shell") || strings.Contains(s, "rm -rf") {
				t.Fatalf("the denied call reached the client")
			}
			var kinds []string
			for _, it := range final.Output {
				kinds = append(kinds, it.Type+":"+it.Name)
			}
			if fmt.Sprint(kinds) != "[message: function_call:read_file message: function_call:get_time]" {
				t.Fatalf("final output %v", kinds)
			}
			if !strings.Contains(final.OutputText(), "Tool deny_shell is blocked by rule no-deny.") {
				t.Fatalf("output text %q", final.OutputText())
			}
		})
	}
}

// TestToolStreamHoldKeepsAlive: while the judge holds a call for a person,
// the client gets keep-alive comments, then the call once approved.
func TestToolStreamHoldKeepsAlive(t *testing.T) {
	defer func(d time.Duration) { toolKeepalive = d }(toolKeepalive)
	toolKeepalive = 20 * time.Millisecond
	h := streamHarness(t, false, writeEvents(chatToolEvents()))
	release := make(chan struct{})
	var asked atomic.Int32
	judgeCalls(h, toolcall.JudgeFunc(func(ctx context.Context, c toolcall.Call) (toolcall.Verdict, error) {
		if c.Name == "deny_shell" {
			asked.Add(1)
			select {
			case <-release: // approved
				return toolcall.Verdict{Action: toolcall.Allow, Rule: "shell-needs-approval"}, nil
			case <-ctx.Done():
				return toolcall.Verdict{}, ctx.Err()
			}
		}
		return byName(c), nil
	}))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	res := openStream(t, h, tok)
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	var got strings.Builder
	comments := 0
	for comments < 3 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended while held: %v\n%s", err, got.String())
		}
		got.WriteString(line)
		if line == ": pamctl: waiting for approval\n" {
			comments++
		}
	}
	if strings.Contains(got.String(), "tool_calls") || !strings.Contains(got.String(), "On it.") {
		t.Fatalf("before the verdict the client got:\n%s", got.String())
	}
	close(release)
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	a := accumulateChat(t, got.String()+string(rest))
	if fmt.Sprint(a.names()) != fmt.Sprint([]string{`read_file {"path":"/etc/hosts"}`, `deny_shell {"cmd":"rm -rf /srv"}`, `redact_read {"path":"[MASKED]"}`}) || a.finish != "tool_calls" || !a.done {
		t.Fatalf("after approval: %v %q", a.names(), a.finish)
	}
}

// TestToolStreamClientGoneDuringHold: a client that leaves while a call is
// held cancels the judge's context, and the call is recorded as abandoned.
func TestToolStreamClientGoneDuringHold(t *testing.T) {
	defer func(d time.Duration) { toolKeepalive = d }(toolKeepalive)
	toolKeepalive = 20 * time.Millisecond
	h := streamHarness(t, false, writeEvents(chatToolEvents()))
	held := make(chan struct{})
	canceled := make(chan struct{})
	judgeCalls(h, toolcall.JudgeFunc(func(ctx context.Context, c toolcall.Call) (toolcall.Verdict, error) {
		if c.Name != "deny_shell" {
			return byName(c), nil
		}
		close(held)
		<-ctx.Done()
		close(canceled)
		return toolcall.Verdict{}, ctx.Err()
	}))
	tok := h.mint(grant{scope: "model:gpt-4o"})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(streamReq))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-held
	cancel()
	_ = res.Body.Close()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the judge's context was not canceled when the client left")
	}
	waitFor(t, "the abandoned call's audit event", func() bool {
		for _, e := range h.sink.all() {
			if e.Status == statusClientClosed {
				return true
			}
		}
		return false
	})
}

func TestToolStreamJudgeErrorFailsClosed(t *testing.T) {
	for _, ep := range []string{"chat", "responses"} {
		t.Run(ep, func(t *testing.T) {
			events, path, body := chatToolEvents(), "/v1/chat/completions", streamReq
			if ep == "responses" {
				events = respStream([][4]string{{"fc_a", "call_a", "read_file", `{"path":"/etc/hosts"}`}})
				path, body = "/v1/responses", `{"model":"gpt-4o","stream":true,"input":"go"}`
			}
			h := streamHarness(t, false, writeEvents(events))
			judgeCalls(h, toolcall.JudgeFunc(func(context.Context, toolcall.Call) (toolcall.Verdict, error) {
				return toolcall.Verdict{}, errors.New("audit trail refused the event")
			}))
			_, b := h.do("POST", path, h.mint(grant{scope: "model:gpt-4o"}), body)
			s := string(b)
			if strings.Contains(s, "read_file") || strings.Contains(s, "/etc/hosts") {
				t.Fatalf("an undecided call reached the client:\n%s", s)
			}
			if !strings.Contains(s, "event: error\ndata: {\"error\":{") || !strings.Contains(s, CodeToolCallUndecided) || strings.Contains(s, "refused the event") {
				t.Fatalf("stream end:\n%s", s)
			}
			e := h.sink.last(t)
			if !strings.Contains(e.Error, CodeToolCallUndecided) || strings.Contains(e.Error, "refused the event") {
				t.Fatalf("audit %+v", e)
			}
		})
	}
}

// TestToolStreamNoJudgeIsUntouched: without a judge, tool calls stream as
// they do without the firewall (today's path: every call reaches the
// client).
func TestToolStreamNoJudgeIsUntouched(t *testing.T) {
	h := streamHarness(t, false, writeEvents(chatToolEvents()))
	_, b := h.do("POST", "/v1/chat/completions", h.mint(grant{scope: "model:gpt-4o"}), streamReq)
	a := accumulateChat(t, string(b))
	if len(a.calls) != 3 || a.calls[1].name != "deny_shell" || a.calls[1].args != `{"cmd":"rm -rf /srv"}` || a.finish != "tool_calls" {
		t.Fatalf("without a judge the client got %v %q", a.names(), a.finish)
	}
}
