package mask

import (
	"strings"
	"unsafe"
)

// MaxHold bounds the bytes a Stream holds back (besides a constant amount of
// already released context): the longest stretch any detector must read
// past a candidate's start before deciding (a JWT header is the longest).
// Open-ended matches (keys, tokens, PEM blocks) are not held: once one is
// confirmed its placeholder is released and the rest of it is dropped as it
// arrives, so a private key longer than any buffer is masked from its BEGIN
// line onward and never reaches the output.
const MaxHold = maxJWTHeader + 2*maxUnconfirmed

// Stream masks a text that arrives in pieces, such as the deltas of a
// streamed completion. The concatenation of everything Write and Flush
// return equals Mask of the concatenated input, however the input is split:
// a secret split across deltas is still caught. A Stream holds back only the
// shortest tail that could still begin a match (at most MaxHold bytes) and
// is not safe for concurrent use.
type Stream struct {
	m      *Masker
	buf    []byte // buf[:p0] is released context, buf[p0:] is held back
	p0     int
	sw     bool // inside an open-ended match, dropping its bytes
	swKind int
	swSt   int
	held   string // bytes the extender must see again
	counts Counts
	sc     scanner // reused by every write
	out    []byte  // arena of released text, see release
}

// release returns a copy of t that Stream never changes: small pieces are
// appended to an arena whose bytes are never rewritten (a full arena is
// replaced, not reused), so one allocation serves many writes.
func (s *Stream) release(t string) string {
	if t == "" {
		return ""
	}
	if cap(s.out)-len(s.out) < len(t) {
		if len(t) > releaseArena/4 {
			return strings.Clone(t)
		}
		s.out = make([]byte, 0, releaseArena)
	}
	n := len(s.out)
	s.out = append(s.out, t...)
	return unsafe.String(&s.out[n], len(t))
}

// releaseArena is the size of one arena of released text.
const releaseArena = 512

// NewStream starts masking a new text.
func (m *Masker) NewStream() *Stream {
	return &Stream{m: m, counts: Counts{}}
}

// Write adds the next piece of text and returns the masked text that is safe
// to release now (possibly empty; possibly delta itself). It keeps no
// reference to delta: the caller may reuse delta's bytes once Write returns.
func (s *Stream) Write(delta string) string {
	if !s.m.Enabled() {
		return delta
	}
	if delta == "" {
		return ""
	}
	return s.feed(delta, false)
}

// Flush ends the text: it returns the masked remainder. The Stream can then
// be reused for a new text; Counts keeps accumulating.
func (s *Stream) Flush() string {
	if !s.m.Enabled() {
		return ""
	}
	out := s.feed("", true)
	s.buf, s.p0, s.sw, s.held = s.buf[:0], 0, false, ""
	return out
}

// Counts returns the findings released so far, per type.
func (s *Stream) Counts() Counts { return s.counts }

// Pending is the number of bytes held back.
func (s *Stream) Pending() int { return len(s.buf) - s.p0 + len(s.held) }

func (s *Stream) feed(text string, final bool) string {
	var b strings.Builder
	for {
		if s.sw {
			t := s.held + text
			n, st, done := extend(s.swKind, s.swSt, t, final)
			s.pushCtx(t[:n])
			if !done {
				// t is text itself when nothing was held: copy what is
				// kept, as a caller may reuse text's bytes (Write).
				s.held, s.swSt = strings.Clone(t[n:]), st
				return b.String()
			}
			s.sw, s.held = false, ""
			text = t[n:]
		}
		s.compact()
		noneHeld := len(s.buf) == s.p0 // nothing held back before text
		s.buf = append(s.buf, text...)
		// w aliases s.buf: it is only read until s.buf changes below, and
		// what is returned or kept is copied out of it first.
		w := unsafe.String(unsafe.SliceData(s.buf), len(s.buf))
		var r runResult
		if rel, ok := s.quick(w, final); ok {
			r.rel = rel
		} else {
			r = s.m.runWith(&s.sc, w, s.p0, final)
		}
		if len(r.sel) == 0 && b.Len() == 0 {
			// Nothing found: release w[p0:rel]; the delta itself when it
			// is exactly that, no copy.
			p0 := s.p0
			s.p0 = r.rel
			if noneHeld && p0+len(text) == r.rel {
				return text
			}
			return s.release(w[p0:r.rel])
		}
		s.m.emit(&b, w, s.p0, r, s.counts)
		if !r.open {
			s.p0 = r.rel
			return b.String()
		}
		c := r.sel[len(r.sel)-1]
		s.sw, s.swKind, s.swSt = true, c.kind, c.st
		text = strings.Clone(w[r.rel:])
		s.buf = s.buf[:r.rel]
		s.p0 = r.rel
	}
}

// quick is Masker.quickRelease for a write that does not end the text.
func (s *Stream) quick(w string, final bool) (int, bool) {
	if final {
		return 0, false
	}
	return s.m.quickRelease(w, s.p0)
}

// streamCompactAt is the window length past which a Stream drops released
// context beyond ctxLen; below it the window grows in place, so a write
// copies only its delta.
const streamCompactAt = 1024

// compact keeps at most ctxLen bytes of released context before the held
// back text once the window is long.
func (s *Stream) compact() {
	if len(s.buf) < streamCompactAt || s.p0 <= ctxLen {
		return
	}
	from := s.p0 - ctxLen
	s.buf = s.buf[:copy(s.buf, s.buf[from:])]
	s.p0 = ctxLen
}

// pushCtx appends released (dropped) text to the context.
func (s *Stream) pushCtx(raw string) {
	if len(raw) >= ctxLen {
		s.buf = append(s.buf[:0], raw[len(raw)-ctxLen:]...)
	} else {
		s.buf = append(s.buf, raw...)
		if len(s.buf) > ctxLen {
			s.buf = s.buf[:copy(s.buf, s.buf[len(s.buf)-ctxLen:])]
		}
	}
	s.p0 = len(s.buf)
}
