package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/pamctl/pamctl/proxy/mask"
)

// labelledAnswer is an upstream that answers body labelled ct ("" for no
// Content-Type at all: net/http would sniff one).
func labelledAnswer(ct, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct == "" {
			w.Header()["Content-Type"] = nil
		} else {
			w.Header().Set("Content-Type", ct)
		}
		_, _ = io.WriteString(w, body)
	}
}

// sniffLabels are the labels of answers a client parses as JSON all the
// same (openai-python does whenever it casts to a model).
var sniffLabels = []string{"application/json", "text/plain", "application/octet-stream", "", "text/html", "application/xml", "text/json", "*/*", "text/event-stream"}

// TestEndpointAnswerJudgedWhateverItsLabel: an endpoint: answer that is a
// stored chat completion, a Response or a list of chat messages with
// calls is masked and judged whatever its Content-Type, and with a UTF-8
// BOM or white space in front: the client gets exactly what it gets for
// the same answer labelled application/json, bare; as JSON lines it is
// withheld whatever its label, as labelled JSON. (Only the
// JSON-labelled one was checked; the others, and the JSON-labelled one
// with a BOM, were relayed unmasked with the shell call unjudged.)
func TestEndpointAnswerJudgedWhateverItsLabel(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	tok := h.mint(grant{scope: toolScopes + " endpoint:/v1/files/*"})
	for kind, answer := range map[string]string{
		"chat.completion": chatToolAnswer,
		"response":        responsesToolAnswer,
		"messages":        msgList(msgUser, msgDenied),
	} {
		h.up.set(labelledAnswer("application/json", answer))
		res, want := h.do("GET", "/v1/files/file-1", tok, "")
		if res.StatusCode != http.StatusOK || strings.Contains(string(want), "rm -rf") || strings.Contains(string(want), "ops@example.com") {
			t.Fatalf("%s labelled JSON: not masked and judged: %d %s", kind, res.StatusCode, want)
		}
		// JSON lines whose first is the answer: withheld (trailing data)
		// labelled JSON, and so labelled anything else.
		h.up.set(labelledAnswer("application/json", answer+"\n"+answer+"\n"))
		if res, b := h.do("GET", "/v1/files/file-1", tok, ""); res.StatusCode != http.StatusBadGateway {
			t.Fatalf("%s lines labelled JSON: %d %s", kind, res.StatusCode, b)
		}
		for _, ct := range sniffLabels {
			h.up.set(labelledAnswer(ct, "\ufeff"+answer+"\n"+answer+"\n"))
			if res, b := h.do("GET", "/v1/files/file-1", tok, ""); res.StatusCode != http.StatusBadGateway {
				t.Errorf("%s lines labelled %q: %d %s", kind, ct, res.StatusCode, b)
			}
		}
		for _, ct := range sniffLabels {
			for _, prefix := range []string{"", "\ufeff", " \r\n\t", "\ufeff\n"} {
				t.Run(fmt.Sprintf("%s/%q/%q", kind, ct, prefix), func(t *testing.T) {
					h.up.set(labelledAnswer(ct, prefix+answer))
					res, got := h.do("GET", "/v1/files/file-1", tok, "")
					if res.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
						t.Errorf("judged otherwise than labelled JSON: %d %s\nwant %s", res.StatusCode, got, want)
					}
				})
			}
		}
	}
}

// utf16le, utf16be and utf32le encode s as Python's json.loads of bytes
// reads them (detect_encoding).
func utf16le(s string) string {
	var b bytes.Buffer
	for _, u := range utf16.Encode([]rune(s)) {
		_ = binary.Write(&b, binary.LittleEndian, u)
	}
	return b.String()
}

func utf16be(s string) string {
	var b bytes.Buffer
	for _, u := range utf16.Encode([]rune(s)) {
		_ = binary.Write(&b, binary.BigEndian, u)
	}
	return b.String()
}

func utf32le(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		_ = binary.Write(&b, binary.LittleEndian, uint32(r))
	}
	return b.String()
}

