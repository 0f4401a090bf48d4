package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
	"github.com/pamctl/pamctl/proxy/toolcall"
)

// Events of unfinished Responses calls.
func respCreated() string {
	return respEv(0, `"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}`)
}

func respAdded(seq, oi int, id, callID, name string) string {
	return respEv(seq, fmt.Sprintf(`"type":"response.output_item.added","output_index":%d,"item":{"id":%q,"type":"function_call","status":"in_progress","arguments":"","call_id":%q,"name":%q}`, oi, id, callID, name))
}

func respArgDelta(seq, oi int, id, d string) string {
	return respEv(seq, fmt.Sprintf(`"type":"response.function_call_arguments.delta","item_id":%q,"output_index":%d,"delta":%s`, id, oi, jsonStr(d)))
}

func respErrorEv(seq int) string {
	return respEv(seq, `"type":"error","code":"server_error","message":"The server had an error.","param":null`)
}

// toolCallSummary is a tool.call event as the tests compare it.
func toolCallSummary(ev audit.Event) string {
	return ev.Target + " " + ev.Decision + " " + strings.Join(ev.Reasons, ",")
}

// Every call the upstream began in a stream leaves exactly one tool.call
// event, also when the stream never finishes it: the upstream's error
// event, response.failed, the stream's end without its item done (or
// without the choice's finish_reason), one call finished and one not.
// An unfinished call is denied, reason "never finished", its tool named
// and its arguments as far as they came, masked as every tool.call
// event's are; the client never sees it.
func TestStreamUnfinishedCallsAudited(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	tok := h.mint(grant{scope: "model:gpt-4o tool:shell"})
	const partial = `{"command":"mail bob@example.com the`
	failed := func(seq int) string {
		return respEv(seq, `"type":"response.failed","response":{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"boom"},"output":[]}`)
	}
	incomplete := func(seq int) string {
		return respEv(seq, `"type":"response.incomplete","response":{"id":"resp_1","object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[]}`)
	}
	seq := 0
	finished := append([]string{respCreated()}, respCall(&seq, 0, "fc_1", "call_1", "shell", `{"command":"ls"}`)...)
	finished = append(finished, respAdded(seq+1, 1, "fc_2", "call_2", "shell"), respArgDelta(seq+2, 1, "fc_2", partial))

	chatFrag := func(index int, id, name, args string) string {
		return chatChunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":%s}}]}`, index, id, name, jsonStr(args)), "")
	}
	for _, c := range []struct {
		name   string
		chat   bool
		events []string
		want   []string // each tool.call event: target decision reasons
		args   bool     // the unfinished call's arguments began
	}{
		{"responses: error mid-arguments", false, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell"), respArgDelta(2, 0, "fc_1", partial), respErrorEv(3)},
			[]string{"shell deny never finished"}, true},
		{"responses: end of stream mid-arguments", false, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell"), respArgDelta(2, 0, "fc_1", partial)},
			[]string{"shell deny never finished"}, true},
		{"responses: end of stream after added", false, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell")},
			[]string{"shell deny never finished"}, false},
		{"responses: error after added", false, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell"), respErrorEv(2)},
			[]string{"shell deny never finished"}, false},
		{"responses: response.failed mid-arguments", false, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell"), respArgDelta(2, 0, "fc_1", partial), failed(3)},
			[]string{"shell deny never finished"}, true},
		{"responses: response.failed with whole arguments, no done", false, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell"), respArgDelta(2, 0, "fc_1", `{"command":"ls"}`), failed(3)},
			[]string{"shell deny never finished"}, true},
		{"responses: two calls, one finished", false, finished,
			[]string{"shell allow ", "shell deny never finished"}, true},
		{"responses: response.incomplete mid-arguments (judged as it stands)", false, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell"), respArgDelta(2, 0, "fc_1", partial), incomplete(3)},
			[]string{"shell deny unreadable arguments"}, false},
		{"chat: end of stream mid-arguments", true, []string{chatFrag(0, "call_1", "shell", partial)},
			[]string{"shell deny never finished"}, true},
		{"chat: error mid-arguments", true, []string{chatFrag(0, "call_1", "shell", partial), sseData(`{"error":{"message":"boom","type":"server_error","code":null}}`)},
			[]string{"shell deny never finished"}, true},
		// An error chunk ends the stream whatever its error says ({} or
		// false too): calls after it are never shown, and each is one
		// event; a fragment that continues a call begun before it (text
		// the masker released at the end) is part of that call.
		{"chat: a call after an error chunk {}", true, []string{sseData(`{"error":{}}`), chatFrag(0, "call_1", "shell", `{"command":"ls"}`), chatChunk(`{}`, "tool_calls")},
			[]string{"shell deny never finished"}, true},
		{"chat: a call after an error chunk false", true, []string{sseData(`{"error":false}`), chatFrag(0, "call_1", "shell", `{"command":"ls"}`), chatChunk(`{}`, "tool_calls")},
			[]string{"shell deny never finished"}, true},
		{"chat: a call in the error chunk", true, []string{sseData(`{"error":{"message":"boom"},"choices":[{"index":0,"delta":` + chatCallDelta(0, "call_1", "shell", `{"command":"ls"}`) + `,"finish_reason":"tool_calls"}]}`)},
			[]string{"shell deny never finished"}, true},
		{"chat: error mid-arguments, then the rest of them", true, []string{chatFrag(0, "call_1", "shell", partial), sseData(`{"error":{"message":"boom"}}`),
			chatChunk(`{"tool_calls":[{"index":0,"function":{"arguments":" file\"}"}}]}`, "")},
			[]string{"shell deny never finished"}, true},
		{"chat: two calls, end of stream", true, []string{chatFrag(0, "call_1", "shell", partial), chatFrag(1, "call_2", "shell", `{"command":"ls"}`)},
			[]string{"shell deny never finished", "shell deny never finished"}, true},
	} {
		before := len(h.sink.ofType(audit.TypeToolCall))
		h.up.set(writeBytes(c.events))
		path, body := "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`
		if c.chat {
			path, body = "/v1/chat/completions", streamReq
		}
		_, b := h.do("POST", path, tok, body)
		hidden := "call_1"
		if strings.Contains(c.name, "one finished") {
			hidden = "call_2"
		}
		if strings.Contains(string(b), "bob@") || strings.Contains(string(b), hidden) || strings.Contains(string(b), "[EMAIL") {
			t.Errorf("%s: the client saw the unfinished call:\n%s", c.name, b)
		}
		evs := h.sink.ofType(audit.TypeToolCall)[before:]
		var got []string
		for _, ev := range evs {
			got = append(got, toolCallSummary(ev))
			if strings.Contains(ev.Details["arguments"], "bob@example.com") {
				t.Errorf("%s: unmasked arguments in the trail: %q", c.name, ev.Details["arguments"])
			}
			if strings.Join(ev.Reasons, ",") == "never finished" {
				if c.args != strings.Contains(ev.Details["arguments"], "command") {
					t.Errorf("%s: arguments %q", c.name, ev.Details["arguments"])
				}
				if ev.Details["call_id"] == "" || ev.Details["tool"] != "shell" {
					t.Errorf("%s: details %v", c.name, ev.Details)
				}
			}
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: tool.call events %q, want %q", c.name, got, c.want)
		}
	}
}

