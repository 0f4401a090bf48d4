// Package scrub removes vaulted provider keys from bytes on their way out of
// the proxy: response bodies of every content type, streamed or buffered,
// response headers and audit fields.
//
// A key is found whatever its shape (OpenAI, Azure, any opaque string of at
// least MinKeyLen bytes) and however JSON or a URL spells it: each byte of
// the key may appear literally, as a JSON escape (\u0073 in either hex
// case, \/ for '/', \" \\ \b \f \n \r \t for the bytes they stand for) or
// percent-encoded (%73 or %6b, either hex case), mixed freely; and one
// level deeper, as JSON text inside a JSON string spells it (a tool call's
// arguments, which the agent decodes twice): an escape whose backslash is
// itself escaped (\\u0073, \u005cu0073, \\/), the rest literal. The key's
// base64 spellings are found too: for each of the three alignments the key
// may have inside a longer base64 text, the characters that depend on the
// key's bytes alone, in the standard and the URL-safe alphabet (each byte
// of those may in turn be escaped). Each match is replaced by Marker, which
// is valid inside a JSON string; a match never starts on the second byte
// of a JSON escape pair (scan), so JSON string content stays valid. ContainsFold compares case-insensitively,
// for header names (which Go canonicalises) and values.
//
// A Stream scrubs text that arrives in pieces: it holds back only the bytes
// of a pending partial match, so at most 11× the longest pattern (a key,
// or its base64 spelling of 4/3 its length): no spelling of one byte is
// longer than \u005cu00HH. So a stream in
// which nothing matches is released as it comes, and a key split over two
// reads is still caught. The output of a Stream for any split of its input
// equals Set.Bytes of the whole input.
//
// The package is pure and knows nothing about HTTP or JSON payload shapes.
package scrub

import (
	"encoding/base64"
	"slices"
	"sort"
	"strings"
)

// Marker replaces every key found.
const Marker = "[redacted]"

// MinKeyLen is the shortest key scrubbed: a shorter "key" would match
// ordinary text. Provider keys are far longer.
const MinKeyLen = 8

// Set is a compiled set of keys. It is immutable and safe for concurrent
// use; a nil or empty Set scrubs nothing.
type Set struct {
	keys  [][]byte // the keys as given, longest first
	pats  [][]byte // what is matched: the keys and their base64 spellings, longest first
	first [256][]uint16
	start [256]bool
	pair  [256][4]uint64 // pair[a] has bit b: a pattern may start with a then b
	fold  *Set           // the keys lowercased, without base64 spellings
}

// New compiles keys, ignoring duplicates and keys shorter than MinKeyLen.
func New(keys ...string) *Set { return compile(keys, true) }

func compile(keys []string, spellings bool) *Set {
	s := &Set{}
	seen := map[string]bool{}
	for _, k := range keys {
		if len(k) < MinKeyLen || seen[k] {
			continue
		}
		seen[k] = true
		s.keys = append(s.keys, []byte(k))
	}
	if len(s.keys) == 0 {
		return nil
	}
	sort.SliceStable(s.keys, func(i, j int) bool { return len(s.keys[i]) > len(s.keys[j]) })
	pseen := map[string]bool{}
	add := func(p []byte) {
		if len(p) >= MinKeyLen && !pseen[string(p)] {
			pseen[string(p)] = true
			s.pats = append(s.pats, p)
		}
	}
	for _, k := range s.keys {
		add(k)
	}
	if spellings {
		for _, k := range s.keys {
			for _, p := range base64Spellings(k) {
				add(p)
			}
		}
	}
	sort.SliceStable(s.pats, func(i, j int) bool { return len(s.pats[i]) > len(s.pats[j]) })
	s.start['\\'], s.start['%'] = true, true
	for _, c := range []byte{'\\', '%'} {
		s.pair[c] = [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	}
	for i, p := range s.pats {
		s.start[p[0]] = true
		for _, c := range []byte{p[1], '\\', '%'} {
			s.pair[p[0]][c>>6] |= 1 << (c & 63)
		}
		s.first[p[0]] = append(s.first[p[0]], uint16(i))
	}
	all := make([]uint16, len(s.pats))
	for i := range all {
		all[i] = uint16(i)
	}
	// Any byte of a pattern may be escaped: at '\\' or '%' every pattern
	// may start.
	s.first['\\'], s.first['%'] = all, all
	if spellings {
		lower := make([]string, len(s.keys))
		for i, k := range s.keys {
			lower[i] = strings.ToLower(string(k))
		}
		s.fold = compile(lower, false)
	}
	return s
}

// base64Spellings returns, for each alignment of k inside a longer base64
// text (0, 1 or 2 bytes before it in its 3-byte group), the base64
// characters that encode k's bytes alone, in both alphabets.
func base64Spellings(k []byte) [][]byte {
	var out [][]byte
	for off := 0; off < 3; off++ {
		// off bytes of k complete the group the text before k began.
		from := (3 - off) % 3
		if from >= len(k) {
			continue
		}
		whole := k[from:]
		whole = whole[:len(whole)/3*3]
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			out = append(out, []byte(enc.EncodeToString(whole)))
		}
	}
	return out
}