// TestEndpointAnswerInUTF16Refused: a stored model answer in UTF-16 or
// UTF-32 (which Python's json.loads reads, BOM or not), labelled anything,
// is withheld as a JSON-labelled one is: pamctl masks and judges UTF-8
// only. (Labelled application/octet-stream or */*, it was relayed.)
func TestEndpointAnswerInUTF16Refused(t *testing.T) {
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	tok := h.mint(grant{scope: toolScopes + " endpoint:/v1/files/*"})
	for name, body := range map[string]string{
		"utf-16le bom": "\xff\xfe" + utf16le(chatToolAnswer),
		"utf-16be bom": "\xfe\xff" + utf16be(chatToolAnswer),
		"utf-16le":     utf16le(" " + chatToolAnswer),
		"utf-16be":     utf16be(chatToolAnswer),
		"utf-32le":     utf32le(chatToolAnswer),
		"utf-32le bom": "\xff\xfe\x00\x00" + utf32le(chatToolAnswer),
	} {
		for _, ct := range []string{"application/json", "application/octet-stream", "*/*", "text/plain"} {
			t.Run(name+"/"+ct, func(t *testing.T) {
				h.up.set(labelledAnswer(ct, body))
				res, b, err := h.doAt(h.srv.Client(), h.srv.URL, "GET", "/v1/files/file-1", tok, "")
				if err == nil && (res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamEncoding) {
					t.Errorf("relayed: %d %q", res.StatusCode, b)
				}
			})
		}
	}
}

