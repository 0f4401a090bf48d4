package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// An endpoint: answer (a route classify does not know) is inspected by
// what it holds, not by its label. openai-python parses a body as JSON
// whenever it casts an answer to a model, whatever the Content-Type
// (text/plain, application/octet-stream, none, */*, ...), and Python's
// json reads UTF-8 with a BOM and UTF-16/32 too; so an answer labelled
// anything but JSON that opens as JSON is buffered and checked like a
// JSON-labelled one (bufferedAnswer: readBackShape, otherReading, the
// UTF-8 check), and only other answers, or larger ones, pass through.

// sniffBound bounds how much of an endpoint: answer not labelled JSON
// that opens as JSON is read to be checked: maxOtherBody, the bound of a
// JSON-labelled one. A larger answer is passed through (a batch's output
// file may be larger). Tests lower it.
var sniffBound int64 = maxOtherBody

// utf8BOM is the byte order mark some servers put before UTF-8 text.
var utf8BOM = []byte("\xef\xbb\xbf")

// sniffOther reads the start of an endpoint: 2xx answer not labelled
// JSON, and, if it opens as JSON, the rest, up to sniffBound. It reports
// whether res.Body now holds the whole answer (or its start and the error
// that cut it), for bufferedAnswer; otherwise res.Body yields what was
// read and then the rest of the upstream's body, to be passed through.
// The upstream's read errors are left to whoever reads res.Body.
func (p *Proxy) sniffOther(c *call, res *http.Response) (whole bool) {
	if res.Body == nil || res.Body == http.NoBody || res.ContentLength == 0 {
		return false
	}
	defer func() {
		// An answer that ended while sniffed has its trailers in (the
		// transport fills res.Trailer at the body's end): modifyResponse
		// scrubbed only the names announced, and ReverseProxy announces
		// to the client every name the map holds once this returns.
		if dropped := scrubHeader(res.Trailer, c.keys); len(dropped) > 0 {
			p.log.Warn("proxy: dropped upstream trailers carrying a vaulted key", "request_id", c.id, "headers", len(dropped))
		}
		relayableTrailers(res.Trailer)
	}()
	src := res.Body
	head := make([]byte, 0, 512)
	var err error
	open, decided := false, false
	for !decided && err == nil && int64(len(head)) <= sniffBound {
		if len(head) == cap(head) {
			head = append(head, 0)[:len(head)] // grows by doubling
		}
		var n int
		n, err = src.Read(head[len(head):cap(head)])
		head = head[:len(head)+n]
		open, decided = jsonOpening(head, err != nil)
	}
	if open && err == nil {
		head, err = readDoubling(head, io.LimitReader(src, sniffBound+1-int64(len(head))))
		if err == nil && int64(len(head)) <= sniffBound {
			err = io.EOF // the answer ended within the bound
		}
	}
	if int64(len(head)) > sniffBound {
		open = false // too large to check: passed through, as before
	}
	if _, unit, _ := jsonEncoding(head); open && errors.Is(err, io.EOF) && unit == 1 && !utf8Text(head) {
		// Not UTF-8 (nor UTF-16/32): Python's json refuses the bytes,
		// and the other SDKs parse only JSON-labelled answers, so a
		// binary file that happens to start with '{' goes as before.
		open = false
	}
	if open {
		// Judged, and relayed, as without its BOM (as a client reads it).
		head = bytes.TrimPrefix(head, utf8BOM)
		res.ContentLength = int64(len(head))
	}
	res.Body = &headBody{head: head, err: err, src: src, whole: open}
	return open
}

// headBody is an answer whose start sniffOther read already: head, then
// err when the read of the start ended in one (io.EOF included), else
// the rest of src. whole: head is the whole answer (or all of it before
// err cut it), handed to bufferedAnswer as it is (readBuffered).
type headBody struct {
	head  []byte
	err   error
	src   io.ReadCloser
	whole bool
}

func (h *headBody) Read(p []byte) (int, error) {
	if len(h.head) > 0 {
		n := copy(p, h.head)
		h.head = h.head[n:]
		if len(h.head) == 0 {
			h.head = nil // a large start is let go once relayed
		}
		return n, nil
	}
	if h.err != nil {
		return 0, h.err
	}
	return h.src.Read(p)
}