// A client that leaves mid-stream: the calls the stream began and never
// finished are recorded once each (deny, never finished), and a call the
// judge holds when it leaves is recorded by the judge alone ("client gave
// up"), never twice.
func TestStreamUnfinishedCallsClientGone(t *testing.T) {
	holds := &fakeHolds{wait: true, decision: HoldDecision{ID: "req_h"}}
	held := []rules.Rule{{Name: "hold-shell", Target: rules.TargetToolCall, Tool: "shell", Action: rules.RequireApproval,
		Approvers: rules.Approvers{Groups: []string{"security"}}}}
	chatFrag := func(index int, id, name, args string) string {
		return chatChunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":%s}}]}`, index, id, name, jsonStr(args)), "")
	}
	seq := 0
	heldResp := append([]string{respCreated()}, respCall(&seq, 0, "fc_1", "call_1", "shell", `{"command":"ls"}`)...)
	for _, c := range []struct {
		name   string
		chat   bool
		rules  []rules.Rule
		events []string
		want   []string
	}{
		{"responses: mid-arguments", false, toolRules, []string{respCreated(), respAdded(1, 0, "fc_1", "call_1", "shell"), respArgDelta(2, 0, "fc_1", `{"command":"l`)},
			[]string{"shell deny never finished"}},
		{"chat: mid-arguments", true, toolRules, []string{chatFrag(0, "call_1", "shell", `{"command":"l`)},
			[]string{"shell deny never finished"}},
		{"responses: a held call", false, held, heldResp,
			[]string{"shell deny rule hold-shell,hold req_h,client gave up"}},
		{"chat: a held call and one behind it", true, held, []string{chatFrag(0, "call_1", "shell", `{"command":"ls"}`), chatFrag(1, "call_2", "shell", `{"command":"pwd"}`), chatChunk(`{}`, "tool_calls")},
			[]string{"shell deny rule hold-shell,hold req_h,client gave up", "shell deny never finished"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, withRules(t, c.rules), func(o *Options) { o.Holds = holds })
			tok := h.mint(grant{scope: "model:gpt-4o tool:shell"})
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, strings.Join(c.events, "")+": ping\n\n")
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			})
			path, body := "/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`
			if c.chat {
				path, body = "/v1/chat/completions", streamReq
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			res, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if c.rules[0].Action == rules.RequireApproval {
				waitFor(t, "the hold", func() bool { holds.mu.Lock(); defer holds.mu.Unlock(); return len(holds.got) > 0 })
			} else {
				// The comment after the call's events: the proxy has read them.
				readUntilPing(t, res.Body)
			}
			cancel()
			_ = res.Body.Close()
			waitAbandoned(t, h)
			var got []string
			for _, ev := range h.sink.ofType(audit.TypeToolCall) {
				got = append(got, toolCallSummary(ev))
			}
			// The judge's goroutine and the stream's close record in
			// either order.
			slices.Sort(got)
			slices.Sort(c.want)
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("tool.call events %q, want %q", got, c.want)
			}
		})
	}
}

