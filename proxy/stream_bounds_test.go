package proxy

import (
	"bufio"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/mask"
)

// streamHarness is a proxy, masking as asked, in front of an upstream that
// answers every call with serve.
func streamHarness(t *testing.T, masked bool, serve http.HandlerFunc) *harness {
	t.Helper()
	var opts []harnessOption
	if masked {
		opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	}
	h := newHarness(t, opts...)
	h.up.set(serve)
	return h
}

const streamReq = `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`

// openStream posts streamReq with tok and returns the answer once its
// headers are in; the caller reads and closes its body.
func openStream(t *testing.T, h *harness, tok string) *http.Response {
	t.Helper()
	res, err := postStream(h, tok)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// postStream posts streamReq with tok: openStream for a test that expects
// the call itself may fail (a cut or refused answer).
func postStream(h *harness, tok string) (*http.Response, error) {
	req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(streamReq))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	return h.srv.Client().Do(req)
}

// allocated runs f and returns the bytes the process allocated meanwhile.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestHugeSSELineIsBounded: one endless line costs bounded memory and is
// never relayed, with masking on and off.
func TestHugeSSELineIsBounded(t *testing.T) {
	const size = 32 << 20
	for _, masked := range []bool{false, true} {
		t.Run(map[bool]string{false: "unmasked", true: "masked"}[masked], func(t *testing.T) {
			block := []byte(strings.Repeat("a", 64<<10))
			h := streamHarness(t, masked, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "data: "+chunkJSON("start")+"\n\ndata: {\"x\":\"")
				for n := 0; n < size; n += len(block) {
					if _, err := w.Write(block); err != nil {
						return
					}
				}
				_, _ = io.WriteString(w, "\"}\n\ndata: [DONE]\n\n")
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			var b []byte
			alloc := allocated(func() { _, b = h.do("POST", "/v1/chat/completions", tok, streamReq) })
			t.Logf("allocated %d MiB", alloc>>20)
			if len(b) > 64<<10 {
				t.Errorf("relayed %d bytes of an endless line", len(b))
			}
			if !strings.Contains(string(b), CodeStreamInterrupted) {
				t.Errorf("the stream should end with an error event: %.300s", b)
			}
			// Budget (docs/performance.md): the line up to the reader's
			// limit, grown by doubling, plus the upstream's copy buffers.
			if alloc > 48<<20 {
				t.Errorf("a %d MiB line allocated %d MiB", size>>20, alloc>>20)
			}
		})
	}
}