// With returns a Set of s's keys and more (s itself when more adds none).
func (s *Set) With(more ...string) *Set {
	if s == nil {
		return New(more...)
	}
	add := false
	for _, k := range more {
		if len(k) >= MinKeyLen && !slices.ContainsFunc(s.keys, func(b []byte) bool { return string(b) == k }) {
			add = true
		}
	}
	if !add {
		return s
	}
	all := make([]string, 0, len(s.keys)+len(more))
	for _, k := range s.keys {
		all = append(all, string(k))
	}
	return New(append(all, more...)...)
}

// Empty reports whether s scrubs nothing.
func (s *Set) Empty() bool { return s == nil || len(s.keys) == 0 }

// text is what the scanner reads.
type text interface{ ~string | ~[]byte }

// result of matching one key at one position.
const (
	noMatch = iota
	partial // the input ended inside a possible match
	full
)

// escapes are the JSON short escapes, by the byte they stand for.
var escapes = [256]byte{'"': '"', '\\': '\\', '/': '/', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't'}

func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// matchKey matches key against b from its start. It returns full and the
// match's length, partial when b ends before a decision, or noMatch.
func matchKey[T text](key []byte, b T) (int, int) {
	j := 0
	for _, want := range key {
		if j >= len(b) {
			return partial, 0
		}
		c := b[j]
		if c == want {
			j++
			continue
		}
		if c == '%' {
			// Percent-encoded: %HH, either hex case.
			if j+1 >= len(b) {
				return partial, 0
			}
			hi := hexVal(b[j+1])
			if hi < 0 || hi != int(want>>4) {
				return noMatch, 0
			}
			if j+2 >= len(b) {
				return partial, 0
			}
			if lo := hexVal(b[j+2]); lo < 0 || lo != int(want&0xf) {
				return noMatch, 0
			}
			j += 3
			continue
		}
		if c != '\\' {
			return noMatch, 0
		}
		// An escape: \X or \u00HH.
		if j+1 >= len(b) {
			return partial, 0
		}
		e := b[j+1]
		// A second-level escape, as JSON text inside a JSON string (a
		// tool call's arguments) spells it: its backslash escaped once
		// (\\ or \u005c), the rest literal (\\u0073, \u005cu0073,
		// \\/).
		if bs := escapedBackslash(b[j:]); bs != noMatch && want != '\\' {
			if bs == partial {
				return partial, 0
			}
			n := 2
			if e == 'u' {
				n = 6
			}
			st, l := matchEscape(want, b[j+n:])
			if st != full {
				return st, 0
			}
			j += n + l
			continue
		}
		if e == 'u' {
			if want >= 0x80 {
				return noMatch, 0 // a \u escape spells a rune, never one byte of UTF-8
			}
			v := 0
			for h := 0; h < 4; h++ {
				if j+2+h >= len(b) {
					// Undecided unless a digit read so far already differs.
					if v<<(4*(4-h)) > int(want) || (v<<(4*(4-h)))+(1<<(4*(4-h)))-1 < int(want) {
						return noMatch, 0
					}
					return partial, 0
				}
				d := hexVal(b[j+2+h])
				if d < 0 {
					return noMatch, 0
				}
				v = v<<4 | d
			}
			if v != int(want) {
				return noMatch, 0
			}
			j += 6
			continue
		}
		if escapes[want] == 0 || escapes[want] != e {
			return noMatch, 0
		}
		j += 2
	}
	return full, j
}

