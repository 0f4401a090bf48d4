package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// Concurrent streams share the SSE readers' pooled input buffers and the
// pooled buffers their ready events gather in: each client must get
// exactly its own stream, whatever the upstream's write boundaries (run
// with -race). With slow clients the proxy's writes of large chunks wait
// on the socket while other streams run: a buffer given back before its
// write is over would be filled by another stream under it.
func TestConcurrentStreamsKeepTheirOwnBytes(t *testing.T) {
	for _, tc := range []struct {
		pad  int  // the longest run of x in a delta
		slow bool // clients with a small receive buffer
	}{{300, false}, {3000, true}} {
		for _, masked := range []bool{false, true} {
			t.Run(fmt.Sprintf("masked=%v/slow=%v", masked, tc.slow), func(t *testing.T) {
				concurrentStreams(t, masked, tc.pad, tc.slow)
			})
		}
	}
}

func concurrentStreams(t *testing.T, masked bool, pad int, slow bool) {
	var opts []harnessOption
	if masked {
		opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	}
	h := newHarness(t, opts...)
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &req)
		tag := req.Messages[0].Content
		w.Header().Set("Content-Type", "text/event-stream")
		var all strings.Builder
		for i := range 40 {
			all.WriteString("data: " + chunkJSON(fmt.Sprintf("%s-%d-%s;", tag, i, strings.Repeat("x", (i*53)%pad))) + "\n\n")
		}
		all.WriteString("data: [DONE]\n\n")
		s := all.String()
		for k := 0; len(s) > 0; k++ {
			n := min(len(s), 1+(k*97+len(tag)*13)%(pad*7/3))
			if k%5 == 0 {
				n = 1
			}
			_, _ = io.WriteString(w, s[:n])
			w.(http.Flusher).Flush()
			s = s[n:]
		}
	})
	tok := h.mint(grant{scope: "model:*"})
	client := h.srv.Client()
	if slow {
		client = slowReader(t)
	}
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range 4 {
				tag := fmt.Sprintf("client%dit%d", g, it)
				req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions",
					strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"`+tag+`"}]}`))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				var got strings.Builder
				for _, line := range strings.Split(string(b), "\n") {
					d, ok := strings.CutPrefix(line, "data: ")
					if !ok || d == "[DONE]" {
						continue
					}
					var ch struct {
						Choices []struct {
							Delta struct{ Content string } `json:"delta"`
						} `json:"choices"`
					}
					if err := json.Unmarshal([]byte(d), &ch); err != nil {
						t.Errorf("%s: bad event %q", tag, d)
						continue
					}
					for _, c := range ch.Choices {
						got.WriteString(c.Delta.Content)
					}
				}
				var want strings.Builder
				for i := range 40 {
					fmt.Fprintf(&want, "%s-%d-%s;", tag, i, strings.Repeat("x", (i*53)%pad))
				}
				if got.String() != want.String() || !strings.Contains(string(b), "[DONE]") {
					t.Errorf("%s: got %.200q, want %.200q", tag, got.String(), want.String())
				}
			}
		}()
	}
	wg.Wait()
}

// slowReader is a client whose connections take 4 KiB at a time: a
// proxy writing more waits for it to read.
func slowReader(t *testing.T) *http.Client {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = setRcvBuf(fd, 4<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
