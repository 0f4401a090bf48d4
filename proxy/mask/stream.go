package mask

import "strings"

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
}

// NewStream starts masking a new text.
func (m *Masker) NewStream() *Stream {
	return &Stream{m: m, counts: Counts{}}
}

// Write adds the next piece of text and returns the masked text that is safe
// to release now (possibly empty).
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
				s.held, s.swSt = t[n:], st
				return b.String()
			}
			s.sw, s.held = false, ""
			text = t[n:]
		}
		s.buf = append(s.buf, text...)
		w := string(s.buf)
		r := s.m.run(w, s.p0, final)
		if len(r.sel) == 0 && b.Len() == 0 {
			// Nothing found: release a slice of w, no copy.
			p0 := s.p0
			s.setBuf(w, r.rel, len(w))
			return w[p0:r.rel]
		}
		s.m.emit(&b, w, s.p0, r, s.counts)
		if !r.open {
			s.setBuf(w, r.rel, len(w))
			return b.String()
		}
		c := r.sel[len(r.sel)-1]
		s.sw, s.swKind, s.swSt = true, c.kind, c.st
		s.setBuf(w, r.rel, r.rel)
		text = w[r.rel:]
	}
}

// setBuf keeps w[rel:end] as held-back text after up to ctxLen bytes of
// released context.
func (s *Stream) setBuf(w string, rel, end int) {
	from := max(0, rel-ctxLen)
	s.buf = append(s.buf[:0], w[from:end]...)
	s.p0 = rel - from
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
