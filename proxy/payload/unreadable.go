package payload

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnreadableJSON is wrapped when an answer of the upstream, buffered or
// one event of a stream, is JSON the proxy cannot read as every client
// reads it: masking, key scrubbing and the trail would judge text that
// some client decodes into something else. The proxy withholds a buffered
// answer (502) and ends a stream there with an error event.
var ErrUnreadableJSON = errors.New("payload: the answer is JSON the proxy cannot read")

// errLoneSurrogate is the ErrUnreadableJSON of an answer holding a lone
// surrogate escape (see checkSurrogates).
var errLoneSurrogate = fmt.Errorf("%w: %s; withheld", ErrUnreadableJSON, loneSurrogate)

// checkSurrogates refuses JSON text holding a \u escape of a lone UTF-16
// surrogate (a high surrogate not followed by a low one, or a low one
// alone), in a string or a key. Go's decoder reads it as U+FFFD, so
// masking and key scrubbing see "victim.doe\uFFFD@corp-secret.org"; the
// fast paths then pass the escape on as written, and a client whose
// decoder drops lone surrogates (or keeps them, and a later step drops
// them) reads the address, or a vaulted key, whole. Requests with them
// are refused the same way (Validate). Text that is not JSON is read as
// JSON would be: a backslash outside a string makes it invalid anyway.
func checkSurrogates(s string) error {
	for i := 0; ; {
		k := strings.IndexByte(s[i:], '\\')
		if k < 0 {
			return nil
		}
		i += k
		if i+1 >= len(s) {
			return nil
		}
		if s[i+1] != 'u' {
			i += 2 // \" \\ \/ \n ...: one escape, its second byte is no escape's start
			continue
		}
		r, ok := hex4(s, i+2)
		if !ok {
			i += 2 // not an escape a decoder accepts: the answer is refused as invalid JSON, if it is JSON
			continue
		}
		i += 6
		switch {
		case 0xDC00 <= r && r <= 0xDFFF:
			return errLoneSurrogate
		case 0xD800 <= r && r <= 0xDBFF:
			if i+1 >= len(s) || s[i] != '\\' || s[i+1] != 'u' {
				return errLoneSurrogate
			}
			if r2, ok := hex4(s, i+2); !ok || r2 < 0xDC00 || r2 > 0xDFFF {
				return errLoneSurrogate
			}
			i += 6
		}
	}
}

// hex4 reads the four hex digits of a \u escape at s[at:] (an answer's
// text here, a request's bytes in the validator).
func hex4[T string | []byte](s T, at int) (rune, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	var r rune
	for i := at; i < at+4; i++ {
		c := s[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}
