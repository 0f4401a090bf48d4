package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// An answer key-scrubbed as bytes (a file or any body passed through)
// that is JSON stays JSON: the vaulted key right after an escaped
// backslash ("\\\\\u0073k-…", "\\\\sk-…") is replaced from where its
// spelling starts, never from the second backslash of the pair, and
// whatever the body's split into reads (TestScrubBodyOneByteReads).
func TestScrubbedPassThroughJSONStaysJSON(t *testing.T) {
	for _, spell := range []func(k string) string{
		func(k string) string { return `\\` + k },
		func(k string) string { return `\\\u` + "00" + jsonHex(k[0]) + k[1:] },
		func(k string) string { return `\\\\u` + "00" + jsonHex(k[0]) + k[1:] },
		func(k string) string { return `\\\\\\\u` + "00" + jsonHex(k[0]) + k[1:] },
	} {
		var body string
		h := echoHarness(t, azureKey, false, func(w http.ResponseWriter, k string) {
			body = `{"path":"C:` + spell(k) + `","n":1}` + "\n"
			w.Header().Set("Content-Type", "application/octet-stream")
			for i := 0; i < len(body); i += 3 { // many small writes
				_, _ = io.WriteString(w, body[i:min(i+3, len(body))])
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
		})
		tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/files/*"})
		res, b := h.do("GET", "/v1/files/file-1/content", tok, "")
		if where := leaks(azureKey, res, b, h); len(where) > 0 || !strings.Contains(string(b), "[redacted]") {
			t.Errorf("%q: the key reached %v: %q", body, where, b)
		}
		if !json.Valid(b) {
			t.Errorf("%q became %q: not JSON", body, b)
		}
	}
}

func jsonHex(c byte) string {
	const hexd = "0123456789abcdef"
	return string([]byte{hexd[c>>4], hexd[c&15]})
}
