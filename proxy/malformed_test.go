package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// TestMalformedAnswerQuotingKey: Go's transport quotes the bytes of an
// answer it cannot parse in its error; an upstream that puts the vaulted
// key there gets it into neither the client's answer, nor the log, nor
// the trail.
func TestMalformedAnswerQuotingKey(t *testing.T) {
	for name, raw := range map[string]string{
		"status line":   "HTTP/1.1 2" + vaultedKey + "\r\n\r\n",
		"status code":   "HTTP/1.1 999" + vaultedKey + " OK\r\n\r\n",
		"not http":      vaultedKey + " hello\r\n\r\n",
		"header line":   "HTTP/1.1 200 OK\r\n" + vaultedKey + "\r\n\r\n",
		"content-len":   "HTTP/1.1 200 OK\r\nContent-Length: " + vaultedKey + "\r\n\r\n",
		"chunk size":    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + vaultedKey + "\r\n",
		"transfer-enc":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + vaultedKey + "\r\n\r\n",
		"stream chunks": "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ndata:\r\nzz" + vaultedKey + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.up.set(rawAnswer(t, raw))
			body := `{"model":"gpt-4o","messages":[]}`
			if name == "stream chunks" {
				body = streamReq
			}
			res, b := h.do("POST", "/v1/chat/completions", h.mint(grant{scope: "model:gpt-4o"}), body)
			lk := strings.ToLower(vaultedKey)
			if strings.Contains(strings.ToLower(string(b)+fmt.Sprint(res.Header)), lk) {
				t.Errorf("client got the key: %d %q", res.StatusCode, b)
			}
			waitFor(t, "the call's audit event", func() bool { return len(h.sink.ofType(audit.TypeProxyCall)) > 0 })
			if strings.Contains(strings.ToLower(fmt.Sprintf("%+v", h.sink.last(t))), lk) {
				t.Errorf("trail holds the key: %+v", h.sink.last(t))
			}
			if strings.Contains(strings.ToLower(h.logs.String()), lk) {
				t.Errorf("logged: %s", h.logs.String())
			}
		})
	}
}

// rawAnswer is an upstream that answers with raw bytes on the connection,
// whatever net/http would write, and closes it.
func rawAnswer(t *testing.T, raw string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_, _ = bw.WriteString(raw)
		_ = bw.Flush()
	}
}
