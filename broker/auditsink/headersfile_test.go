package auditsink

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHeadersFileRefusesInvalidHeaders: a headers_file line whose name is
// not an HTTP token (RFC 9110: invalid bytes, a separator such as '/' or
// '"') or whose value holds a control character (CR, NUL, ...) is refused
// when the file is read (config check, serve: NewTarget), with the file
// and the line number, never the line's content; otherwise every delivery
// would fail, quoting the name in the log and `pamctl audit sinks`.
func TestHeadersFileRefusesInvalidHeaders(t *testing.T) {
	const secret = "s3cr3t-hdr-VALUE"
	for name, line := range map[string]string{
		"invalid bytes":       "\xff\xfeAuth" + secret + ": v",
		"separator":           "X-Splunk/" + secret + ": v",
		"quote":               "\"X-" + secret + "\": v",
		"non-ascii":           "X-Tök" + secret + ": v",
		"NUL in the value":    "Authorization: Splunk " + secret + "\x00x",
		"CR in the value":     "Authorization: Splunk " + secret + "\rX-Injected: 1",
		"escape in the value": "Authorization: Splunk " + secret + "\x1b[2J",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hdrs")
			if err := os.WriteFile(p, []byte("# comment\nX-Ok: fine\n"+line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for what, read := range map[string]func() error{
				"readHeaders": func() error { _, err := readHeaders(p); return err },
				"NewTarget": func() error {
					_, err := NewTarget(SinkConfig{Type: "http", URL: "https://siem.example/hec", HeadersFile: p})
					return err
				},
				"NewAnchorTarget": func() error {
					_, err := NewAnchorTarget(AnchorConfig{URL: "https://anchor.example/a", HeadersFile: p})
					return err
				},
			} {
				err := read()
				if err == nil {
					t.Fatalf("%s: a headers_file line %q was accepted", what, line)
				}
				msg := err.Error()
				if !strings.Contains(msg, p) || !strings.Contains(msg, "line 3") {
					t.Errorf("%s: %q does not name the file and line 3", what, msg)
				}
				if strings.Contains(msg, secret) || strings.ContainsAny(msg, "\xff\x00\r\x1b") || strings.Contains(msg, "Splunk") {
					t.Errorf("%s: %q quotes the file's content", what, msg)
				}
			}
		})
	}
	// Valid names and values stay accepted: tokens with the RFC's
	// punctuation, values with spaces, tabs and non-ASCII bytes.
	p := filepath.Join(t.TempDir(), "hdrs")
	ok := "Authorization: Splunk 0f1e-2d3c\nX-Scope_OrgID.v2: a b\tc\nX-Tag: caf\xc3\xa9\nX-Empty:\n"
	if err := os.WriteFile(p, []byte(ok), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := readHeaders(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(len(h)); got != "4" || h.Get("X-Scope_orgid.v2") != "a b\tc" {
		t.Errorf("valid headers read as %v", h)
	}
}

// Inline headers: are judged as a headers_file's lines are (h6 noticed
// only the file was): a name that is not a header name, or a value with a
// control character, is a config error that quotes neither.
func TestInlineHeadersAreJudgedLikeTheFile(t *testing.T) {
	for _, h := range []map[string]string{
		{"X Team": "ok"},
		{"\ufeffX-Team": "ok"},
		{"X-Team": "a\r\nInjected: SECRETINLINE0001"},
		{"X-Team": "a\x00SECRETINLINE0002"},
	} {
		err := SinkConfig{Type: "http", URL: "https://collector.example.com/i", Headers: h}.Validate()
		if err == nil || !strings.Contains(err.Error(), "cannot be sent") {
			t.Errorf("headers %q: %v", h, err)
			continue
		}
		if strings.Contains(err.Error(), "SECRETINLINE") || strings.Contains(err.Error(), "\ufeff") {
			t.Errorf("headers %q: the error quotes the entry: %v", h, err)
		}
	}
	if err := (SinkConfig{Type: "http", URL: "https://collector.example.com/i", Headers: map[string]string{"X-Team": "ml"}}).Validate(); err != nil {
		t.Errorf("a good inline header: %v", err)
	}
}
