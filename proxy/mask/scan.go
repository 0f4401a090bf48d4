package mask

import (
	"slices"
	"sync"
	"unicode/utf8"
)

var scanPool = sync.Pool{New: func() any { return new(scanner) }}

// Byte classes.
const (
	cDigit  = 1 << iota
	cUpper  // A-Z
	cLower  // a-z
	cHex    // 0-9 a-f A-F
	cLocal  // characters of an email local part: alnum . _ % + -
	cDomain // alnum -
	cB64URL // alnum _ -
	cV6     // hex : .
	cWord   // alnum _
)

const cAlpha = cUpper | cLower
const cAlnum = cAlpha | cDigit

var cls = func() (t [256]uint16) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= cDigit | cHex
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= cUpper
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cLower
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] |= cHex
		t[c-'a'+'A'] |= cHex
	}
	for c := 0; c < 256; c++ {
		if t[c]&cAlnum != 0 {
			t[c] |= cLocal | cDomain | cB64URL | cWord
		}
		if t[c]&cHex != 0 {
			t[c] |= cV6
		}
	}
	for _, c := range "._%+-" {
		t[c] |= cLocal
	}
	t['-'] |= cDomain | cB64URL
	t['_'] |= cB64URL | cWord
	t[':'] |= cV6
	t['.'] |= cV6
	return t
}()

func is(b byte, c uint16) bool { return cls[b]&c != 0 }
func isDigit(b byte) bool      { return '0' <= b && b <= '9' }

// Bounds that make every decision local. ctxLen must exceed each back-reach
// (maxLocal+1, maxV6+1) so that a run cut by the start of a stream window is
// still seen as too long.
const (
	maxLocal     = 64  // email local part
	maxDomain    = 253 // email domain
	maxV6        = 45  // textual IPv6 address
	maxJWTHeader = 1024
	ctxLen       = 128
)

// Candidate states returned by detectors.
type status uint8

const (
	stNone  status = iota // no match here
	stNeed                // undecided: depends on bytes past the window
	stMatch               // match [start, end)
)

type cand struct {
	start, end int
	kind       int
	open       bool // stream only: match continues past the window
	st         int  // extender state of an open match
}

// scanner finds candidates in w[p0:] (w[:p0] is already released context).
type scanner struct {
	m     *Masker
	w     string
	p0    int
	final bool // w ends the text: no more bytes will come
	cands []cand
	cut   int // no decision is final at or after cut
	v6end int // colons before v6end belong to an already-judged run
	tok   numTok
}

func (sc *scanner) add(s, e, kind int) {
	if s >= sc.p0 {
		sc.cands = append(sc.cands, cand{start: s, end: e, kind: kind})
	}
}

func (sc *scanner) need(s int) {
	if s >= sc.p0 && s < sc.cut {
		sc.cut = s
	}
}

// open records a confirmed open-ended match that starts at s and whose
// prefix ends at e; it runs the extender over the rest of the window.
func (sc *scanner) open(s, e, kind, st int) {
	if s < sc.p0 {
		return
	}
	n, st2, done := extend(kind, st, sc.w[e:], sc.final)
	if done {
		sc.cands = append(sc.cands, cand{start: s, end: e + n, kind: kind})
		return
	}
	sc.cands = append(sc.cands, cand{start: s, end: e + n, kind: kind, open: true, st: st2})
}