func (h *headBody) Close() error {
	h.head = nil
	return h.src.Close()
}

// readBuffered reads an answer for bufferedAnswer, up to limit+1 bytes
// (size is the length it announces, a hint); an answer sniffOther read
// whole is taken over as it is, not copied.
func readBuffered(r io.Reader, size, limit int64) ([]byte, error) {
	if h, ok := r.(*headBody); ok && h.whole {
		b, err := h.head, h.err
		h.head, h.err = nil, io.EOF
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return b, err
	}
	return readDoubling(make([]byte, 0, min(size, limit)+1), io.LimitReader(r, limit+1))
}

// withoutBOM drops a UTF-8 BOM that opens an answer: a JSON-labelled
// endpoint: answer is judged (and relayed) as without it, as the clients
// that skip it (openai-python, openai-node) read it.
func withoutBOM(src io.ReadCloser) io.ReadCloser {
	if src == nil || src == http.NoBody {
		return src
	}
	head := make([]byte, 0, len(utf8BOM))
	var err error
	for len(head) < len(utf8BOM) && err == nil && bytes.HasPrefix(utf8BOM, head) {
		var n int
		n, err = src.Read(head[len(head):cap(head)])
		head = head[:len(head)+n]
	}
	if len(head) == len(utf8BOM) && bytes.Equal(head, utf8BOM) {
		head = nil
	}
	return &headBody{head: head, err: err, src: src}
}

// jsonOpening reports whether b, the start of an answer (all of it when
// eof), opens a JSON object or array as Python's json.loads reads bytes
// (so openai-python): in UTF-8, past a BOM, or in UTF-16 or UTF-32
// (jsonEncoding), past JSON white space. A UTF-8 BOM after white space
// is skipped too (payload's looksLikeJSON: decoders differ there).
// decided is false while b holds too little to tell.
func jsonOpening(b []byte, eof bool) (open, decided bool) {
	if len(b) < 4 && !eof {
		return false, false
	}
	bom, unit, at := jsonEncoding(b)
	b = b[bom:]
	skipBOM := unit == 1 // past a UTF-16/32 BOM, a second one is refused by Python
	for len(b) >= unit {
		u := b[:unit]
		c := u[at]
		for i, x := range u {
			if i != at && x != 0 {
				return false, true // not an ASCII character
			}
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			b = b[unit:]
		case c == '{' || c == '[':
			return true, true
		case skipBOM && c == utf8BOM[0]:
			if len(b) < len(utf8BOM) {
				return false, eof
			}
			if !bytes.HasPrefix(b, utf8BOM) {
				return false, true
			}
			b, skipBOM = b[len(utf8BOM):], false
		default:
			return false, true
		}
	}
	return false, eof
}

// jsonEncoding tells the encoding of JSON text b as Python's
// json.detect_encoding does, by a UTF-32 or UTF-16 BOM or, without one,
// by which of the first four bytes are zero: the length of its BOM (0 for
// none; a UTF-8 BOM is left to the caller), its code unit's size (1 for
// UTF-8) and where an ASCII character's byte is in a code unit.
func jsonEncoding(b []byte) (bom, unit, at int) {
	switch {
	case bytes.HasPrefix(b, []byte("\x00\x00\xfe\xff")):
		return 4, 4, 3
	case bytes.HasPrefix(b, []byte("\xff\xfe\x00\x00")):
		return 4, 4, 0
	case bytes.HasPrefix(b, []byte("\xfe\xff")):
		return 2, 2, 1
	case bytes.HasPrefix(b, []byte("\xff\xfe")):
		return 2, 2, 0
	case len(b) < 4:
		return 0, 1, 0
	case b[0] == 0 && b[1] != 0:
		return 0, 2, 1
	case b[0] == 0:
		return 0, 4, 3
	case b[1] == 0 && (b[2] != 0 || b[3] != 0):
		return 0, 2, 0
	case b[1] == 0:
		return 0, 4, 0
	}
	return 0, 1, 0
}