// A computer_call with a batch of actions the stream began and never
// finished is one tool.call event per action, each once: the stream's
// end (finish) and the relay's Close both look for unfinished calls, and
// the item's actions must not be rebuilt as new calls the second time.
// Variants: the upstream's end (EOF), its error event, the client
// leaving.
func TestStreamUnfinishedBatchRecordedOnce(t *testing.T) {
	acts := []string{`{"type":"click","x":1,"y":2,"button":"left"}`, `{"type":"type","text":"ls"}`, `{"type":"keypress","keys":["ENTER"]}`}
	added := respEv(1, fmt.Sprintf(`"type":"response.output_item.added","output_index":0,"item":%s`, computerItem("cu_1", "call_1", "in_progress", acts...)))
	want := []string{"computer_use deny never finished", "computer_use deny never finished", "computer_use deny never finished"}
	check := func(t *testing.T, h *harness, before int, b []byte) {
		t.Helper()
		var got, args []string
		for _, ev := range h.sink.ofType(audit.TypeToolCall)[before:] {
			got = append(got, toolCallSummary(ev))
			args = append(args, ev.Details["arguments"])
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("tool.call events %q (arguments %q), want %q; the client saw:\n%s", got, args, want, b)
		}
		if strings.Contains(string(b), "cu_1") {
			t.Errorf("the client saw the unfinished item:\n%s", b)
		}
	}
	for name, events := range map[string][]string{
		"end of stream": {respCreated(), added},
		"error event":   {respCreated(), added, respErrorEv(2)},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
			tok := h.mint(grant{scope: "model:gpt-4o tool:shell tool:computer_use"})
			h.up.set(writeBytes(events))
			before := len(h.sink.ofType(audit.TypeToolCall))
			_, b := h.do("POST", "/v1/responses", tok, `{"model":"gpt-4o","input":"x","stream":true}`)
			check(t, h, before, b)
		})
	}
	t.Run("client gone", func(t *testing.T) {
		h := newHarness(t, withRules(t, toolRules))
		tok := h.mint(grant{scope: "model:gpt-4o tool:computer_use"})
		h.up.set(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, respCreated()+added+": ping\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/v1/responses", strings.NewReader(`{"model":"gpt-4o","input":"x","stream":true}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readUntilPing(t, res.Body)
		cancel()
		_ = res.Body.Close()
		waitAbandoned(t, h)
		check(t, h, 0, nil)
	})
}

// failingJudge panics (err nil) or fails with err on every call, and
// records what the stream hands it unjudged.
type failingJudge struct {
	err      error
	mu       sync.Mutex
	withheld []string
}

func (j *failingJudge) Judge(_ context.Context, c toolcall.Call) (toolcall.Verdict, error) {
	if j.err != nil {
		return toolcall.Verdict{}, j.err
	}
	panic("judge: boom")
}

func (j *failingJudge) Unrelayed(context.Context, toolcall.Call) error { return nil }

func (j *failingJudge) Withheld(_ context.Context, c toolcall.Call, why string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.withheld = append(j.withheld, c.Tool()+" "+why)
	return nil
}

// A call the judge was asked about and that it panicked or failed on
// (before recording it, as when the trail refuses its event) is still one
// tool.call event: deny, "judge failed", once, also when the stream then
// records its unfinished calls. One the judge found unreadable
// (ErrAnswerShape) it recorded itself: not again.
func TestStreamJudgeFailureRecorded(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{
		{"panic", nil, []string{"shell judge failed"}},
		{"error", errors.New("proxy: audit tool call: the trail is full"), []string{"shell judge failed"}},
		{"unreadable", fmt.Errorf("%w: NaN", toolcall.ErrAnswerShape), nil},
	} {
		j := &failingJudge{err: c.err}
		ctx := context.Background()
		ts := newToolStream(ctx, j, true, func([]byte) {})
		ts.buf.push([]byte(chatChunk(chatCallDelta(0, "call_1", "shell", `{"command":"ls"}`), "tool_calls")))
		if !ts.busy() {
			t.Fatalf("%s: no call awaits a verdict", c.name)
		}
		for {
			keepalive, err := ts.wait(ctx)
			if !keepalive {
				if err == nil {
					t.Errorf("%s: the stream goes on after the judge failed", c.name)
				}
				break
			}
		}
		ts.stop()
		_ = ts.recordUnjudged()
		j.mu.Lock()
		got := j.withheld
		j.mu.Unlock()
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: recorded %q, want %q", c.name, got, c.want)
		}
	}
}

// readUntilPing reads a stream up to the comment the test upstream sends
// after a call's events: by then the proxy has read them.
func readUntilPing(t *testing.T, body io.Reader) {
	t.Helper()
	rd := bufio.NewReader(body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("no ping: %v", err)
		}
		if strings.HasPrefix(line, ": ping") {
			return
		}
	}
}

// waitAbandoned waits for the proxy.call event of a call the client gave
// up on, and a moment more: nothing is recorded after it.
func waitAbandoned(t *testing.T, h *harness) {
	t.Helper()
	waitFor(t, "the abandoned call's audit event", func() bool {
		for _, e := range h.sink.ofType(audit.TypeProxyCall) {
			if e.Status == statusClientClosed {
				return true
			}
		}
		return false
	})
	time.Sleep(50 * time.Millisecond)
}