func (sc *scanner) scan() {
	w := sc.w
	tr := &sc.m.trig
	on := &sc.m.on
	for i := sc.p0; i < len(w); i++ {
		// Skip eight bytes per branch while none can anchor a detector.
		for i+8 <= len(w) {
			b := w[i : i+8]
			if tr[b[0]]|tr[b[1]]|tr[b[2]]|tr[b[3]]|tr[b[4]]|tr[b[5]]|tr[b[6]]|tr[b[7]] != 0 {
				break
			}
			i += 8
		}
		if i >= len(w) {
			break
		}
		t := tr[w[i]]
		if t == 0 {
			continue
		}
		switch t {
		case tAt:
			sc.email(i)
		case tDigit:
			sc.digit(i)
		case tPlus, tParen:
			if i == 0 || !is(w[i-1], cAlnum) {
				sc.number(i)
			}
		case tColon:
			if i >= sc.v6end {
				sc.ipv6(i)
			}
		case tDash:
			if on[kPEM] && (i+1 == len(w) || w[i+1] == '-') {
				sc.pem(i)
			}
			if on[kOpenAI] && i >= 2 && w[i-2] == 's' && w[i-1] == 'k' && tokenStart(w, i-2) {
				sc.openai(i - 2)
			}
		case tUpperA:
			// Fast reject: "AKIA"-style ids and "AIza" keys continue with
			// an upper-case letter; prose ("As", "And", "A ") does not.
			if i+1 < len(w) && !is(w[i+1], cUpper) {
				continue
			}
			if i == 0 || !is(w[i-1], cB64URL) {
				if on[kAWS] {
					sc.aws(i)
				}
				if on[kGoogle] {
					sc.google(i)
				}
			}
		case tJ:
			if i >= 2 && w[i-2] == 'e' && w[i-1] == 'y' && tokenStart(w, i-2) {
				sc.jwt(i - 2)
			}
		case tUnderscore:
			sc.github(i)
		case tX:
			if tokenStart(w, i) {
				sc.slack(i)
			}
		}
	}
}

// tokenStart reports whether a secret token may start at w[s]: the byte
// before it is not an email-local character or '_'. (Tokens anchored after
// their start rely on this: the stream's hold-back of a trailing local run
// then covers their prefix.)
func tokenStart(w string, s int) bool {
	return s == 0 || !(is(w[s-1], cLocal) || w[s-1] == '_')
}

// holdStart returns the earliest position in w[p0:] at which a detector
// anchored on a byte still to come could start: the trailing run of
// email-local characters (EMAIL, and the prefixes "sk", "gh?", "github",
// "ey" and IBAN country codes, whose anchors come later) and the trailing run
// of IPv6 characters.
func (m *Masker) holdStart(w string, p0 int) int {
	h := len(w)
	if m.localHold {
		i := len(w)
		for i > 0 && is(w[i-1], cLocal) && len(w)-i <= maxLocal {
			i--
		}
		if len(w)-i <= maxLocal {
			h = min(h, max(i, p0))
		}
	}
	if m.on[kIP] {
		i := len(w)
		for i > 0 && is(w[i-1], cV6) && len(w)-i <= maxV6 {
			i--
		}
		if len(w)-i <= maxV6 {
			h = min(h, max(i, p0))
		}
	}
	return h
}

type runResult struct {
	sel  []cand // selected matches, in order; only the last may be open
	rel  int    // w[:rel] is decided
	open bool   // the last selected match is open
}

// run finds and selects matches in w[p0:]. When final is false, only
// decisions that no later byte can change are returned: rel is the release
// point and w[rel:] must be presented again with more text.
//
// Selection is leftmost-first: among candidates starting at the same byte an
// open-ended detector wins, then the longer match, then the lower kind.
func (m *Masker) run(w string, p0 int, final bool) runResult {
	sc := scanPool.Get().(*scanner)
	defer scanPool.Put(sc)
	return m.runWith(sc, w, p0, final)
}

// runWith is run with the caller's scanner (a Stream keeps its own).
func (m *Masker) runWith(sc *scanner, w string, p0 int, final bool) runResult {
	sc.m, sc.w, sc.p0, sc.final, sc.cut, sc.cands, sc.v6end = m, w, p0, final, len(w), sc.cands[:0], 0
	sc.tok = numTok{}
	sc.scan()
	if !final {
		sc.cut = min(sc.cut, m.holdStart(w, p0))
	}
	cands := sc.cands
	if len(cands) > 1 {
		slices.SortFunc(cands, func(a, b cand) int {
			if a.start != b.start {
				return a.start - b.start
			}
			if oa, ob := openEnded(a.kind), openEnded(b.kind); oa != ob {
				if oa {
					return -1
				}
				return 1
			}
			if a.end != b.end {
				return b.end - a.end
			}
			return a.kind - b.kind
		})
	}
	r := m.selectCands(sc, w, p0, final)
	if len(sc.cands) > 1024 {
		sc.cands = nil // do not pin large buffers in the pool
	}
	sc.w = ""
	return r
}

