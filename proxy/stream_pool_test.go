package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
)

// Concurrent streams share the SSE readers' pooled input buffers: each
// client must get exactly its own stream, whatever the upstream's write
// boundaries (run with -race).
func TestConcurrentStreamsKeepTheirOwnBytes(t *testing.T) {
	for _, masked := range []bool{false, true} {
		t.Run(fmt.Sprint("masked=", masked), func(t *testing.T) {
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
					all.WriteString("data: " + chunkJSON(fmt.Sprintf("%s-%d-%s;", tag, i, strings.Repeat("x", (i*53)%300))) + "\n\n")
				}
				all.WriteString("data: [DONE]\n\n")
				s := all.String()
				for k := 0; len(s) > 0; k++ {
					n := min(len(s), 1+(k*97+len(tag)*13)%700)
					if k%5 == 0 {
						n = 1
					}
					_, _ = io.WriteString(w, s[:n])
					w.(http.Flusher).Flush()
					s = s[n:]
				}
			})
			tok := h.mint(grant{scope: "model:*"})
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
						res, err := h.srv.Client().Do(req)
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
							fmt.Fprintf(&want, "%s-%d-%s;", tag, i, strings.Repeat("x", (i*53)%300))
						}
						if got.String() != want.String() || !strings.Contains(string(b), "[DONE]") {
							t.Errorf("%s: got %.200q, want %.200q", tag, got.String(), want.String())
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
