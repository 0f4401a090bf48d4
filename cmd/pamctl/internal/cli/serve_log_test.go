package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/safetext"
)

// A server log line holds no character a terminal acts on or shows as
// nothing, whoever's text it quotes (black-box red team: Go's transport
// quotes an upstream's malformed header line in its error, and the JSON
// log wrote its U+202E raw to `kubectl logs`). JSON lines write them as
// \u escapes, so a program decodes the exact text; text lines quote them.
func TestServerLogEscapesOutsideText(t *testing.T) {
	// A hostile upstream: a status line with a bidi override in its
	// reason phrase (Go keeps it raw, in Response.Status), then a header
	// line with one (Go quotes it in its error).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answers := []string{
		"HTTP/1.1 502 Bad\u202eyawetag\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Ok: 1\r\n\u202eevil\u200b header\r\n\r\n",
	}
	go func() {
		for _, a := range answers {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			c.Read(buf)
			c.Write([]byte(a))
			c.Close()
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get("http://" + ln.Addr().String() + "/v1/models")
	if err != nil || !strings.Contains(res.Status, "\u202e") {
		t.Fatalf("the upstream's status line: %v %v", res, err)
	}
	res.Body.Close()
	_, upErr := client.Get("http://" + ln.Addr().String() + "/v1/models")
	if upErr == nil {
		t.Fatal("the malformed header line was taken")
	}
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := newLogger(&Config{Log: LogConfig{Format: format}}, false, &buf)
		log.With("subject", "ali\u200bce").WithGroup("upstream").Warn("upstream failed \u202e",
			"err", upErr, "status", res.Status, "name", "\U000e0061\uf8ff", "wrapped", errors.Join(errors.New("x"), upErr), "stacked", "Z\u0336\u0335\u0334\u0337\u0338")
		out := buf.String()
		for _, r := range out {
			if r != '\n' && safetext.Unsafe(r) {
				t.Errorf("%s log wrote %U raw: %q", format, r, out)
			}
		}
		if strings.Count(out, "\n") != 1 {
			t.Errorf("%s log: not one line: %q", format, out)
		}
		if format == "json" {
			var line struct {
				Msg      string `json:"msg"`
				Subject  string `json:"subject"`
				Upstream struct {
					Err    string `json:"err"`
					Status string `json:"status"`
					Name   string `json:"name"`
				} `json:"upstream"`
			}
			if err := json.Unmarshal([]byte(out), &line); err != nil {
				t.Fatalf("the JSON log line does not decode: %v\n%s", err, out)
			}
			if line.Upstream.Err != upErr.Error() || line.Upstream.Status != res.Status || line.Msg != "upstream failed \u202e" || line.Subject != "ali\u200bce" || line.Upstream.Name != "\U000e0061\uf8ff" {
				t.Errorf("the JSON log line does not decode to the exact text: %+v", line)
			}
			if !strings.Contains(out, `Bad\u202eyawetag`) {
				t.Errorf("the JSON log line does not show the status line escaped: %s", out)
			}
		}
	}
}