// TestCommentsPassAtOnce: a keep-alive reaches the client before the next
// event exists, with masking on and off, and many of them cost O(1) each.
func TestCommentsPassAtOnce(t *testing.T) {
	for _, masked := range []bool{false, true} {
		t.Run(map[bool]string{false: "unmasked", true: "masked"}[masked], func(t *testing.T) {
			seen := make(chan struct{})
			h := streamHarness(t, masked, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for i := 0; i < 20000; i++ {
					_, _ = io.WriteString(w, ": keep-alive\n")
				}
				_, _ = io.WriteString(w, ": ping\n")
				w.(http.Flusher).Flush()
				select { // the next event only once the client saw the ping
				case <-seen:
				case <-time.After(5 * time.Second):
				}
				sseWrite(w, "", chunkJSON("hi"))
				sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
				sseWrite(w, "", "[DONE]")
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			res := openStream(t, h, tok)
			defer res.Body.Close()
			rd := bufio.NewReader(res.Body)
			comments := 0
			got := make(chan bool, 1)
			go func() {
				for {
					line, err := rd.ReadString('\n')
					if err != nil {
						got <- false
						return
					}
					if strings.HasPrefix(line, ":") {
						comments++
					}
					if line == ": ping\n" {
						got <- true
						return
					}
				}
			}()
			select {
			case ok := <-got:
				if !ok {
					t.Fatal("stream ended before the ping")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the ping was held back until the next event")
			}
			close(seen)
			rest, _ := io.ReadAll(rd)
			h.remember(rest)
			if comments != 20001 || !strings.Contains(string(rest), "[DONE]") {
				t.Errorf("comments %d, rest %q", comments, rest)
			}
		})
	}
}

// TestNothingEndlessAfterTheEnd: what follows the terminal event is capped
// and the stream ends.
func TestNothingEndlessAfterTheEnd(t *testing.T) {
	for _, masked := range []bool{false, true} {
		t.Run(map[bool]string{false: "unmasked", true: "masked"}[masked], func(t *testing.T) {
			h := streamHarness(t, masked, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				sseWrite(w, "", chunkJSON("hi"))
				sseWrite(w, "", "[DONE]")
				for i := 0; i < 5000; i++ {
					if _, err := io.WriteString(w, "data: "+chunkJSON("after the end")+"\n\n"); err != nil {
						return
					}
				}
			})
			tok := h.mint(grant{scope: "model:gpt-4o"})
			_, b := h.do("POST", "/v1/chat/completions", tok, streamReq)
			_, after, ok := strings.Cut(string(b), "[DONE]")
			if !ok {
				t.Fatalf("no [DONE]: %.300s", b)
			}
			if n := strings.Count(after, "after the end"); n > maxAfterTerminal {
				t.Errorf("%d events relayed after [DONE]", n)
			}
		})
	}
}

// TestBufferedAnswerCapped: a buffered answer larger than the proxy inspects
// is refused with 502 in OpenAI's shape, its memory bounded.
func TestBufferedAnswerCapped(t *testing.T) {
	h := streamHarness(t, true, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"`)
		block := strings.Repeat("a", 1<<20)
		for i := 0; i < 60; i++ {
			if _, err := io.WriteString(w, block); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, `"}}]},"finish_reason":"stop"}]}`)
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	var res *http.Response
	var b []byte
	alloc := allocated(func() {
		res, b = h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","messages":[]}`)
	})
	if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamTooLarge {
		t.Fatalf("got %d %.300s", res.StatusCode, b)
	}
	t.Logf("allocated %d MiB", alloc>>20)
	if alloc > 3*maxResponseBody {
		t.Errorf("a 60 MiB answer allocated %d MiB", alloc>>20)
	}
}

// TestAbandonedStreamIsCharged: a client that leaves mid-stream is charged
// the usage the upstream sends after it left, or an estimate of the text
// relayed when none comes.
func TestAbandonedStreamIsCharged(t *testing.T) {
	for _, withUsage := range []bool{true, false} {
		t.Run(map[bool]string{true: "usage after leaving", false: "no usage"}[withUsage], func(t *testing.T) {
			left := make(chan struct{})
			h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				sseWrite(w, "", chunkJSON(strings.Repeat("word ", 80)))
				<-left
				time.Sleep(50 * time.Millisecond) // the proxy notices the client is gone
				if withUsage {
					sseWrite(w, "", `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":900,"total_tokens":1000}}`)
					sseWrite(w, "", "[DONE]")
				}
			})
			tok := h.mint(grant{scope: "model:gpt-4o", req: "req_abandon", limits: &token.Limits{Tokens: 1 << 20}})
			res := openStream(t, h, tok)
			line, _ := bufio.NewReader(res.Body).ReadString('\n')
			if !strings.Contains(line, "word") {
				t.Fatalf("first line %q", line)
			}
			res.Body.Close()
			close(left)
			waitFor(t, "the abandoned call's audit event", func() bool { return len(h.sink.ofType("proxy.call")) > 0 })
			used := h.proxy.limits.usedBy("req_abandon")
			ev := h.sink.last(t)
			if withUsage && used != 1000 {
				t.Errorf("charged %d, want the 1000 the upstream reported after the client left", used)
			}
			if !withUsage && (used < 100 || ev.Details["usage"] != "estimated") {
				t.Errorf("charged %d (details %v), want an estimate of the 400 bytes relayed", used, ev.Details)
			}
			if ev.Status != statusClientClosed {
				t.Errorf("status %d", ev.Status)
			}
		})
	}
}

// TestAbandonedStreamDrainIsBounded: an upstream that keeps a stream open
// after the client left is cut drainAfterClient later; the relayed text is
// charged as an estimate.
func TestAbandonedStreamDrainIsBounded(t *testing.T) {
	canceled := make(chan struct{})
	h := streamHarness(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "", chunkJSON(strings.Repeat("word ", 80)))
		<-r.Context().Done() // never ends on its own
		close(canceled)
	})
	tok := h.mint(grant{scope: "model:gpt-4o", req: "req_stall", limits: &token.Limits{Tokens: 1 << 20}})
	res := openStream(t, h, tok)
	if line, _ := bufio.NewReader(res.Body).ReadString('\n'); !strings.Contains(line, "word") {
		t.Fatalf("first line %q", line)
	}
	res.Body.Close()
	select {
	case <-canceled:
	case <-time.After(drainAfterClient + 3*time.Second):
		t.Fatal("the upstream call outlived the client by more than the drain bound")
	}
	waitFor(t, "the abandoned call's audit event", func() bool { return len(h.sink.ofType("proxy.call")) > 0 })
	if used := h.proxy.limits.usedBy("req_stall"); used < 100 {
		t.Errorf("charged %d, want an estimate of the 400 bytes relayed", used)
	}
}
