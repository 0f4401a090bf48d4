package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestStreamFirstEventGoesAlone: events go to the client one write per
// upstream read, except the first, which is written (one HTTP chunk) as
// soon as it is ready, even when the upstream sent more with it.
func TestStreamFirstEventGoesAlone(t *testing.T) {
	h := echoHarness(t, azureKey, false, func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "text/event-stream")
		var b strings.Builder
		for _, s := range []string{"one", "two", "three", "four"} {
			b.WriteString("data: " + chunkJSON(s) + "\n\n")
		}
		b.WriteString("data: [DONE]\n\n")
		_, _ = io.WriteString(w, b.String()) // all in one write
	})
	tok := h.mint(grant{scope: "model:*"})
	u, err := url.Parse(h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		u.Host, tok, len(body), body)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || len(res.TransferEncoding) == 0 {
		t.Fatalf("status %d, transfer encoding %v", res.StatusCode, res.TransferEncoding)
	}
	// The raw chunks: each is one write of the proxy.
	var chunks []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil {
			t.Fatalf("chunk size %q: %v", line, err)
		}
		if n == 0 {
			break
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, string(b[:n]))
	}
	if len(chunks) < 2 {
		t.Fatalf("%d chunks, want the first event alone then the rest: %q", len(chunks), chunks)
	}
	if ev := strings.Count(chunks[0], "\n\n"); ev != 1 || !strings.Contains(chunks[0], `"one"`) {
		t.Errorf("first chunk holds %d events, want the first alone: %q", ev, chunks[0])
	}
	all := strings.Join(chunks, "")
	for _, s := range []string{`"one"`, `"two"`, `"three"`, `"four"`, "[DONE]"} {
		if !strings.Contains(all, s) {
			t.Errorf("stream lacks %s: %q", s, all)
		}
	}
}