// escapedBackslash reports whether b starts with a backslash written as a
// JSON escape (\\ or \u005c in either hex case): full, partial when b
// ends before that is decided, or noMatch.
func escapedBackslash[T text](b T) int {
	switch {
	case len(b) == 0 || b[0] != '\\':
		return noMatch
	case len(b) == 1:
		return partial
	}
	if b[1] == '\\' {
		return full
	}
	if b[1] != 'u' {
		return noMatch
	}
	for i, want := range []byte("005c") {
		if 2+i >= len(b) {
			return partial
		}
		if c := b[2+i]; c != want && !(want == 'c' && c == 'C') {
			return noMatch
		}
	}
	return full
}

// matchEscape matches the byte want as the literal rest of an escape whose
// backslash came before b: u00HH (either hex case), or the short escape
// letter of want (/ for '/'). It returns full and the length, partial when
// b ends before a decision, or noMatch.
func matchEscape[T text](want byte, b T) (int, int) {
	if len(b) == 0 {
		return partial, 0
	}
	if b[0] != 'u' {
		if escapes[want] != 0 && b[0] == escapes[want] && want != '"' && want != '\\' {
			return full, 1
		}
		return noMatch, 0
	}
	if want >= 0x80 {
		return noMatch, 0
	}
	v := 0
	for h := 0; h < 4; h++ {
		if 1+h >= len(b) {
			if v<<(4*(4-h)) > int(want) || (v<<(4*(4-h)))+(1<<(4*(4-h)))-1 < int(want) {
				return noMatch, 0
			}
			return partial, 0
		}
		d := hexVal(b[1+h])
		if d < 0 {
			return noMatch, 0
		}
		v = v<<4 | d
	}
	if v != int(want) {
		return noMatch, 0
	}
	return full, 5
}

// mayStart reports whether a match may start at b[i]: its byte and the
// next (when there is one) begin a pattern, maybe escaped.
func mayStart[T text](s *Set, b T, i int) bool {
	c := b[i]
	if !s.start[c] {
		return false
	}
	if i+1 >= len(b) {
		return true
	}
	d := b[i+1]
	return s.pair[c][d>>6]&(1<<(d&63)) != 0
}

// scan scrubs b[:] appending the output to dst. Unless final, it stops
// where a match is still undecided and returns that offset (bytes from it
// on are held back); final decides undecided matches as no match.
//
// A match never splits an escape pair: after an odd run of backslashes
// the byte at i is the second half of an escape (\\, \u…, \n), so a
// backslash there starts no spelling (the escape it belongs to is tried
// where it starts, and what follows it after it), and a match of any
// other byte there takes the escape's backslash with it. Replaced so,
// text that was valid JSON string content stays so ("\\[redacted]", never
// "\[redacted]"). The parity is counted from b's start, or a match's end:
// b starts where the text does or where a scan stopped, and a scan stops
// only where an escape may start (never inside a pair: a trailing
// backslash at an even position is undecided, so a stream never releases
// half a pair), which keeps a Stream's output for any split equal to
// Bytes of the whole.
func scan[T text](s *Set, dst []byte, b T, final bool) ([]byte, int) {
	last := 0
	run := 0 // backslashes right before b[i] since last
	for i := 0; i < len(b); {
		if !mayStart(s, b, i) {
			// Skip to the next byte that can start a match (a
			// backslash always can, so none is skipped).
			k := i + 1
			for k < len(b) && !mayStart(s, b, k) {
				k++
			}
			i, run = k, 0
			continue
		}
		from := i // where a match at i starts
		if run%2 == 1 {
			if b[i] == '\\' {
				run++
				i++
				continue
			}
			from = i - 1
		}
		decided := true
		n := 0
		for _, k := range s.first[b[i]] {
			st, l := matchKey(s.pats[k], b[i:])
			if st == full {
				n = l
				break
			}
			if st == partial && !final {
				decided = false
				break
			}
		}
		if !decided {
			return append(dst, b[last:from]...), from
		}
		if n > 0 {
			dst = append(dst, b[last:from]...)
			dst = append(dst, Marker...)
			i += n
			last, run = i, 0
			continue
		}
		if b[i] == '\\' {
			run++
		} else {
			run = 0
		}
		i++
	}
	return append(dst, b[last:]...), len(b)
}