// selectCands picks the matches of run from sc's candidates.
func (m *Masker) selectCands(sc *scanner, w string, p0 int, final bool) runResult {
	cands := sc.cands
	var cs []customState
	if len(m.custom) > 0 {
		cs = make([]customState, len(m.custom))
	}
	var r runResult
	last := p0
	ci := 0
	cut := sc.cut
	for {
		for ci < len(cands) && cands[ci].start < last {
			ci++
		}
		var best cand
		found := false
		if ci < len(cands) {
			best, found = cands[ci], true
		}
		cut = sc.cut
		for k := range cs {
			c, ok, c2 := cs[k].next(m.custom[k].re, w, last, final)
			cut = min(cut, c2)
			if !ok {
				continue
			}
			c.kind = numBuiltin + k
			if !found || c.start < best.start ||
				(c.start == best.start && !openEnded(best.kind) && c.end > best.end) {
				best, found = c, true
			}
		}
		if !found || (!final && best.start >= cut) {
			break
		}
		r.sel = append(r.sel, best)
		if best.open {
			r.open = true
			r.rel = best.end
			return r
		}
		last = best.end
	}
	r.rel = last
	if final {
		r.rel = len(w)
	} else if cut > r.rel {
		r.rel = runeCut(w, last, cut)
	}
	return r
}

// runeCut moves a release point cut (> last) back to a rune start: never
// split a UTF-8 sequence the input did not split, callers re-encode
// released text as JSON strings. Holding back more is always safe.
func runeCut(w string, last, cut int) int {
	for i := 1; i < utf8.UTFMax && cut > last && cut < len(w) && !utf8.RuneStart(w[cut]); i++ {
		cut--
	}
	return cut
}

// quickRelease is run for a stream window in which no detector can
// anchor: without custom detectors, when no byte of w[p0:] is a trigger,
// scanning finds nothing and only the hold-back of a trailing run decides
// the release point. ok is false when run must decide.
func (m *Masker) quickRelease(w string, p0 int) (rel int, ok bool) {
	if len(m.custom) > 0 {
		return 0, false
	}
	tr := &m.trig
	for i := p0; i < len(w); i++ {
		if tr[w[i]] != 0 {
			return 0, false
		}
	}
	if cut := m.holdStart(w, p0); cut > p0 {
		return runeCut(w, p0, cut), true
	}
	return p0, true
}

// customState caches the next match of one custom detector in a window.
type customState struct {
	from    int // searched from here
	a, b    int
	have    bool // searched at least once
	none    bool // no match at or after from
	decided bool
}

// next returns the leftmost match starting at or after q, whether it is
// decided, and the position from which this detector's decisions are not
// final (len(w) when everything is decided).
func (s *customState) next(re interface {
	FindStringIndex(string) []int
}, w string, q int, final bool) (cand, bool, int) {
	if !(s.have && s.from <= q && (s.none || s.a >= q)) {
		s.have, s.from = true, q
		s.none = true
		for p := q; p <= len(w); {
			lo := max(p-1, 0)
			loc := re.FindStringIndex(w[lo:])
			if loc != nil && lo+loc[0] < p {
				lo = p
				loc = re.FindStringIndex(w[p:])
			}
			if loc == nil {
				break
			}
			a, b := lo+loc[0], lo+loc[1]
			if a == b { // empty match: look further
				p = a + 1
				continue
			}
			s.a, s.b, s.none = a, b, false
			break
		}
		s.decided = final || (!s.none && s.a+MaxCustomMatch < len(w))
	}
	if s.decided {
		if s.none {
			return cand{}, false, len(w)
		}
		return cand{start: s.a, end: s.b}, true, len(w)
	}
	return cand{}, false, max(q, len(w)-MaxCustomMatch)
}