// TestEndpointFileContentPassesThrough: what is not a JSON answer
// (text, binary data, a binary file that happens to start with '{') and
// JSON larger than the bound are passed through as before, byte for
// byte; a batch's output file (JSON lines) within the bound is relayed
// whole. A JSON answer within the bound is buffered (it leaves with its
// length), one over it is not.
func TestEndpointFileContentPassesThrough(t *testing.T) {
	defer func(b int64) { sniffBound = b }(sniffBound)
	sniffBound = 4 << 10
	h := newHarness(t, withRules(t, toolRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
	tok := h.mint(grant{scope: toolScopes + " endpoint:/v1/files/*"})
	batch := `{"id":"batch_req_1","custom_id":"r1","response":{"status_code":200,"request_id":"req_1","body":{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}},"error":null}` + "\n"
	big := "[" + strings.Repeat(`{"n":1},`, 1024) + `{"n":1}]`
	for _, tc := range []struct {
		name, ct, body string
		sized          bool // buffered: it leaves with a Content-Length
	}{
		{"text", "text/plain", "hello\nworld\n", false},
		{"binary", "application/octet-stream", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", false},
		{"binary opening with a brace", "application/octet-stream", "{\xff\xfe\x00\x01binary", false},
		{"binary opening with a bracket", "*/*", "[\x80\x81\x00", false},
		{"utf-8 with a nul", "application/octet-stream", "{\"a\":\"\x00\"}", false},
		{"batch output", "application/octet-stream", strings.Repeat(batch, 3), true},
		{"json within the bound", "text/plain", `{"object":"file","id":"file-1"}`, true},
		{"json over the bound", "application/octet-stream", big, false},
		{"white space over the bound", "text/plain", strings.Repeat(" ", 5<<10) + "{}", false},
		{"empty", "text/plain", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.up.set(labelledAnswer(tc.ct, tc.body))
			res, got := h.do("GET", "/v1/files/file-1/content", tok, "")
			if res.StatusCode != http.StatusOK || string(got) != tc.body {
				t.Fatalf("not passed as it came: %d %q", res.StatusCode, clip(string(got), 200))
			}
			if sized := res.Header.Get("Content-Length") == strconv.Itoa(len(tc.body)) && tc.body != ""; sized != tc.sized {
				t.Errorf("Content-Length %q, want it set: %v", res.Header.Get("Content-Length"), tc.sized)
			}
		})
	}
}

// TestEndpointSniffedAnswerCut: an answer not labelled JSON that opens as
// JSON and is cut short is a 502 within the bound (it was being buffered:
// nothing was sent), and aborted past it (F6: passed through, the client
// sees a broken answer).
func TestEndpointSniffedAnswerCut(t *testing.T) {
	defer func(b int64) { sniffBound = b }(sniffBound)
	sniffBound = 4 << 10
	for name, tc := range map[string]struct {
		body string
		cut  bool
	}{
		"within the bound": {body: `{"object":"chat.completion","choices":[`},
		"over the bound":   {body: "[" + strings.Repeat(`{"n":1},`, 1024), cut: true},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.up.set(rawAnswer(t, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 50000\r\n\r\n"+tc.body))
			res, b, err := h.doAt(h.srv.Client(), h.srv.URL, "GET", "/v1/files/file-1", h.mint(grant{scope: "endpoint:/v1/files/*"}), "")
			switch {
			case tc.cut && err == nil:
				t.Fatalf("a cut answer reached the client whole: %d %q", res.StatusCode, clip(string(b), 100))
			case !tc.cut && (err != nil || res.StatusCode != http.StatusBadGateway):
				t.Fatalf("%d %q %v, want a 502", res.StatusCode, b, err)
			}
		})
	}
}

func TestJSONOpening(t *testing.T) {
	for _, tc := range []struct {
		in            string
		eof           bool
		open, decided bool
	}{
		{`{"a":1}`, true, true, true},
		{`[1]`, true, true, true},
		{" \r\n\t{", false, true, true},
		{"\ufeff{", false, true, true},
		{" \ufeff {", false, true, true},
		{"\ufeff\ufeff{", false, false, true},
		{"\xef\xbb", false, false, false},
		{"\xef\xbb", true, false, true},
		{"  ", false, false, false},
		{"    ", false, false, false},
		{"    ", true, false, true},
		{"", true, false, true},
		{"hello", false, false, true},
		{`"str"`, true, false, true},
		{"data: {}", false, false, true},
		{"\x00{\x00\"", false, true, true},            // UTF-16BE
		{"{\x00\"\x00", false, true, true},            // UTF-16LE
		{"\xff\xfe{\x00", false, true, true},          // UTF-16LE, BOM
		{"\xfe\xff\x00[", false, true, true},          // UTF-16BE, BOM
		{"\xff\xfe\xff\xfe{\x00", false, false, true}, // a second BOM
		{"\x00\x00\x00{", false, true, true},          // UTF-32BE
		{"{\x00\x00\x00", false, true, true},          // UTF-32LE
		{"\x00\x00\xfe\xff\x00\x00\x00 \x00\x00\x00{", false, true, true},
		{" \x00 \x01{\x00", false, false, true}, // UTF-16LE, then not ASCII
		{"\x89PNG", false, false, true},
		{"{\xff", true, true, true}, // opens as JSON; the UTF-8 check is sniffOther's
	} {
		open, decided := jsonOpening([]byte(tc.in), tc.eof)
		if open != tc.open || decided != tc.decided {
			t.Errorf("jsonOpening(%q, eof %v) = %v, %v; want %v, %v", tc.in, tc.eof, open, decided, tc.open, tc.decided)
		}
	}
}

// TestEndpointSniffedAnswerTrailers: a passed-through answer that ends
// (trailers included) within the read that sniffs it has its trailers
// in before ReverseProxy announces their names to the client: the ones
// no trailer may be and the ones carrying the key are dropped all the
// same, and a harmless one is relayed.
func TestEndpointSniffedAnswerTrailers(t *testing.T) {
	keyName := "X-" + vaultedKey
	h := newHarness(t)
	h.up.set(rawAnswer(t, "HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"8\r\nID3 data\r\n0\r\nContent-Length: 5\r\n"+keyName+": v\r\nX-Tv: "+vaultedKey+"\r\nX-Fine: ok\r\n\r\n"))
	res, b := h.do("POST", "/v1/audio/speech", h.mint(grant{scope: "endpoint:/v1/audio/speech"}), `{"model":"gpt-4o","input":"hi"}`)
	if res.StatusCode != http.StatusOK || string(b) != "ID3 data" {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
	if res.Trailer.Get("X-Fine") != "ok" || len(res.Trailer) != 1 {
		t.Errorf("trailers %v, want X-Fine alone", res.Trailer)
	}
}