// Bytes returns b with every key replaced; b itself when none is found.
func (s *Set) Bytes(b []byte) []byte {
	if !find(s, b) {
		return b
	}
	out, _ := scan(s, make([]byte, 0, len(b)), b, true)
	return out
}

// String is Bytes for a string.
func (s *Set) String(t string) string {
	if !find(s, t) {
		return t
	}
	out, _ := scan(s, make([]byte, 0, len(t)), t, true)
	return string(out)
}

// Contains reports whether b holds a key in any spelling.
func (s *Set) Contains(b []byte) bool { return find(s, b) }

// ContainsString is Contains for a string.
func (s *Set) ContainsString(t string) bool { return find(s, t) }

// ContainsFold reports whether t holds a key in any spelling, compared
// case-insensitively (ASCII). It is meant for header names, which Go
// canonicalises (X-Abcdef for x-aBCdef), and header values.
func (s *Set) ContainsFold(t string) bool {
	if s.Empty() || len(t) < MinKeyLen {
		return false
	}
	if find(s, t) {
		return true
	}
	var buf [256]byte // most header names and values: no allocation
	low := buf[:0]
	if len(t) > len(buf) {
		low = make([]byte, 0, len(t))
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low = append(low, c)
	}
	return find(s.fold, low)
}

// find reports whether t holds a key, without allocating.
func find[T text](s *Set, t T) bool {
	if s.Empty() || len(t) < MinKeyLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !mayStart(s, t, i) {
			continue
		}
		for _, k := range s.first[t[i]] {
			if st, _ := matchKey(s.pats[k], t[i:]); st == full {
				return true
			}
		}
	}
	return false
}

// Stream scrubs a byte stream that arrives in pieces. It is not safe for
// concurrent use.
type Stream struct {
	set  *Set
	held []byte
}

// NewStream starts scrubbing a new stream; a nil Set gives a Stream that
// passes everything through.
func (s *Set) NewStream() *Stream { return &Stream{set: s} }

// Write appends to dst what of p (after what is held) is safe to release.
func (st *Stream) Write(dst, p []byte) []byte {
	if st.set.Empty() {
		return append(dst, p...)
	}
	b := p
	if len(st.held) > 0 {
		b = append(st.held, p...)
	}
	dst, off := scan(st.set, dst, b, false)
	st.held = append(st.held[:0], b[off:]...)
	return dst
}

// WriteLent is Write that returns p itself, not a copy in dst, when all
// of it is released as it is (nothing held before it, no key in it, no
// match undecided at its end): a relay that writes the result before it
// changes p copies none of a clean stream.
func (st *Stream) WriteLent(dst, p []byte) []byte {
	if len(st.held) == 0 && (st.set.Empty() || untouched(st.set, p)) {
		return p
	}
	return st.Write(dst, p)
}

// untouched reports whether scan would release b whole, unchanged: no key
// in it, and none that may still start before its end.
func untouched(s *Set, b []byte) bool {
	for i := 0; i < len(b); i++ {
		if !mayStart(s, b, i) {
			continue
		}
		for _, k := range s.first[b[i]] {
			if st, _ := matchKey(s.pats[k], b[i:]); st != noMatch {
				return false
			}
		}
	}
	return true
}

// Flush appends the held-back rest to dst and ends the stream.
func (st *Stream) Flush(dst []byte) []byte {
	if len(st.held) == 0 {
		return dst
	}
	dst, _ = scan(st.set, dst, st.held, true)
	st.held = st.held[:0]
	return dst
}

// Pending is the number of bytes held back.
func (st *Stream) Pending() int { return len(st.held) }
