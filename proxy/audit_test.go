package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// clientView records what a raw HTTP client has received so far.
type clientView struct {
	mu   sync.Mutex
	seen strings.Builder
}

func (v *clientView) add(s string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen.WriteString(s)
}

func (v *clientView) String() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seen.String()
}

// TestAuditIsDurableBeforeTheAnswerEnds: when the sink's Append runs, the
// client has not yet received the end of the answer: no body at all for a
// buffered answer, and not the terminal event of a stream.
func TestAuditIsDurableBeforeTheAnswerEnds(t *testing.T) {
	for _, tc := range []struct {
		name, body, end string
	}{
		{"json", chatBody, `"total_tokens":12`},
		{"chat stream", `{"model":"gpt-4o","stream":true,"messages":[]}`, "[DONE]"},
		{"responses stream", `{"model":"gpt-4o","stream":true,"input":"hi"}`, "response.completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			path := "/v1/chat/completions"
			if strings.Contains(tc.body, `"input"`) {
				path = "/v1/responses"
			}
			assertAuditedBeforeEnd(t, h, "model:gpt-4o", path, tc.body, tc.end)
		})
	}
}

// assertAuditedBeforeEnd sends body to path with a token for scope and
// checks that the call's one audit event was appended before the client had
// end, and that the client got end after.
func assertAuditedBeforeEnd(t *testing.T, h *harness, scope, path, body, end string) {
	t.Helper()
	tok := h.mint(grant{scope: scope})
	view := &clientView{}
	var mu sync.Mutex
	var atAppend []string
	hook := func(e *audit.Event) {
		mu.Lock()
		defer mu.Unlock()
		atAppend = append(atAppend, view.String())
	}
	h.sink.onAppend.Store(&hook)
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(res.Body)
	for {
		line, err := rd.ReadString('\n')
		view.add(line)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	res.Body.Close()
	h.remember([]byte(view.String()))
	if !strings.Contains(view.String(), end) {
		t.Fatalf("client never got %q: %s", end, view.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(atAppend) != 1 {
		t.Fatalf("%d audit appends", len(atAppend))
	}
	if strings.Contains(atAppend[0], end) {
		t.Fatalf("the client had the end of the answer (%q) before the audit event was appended: %q", end, atAppend[0])
	}
}
