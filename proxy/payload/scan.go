package payload

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/pamctl/pamctl/broker/audit/jsonstr"
)

// A strict JSON scanner for the hot path. Decoding a body or a stream chunk
// into map[string]any (and encoding it back) is most of what the proxy
// costs per call, yet an ordinary chat request, answer or chunk needs only a
// few strings out of it. The scanners below walk the JSON text without
// building values, pick out those strings, and report ok only for inputs
// whose meaning they fully know; anything else (duplicate or escaped keys,
// tool calls, logprobs, an unusual type, deep nesting, invalid UTF-8, a
// syntax error) sends the caller down the generic map path, which stays the
// reference for every result.

// fastPaths turns the fast paths on; tests turn it off to compare them
// with the generic path.
var fastPaths = true

// maxScanDepth bounds nesting; deeper values take the generic path.
const maxScanDepth = 64

// jscan scans one JSON text. It accepts exactly RFC 8259's grammar, as
// encoding/json does (invalid UTF-8 is refused by the callers up front).
type jscan struct {
	s     string
	i     int
	depth int
}

func (p *jscan) ws() { p.i = skipWS(p.s, p.i) }

// peek returns the next byte, or 0 at the end.
func (p *jscan) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// end reports whether only whitespace is left.
func (p *jscan) end() bool {
	p.ws()
	return p.i == len(p.s)
}

// str scans a string token and returns it as written (with its quotes) and
// whether it holds escapes.
func (p *jscan) str() (raw string, esc, ok bool) {
	start := p.i
	if p.peek() != '"' {
		return "", false, false
	}
	p.i++
	for p.i < len(p.s) {
		p.i = plainRun(p.s, p.i)
		if p.i == len(p.s) {
			break
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return p.s[start:p.i], esc, true
		case c == '\\':
			esc = true
			if p.i+1 >= len(p.s) {
				return "", false, false
			}
			switch p.s[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.s) {
					return "", false, false
				}
				for k := p.i + 2; k < p.i+6; k++ {
					if !isHex(p.s[k]) {
						return "", false, false
					}
				}
				p.i += 6
			default:
				return "", false, false
			}
		case c < 0x20:
			return "", false, false
		default:
			p.i++
		}
	}
	return "", false, false
}

// plainRun returns the offset of the first byte at or after i that a JSON
// string's scan must look at (a quote, a backslash or a control byte), or
// len(s): eight bytes at a time, then byte by byte.
func plainRun(s string, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
		q := x ^ ('"' * ones)  // a zero byte where x holds a quote
		b := x ^ ('\\' * ones) // where it holds a backslash
		// A byte's high bit is set for a zero byte of q or b, or a byte
		// of x under 0x20 (bytes of 0x80 and over never count: ^x clears
		// them). Borrows may set bits above the lowest such byte, never
		// below it, so the lowest set bit is the first byte to look at.
		if m := ((q-ones)&^q | (b-ones)&^b | (x - 0x20*ones)) &^ x & highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number scans a number token; integer reports that it has no fraction or
// exponent.
func (p *jscan) number() (tok string, integer, ok bool) {
	end, integer, ok := scanNumber(p.s, p.i)
	if !ok {
		return "", false, false
	}
	tok, p.i = p.s[p.i:end], end
	return tok, integer, true
}

// literal scans true, false or null.
func (p *jscan) literal(lit string) bool {
	if len(p.s)-p.i < len(lit) || p.s[p.i:p.i+len(lit)] != lit {
		return false
	}
	p.i += len(lit)
	return true
}

// null scans a null if one comes next.
func (p *jscan) null() bool {
	return p.peek() == 'n' && p.literal("null")
}

// scalar scans a value that is neither an object nor an array. The
// members the fast paths pass as written without masking (ids, enums,
// roles) must be scalars: the generic path leaves only their strings
// alone (exempt) and masks an object or array under their names.
func (p *jscan) scalar() bool {
	if c := p.peek(); c == '{' || c == '[' {
		return false
	}
	return p.value()
}

// noStrings scans a value that holds no string but the API's member names
// (apiNames): a number, a literal, or objects and arrays of them (a
// usage's token details). The generic path would mask a string there, and
// any other member name.
func (p *jscan) noStrings() bool {
	switch p.peek() {
	case '"':
		return false
	case '{':
		return p.object(func(key string) bool { return apiNames[key] && p.noStrings() })
	case '[':
		return p.array(func() bool { return p.noStrings() })
	}
	return p.value()
}

// value skips any value.
func (p *jscan) value() bool {
	switch c := p.peek(); {
	case c == '{':
		return p.object(func(string) bool { return p.value() })
	case c == '[':
		return p.array(func() bool { return p.value() })
	case c == '"':
		_, _, ok := p.str()
		return ok
	case c == '-' || isDigit(c):
		_, _, ok := p.number()
		return ok
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	}
	return false
}

// object scans an object, calling member for each key with the scanner at
// the start of its value; member must scan the value. Keys that hold
// escapes or repeat an earlier key fail the scan: encoding/json unescapes
// keys and keeps the last of duplicates, which the callers do not model.
func (p *jscan) object(member func(key string) bool) bool {
	if p.peek() != '{' {
		return false
	}
	if p.depth++; p.depth > maxScanDepth {
		return false
	}
	defer func() { p.depth-- }()
	p.i++
	p.ws()
	if p.peek() == '}' {
		p.i++
		return true
	}
	var seen [16]string
	n := 0
	for {
		p.ws()
		raw, esc, ok := p.str()
		if !ok || esc {
			return false
		}
		key := raw[1 : len(raw)-1]
		for _, k := range seen[:min(n, len(seen))] {
			if k == key {
				return false
			}
		}
		if n >= len(seen) {
			return false // more keys than the fast path tracks
		}
		seen[n] = key
		n++
		p.ws()
		if p.peek() != ':' {
			return false
		}
		p.i++
		p.ws()
		if !member(key) {
			return false
		}
		p.ws()
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// array scans an array, calling elem with the scanner at each element;
// elem must scan it.
func (p *jscan) array(elem func() bool) bool {
	if p.peek() != '[' {
		return false
	}
	if p.depth++; p.depth > maxScanDepth {
		return false
	}
	defer func() { p.depth-- }()
	p.i++
	p.ws()
	if p.peek() == ']' {
		p.i++
		return true
	}
	for {
		p.ws()
		if !elem() {
			return false
		}
		p.ws()
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return true
		default:
			return false
		}
	}
}

// text is a string field the fast path found.
type text struct {
	raw string // as written, with quotes
	off int    // offset of raw in the scanned text
	val string // decoded
}

// strValue scans a string and decodes it as encoding/json does.
func (p *jscan) strValue() (text, bool) {
	off := p.i
	raw, esc, ok := p.str()
	if !ok {
		return text{}, false
	}
	t := text{raw: raw, off: off, val: raw[1 : len(raw)-1]}
	if esc {
		if t.val, ok = unescape(t.val); !ok {
			// \u escapes: encoding/json's rules for surrogates apply.
			// (Its own variable: t would move to the heap on every call.)
			var u string
			if json.Unmarshal([]byte(raw), &u) != nil {
				return text{}, false
			}
			t.val = u
		}
	}
	return t, true
}

// unescape decodes the inside of a scanned string token (valid escapes,
// valid UTF-8) unless it holds a \u escape.
func unescape(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		switch c = s[i]; c {
		case '"', '\\', '/':
			b = append(b, c)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		default:
			return "", false
		}
	}
	return string(b), true
}

// strOrSkip decodes a string value, or skips any other value (ok, found
// false), as the generic path ignores fields of the wrong type.
func (p *jscan) strOrSkip() (t text, found, ok bool) {
	if p.peek() == '"' {
		t, ok = p.strValue()
		return t, ok, ok
	}
	return text{}, false, p.value()
}

// intValue scans a number and parses it as intOf does; found is false for
// non-numbers and numbers intOf rejects, which the generic path ignores.
func (p *jscan) intValue() (n int, found, ok bool) {
	c := p.peek()
	if c != '-' && !isDigit(c) {
		return 0, false, p.value()
	}
	tok, _, ok := p.number()
	if !ok {
		return 0, false, false
	}
	i, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		return 0, false, true
	}
	return int(i), true, true
}

// usageValue scans a "usage" value as parseUsage reads it: an object's
// token counts, or nothing for null and other types. A string anywhere in
// it fails the scan: the generic path masks it.
func (p *jscan) usageValue() (Usage, bool, bool) {
	if p.peek() != '{' {
		return Usage{}, false, p.noStrings()
	}
	var v [5]int
	var has [5]bool
	names := [5]string{"prompt_tokens", "input_tokens", "completion_tokens", "output_tokens", "total_tokens"}
	ok := p.object(func(key string) bool {
		for k, name := range names {
			if key == name {
				if c := p.peek(); c == '"' || c == '{' || c == '[' {
					return false
				}
				n, found, ok := p.intValue()
				v[k], has[k] = n, found
				return ok
			}
		}
		return apiNames[key] && p.noStrings()
	})
	if !ok {
		return Usage{}, false, false
	}
	pick := func(a, b int) int64 {
		switch {
		case has[a]:
			return int64(v[a])
		case b >= 0 && has[b]:
			return int64(v[b])
		}
		return 0
	}
	u := Usage{InputTokens: pick(0, 1), OutputTokens: pick(2, 3), TotalTokens: pick(4, -1)}
	if u.TotalTokens == 0 {
		u.TotalTokens = u.InputTokens + u.OutputTokens
	}
	return u, true, true
}

// ---- chat messages -------------------------------------------------------

// chatMsg holds the text fields of a chat message (answer) or delta (chunk).
type chatMsg struct {
	content, refusal text
	hasC, hasR       bool
}

// message scans a chat message or delta object for content and refusal. Tool
// calls, function calls and audio, unless null, fail the scan: the generic
// path handles them.
func (p *jscan) message(m *chatMsg) bool {
	if p.peek() != '{' {
		return p.null() // anything else may hold strings: the generic path masks them
	}
	// Only the usual message is read here: any other member (reasoning
	// text, content parts, annotations that are not empty), a duplicate
	// member or content that is neither a string nor null sends the
	// message to the generic path, which masks every model-written string.
	var seen [4]bool
	return p.object(func(key string) bool {
		switch key {
		case "role":
			if seen[0] {
				return false
			}
			seen[0] = true
			return p.scalar()
		case "content":
			if seen[1] || p.peek() != '"' && p.peek() != 'n' {
				return false
			}
			seen[1] = true
			t, found, ok := p.strOrSkip()
			m.content, m.hasC = t, found
			return ok
		case "refusal":
			if seen[2] || p.peek() != '"' && p.peek() != 'n' {
				return false
			}
			seen[2] = true
			t, found, ok := p.strOrSkip()
			m.refusal, m.hasR = t, found
			return ok
		case "annotations":
			if seen[3] {
				return false
			}
			seen[3] = true
			return p.emptyArray()
		case "tool_calls", "function_call", "audio":
			return p.null()
		}
		return false
	})
}

// emptyArray scans [] (with any white space inside).
func (p *jscan) emptyArray() bool {
	if p.peek() != '[' {
		return false
	}
	n := 0
	ok := p.array(func() bool { n++; return false })
	return ok && n == 0
}

// chatChoice is one element of "choices" in an answer or chunk.
type chatChoice struct {
	isObj  bool
	index  int
	msg    chatMsg
	finish bool // finish_reason is set (not null)
}

// choice scans one element of "choices". msgKey is "message" (answers) or
// "delta" (chunks). With masking on, logprobs other than null fail the
// scan (the generic path removes them).
func (p *jscan) choice(msgKey string, masking bool, c *chatChoice) bool {
	if p.peek() != '{' {
		return p.null() // anything else may hold strings: the generic path masks them
	}
	c.isObj = true
	seenMsg := false
	return p.object(func(key string) bool {
		switch key {
		case "index":
			n, found, ok := p.intValue()
			if ok && !found {
				return false // intOf would fail: the generic path decides
			}
			c.index = n
			return ok
		case msgKey:
			if seenMsg {
				return false // a duplicate: the generic path re-encodes it
			}
			seenMsg = true
			return p.message(&c.msg)
		case "logprobs":
			if masking {
				return p.null()
			}
			return p.value()
		case "finish_reason":
			// Only a reason ends a choice: some servers send "" on
			// every chunk, and clients take "", 0 or false for none.
			at := p.i
			if !p.scalar() {
				return false
			}
			c.finish = p.s[at] == '"' && p.i-at > 2
			return true
		}
		return false // anything else: the generic path masks it
	})
}

// chatDoc is what the fast path reads from a chat answer or chunk.
type chatDoc struct {
	choices  []chatChoice
	usage    Usage
	hasUsage bool
	obf      text // the obfuscation member's string token (raw and off only), when hasObf
	hasObf   bool
	object   string // the object member's value as written, "" when absent
}

// scanChat scans a chat completion (msgKey "message") or chunk ("delta").
func scanChat(s, msgKey string, masking bool, d *chatDoc) bool {
	if !utf8.ValidString(s) {
		return false
	}
	p := &jscan{s: s}
	p.ws()
	if p.peek() != '{' {
		return false
	}
	seenChoices := false
	ok := p.object(func(key string) bool {
		switch key {
		case "choices":
			if seenChoices {
				return false // a duplicate: the generic path re-encodes it
			}
			seenChoices = true
			if p.peek() != '[' {
				return p.null() // anything else may hold strings: the generic path masks them
			}
			return p.array(func() bool {
				d.choices = append(d.choices, chatChoice{})
				return p.choice(msgKey, masking, &d.choices[len(d.choices)-1])
			})
		case "usage":
			var ok bool
			d.usage, d.hasUsage, ok = p.usageValue()
			return ok
		case "obfuscation":
			if p.peek() == '"' && !d.hasObf {
				// Noise that changes every chunk: rescanChunk takes
				// any other string in its place.
				off := p.i
				raw, _, ok := p.str()
				d.obf, d.hasObf = text{raw: raw, off: off}, ok
				return ok
			}
			return p.scalar()
		case "object":
			at := p.i
			ok := p.scalar()
			d.object = p.s[at:p.i]
			return ok
		case "id", "model", "system_fingerprint", "service_tier":
			return p.scalar() // structural: a string is left alone, an object or array masked
		case "created":
			return p.noStrings() // not structural: a string would be masked
		}
		return false // anything else: the generic path masks it
	})
	return ok && p.end()
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it with HTML escaping off.
func appendJSONString(b []byte, s string) []byte { return jsonstr.Append(b, s, false) }

// appendSplice appends s to b with each replaced text's token swapped for
// the JSON string of its new value; reps must be in ascending order of
// offset.
func appendSplice(b []byte, s string, reps []replacement) []byte {
	at := 0
	for _, r := range reps {
		b = append(b, s[at:r.t.off]...)
		if r.number {
			b = append(b, r.val...)
		} else {
			b = appendJSONString(b, r.val)
		}
		at = r.t.off + len(r.t.raw)
	}
	return append(b, s[at:]...)
}

// replacement is a text field's new value, or (number) a number's new
// numeral. Replacements are in the order of their offsets.
type replacement struct {
	t      text
	val    string
	number bool
}

// ---- chat requests ---------------------------------------------------------

// reqScan is what the fast path reads from a chat request body.
type reqScan struct {
	model  string
	stream bool
	fields []field  // every prompt text field, in walkRequest's order, "" included
	keys   []string // top-level keys
}

// scanChatRequest reads a chat completions request as ParseRequest and
// walkRequest do, for bodies without tools, functions, structured output
// schemas, tool choices, web search options, a system field, reasoning
// content, assistant audio or content parts other than text: those take
// the generic path. So does every body the generic path refuses: a key
// that differs only in letter case from one read at its position, a read
// field of a type the walk does not read. The body must have passed
// Validate.
func scanChatRequest(s string, r *reqScan) bool {
	p := &jscan{s: s}
	p.ws()
	if p.peek() != '{' {
		return false
	}
	var msgs, pred []field
	ok := p.object(func(key string) bool {
		r.keys = append(r.keys, key)
		switch key {
		case "model":
			if p.peek() != '"' {
				return false
			}
			t, ok := p.strValue()
			r.model = t.val
			return ok
		case "stream":
			switch {
			case p.peek() == 't' && p.literal("true"):
				r.stream = true
				return true
			case p.peek() == 'f' && p.literal("false"):
				return true
			}
			return p.null()
		case "messages":
			if p.peek() != '[' {
				return p.null()
			}
			return p.array(func() bool { return p.requestMessage(&msgs) })
		case "prediction":
			if p.peek() != '{' {
				return p.null()
			}
			return p.object(func(k string) bool {
				switch k {
				case "content":
					return p.contentValue(&pred)
				case "type":
					return p.strOrNull(nil)
				}
				return clash(k, predictionKeys) == "" && p.value()
			})
		case "stream_options":
			if p.peek() != '{' {
				return p.null()
			}
			return p.object(func(k string) bool { return clash(k, streamOptKeys) == "" && p.value() })
		case "tools", "functions", "response_format", "tool_choice", "web_search_options", "system":
			return p.null() // the generic path reads definitions, schemas and the rest
		}
		return clash(key, chatTopKeys) == "" && p.value()
	})
	if !ok || !p.end() {
		return false
	}
	r.fields = append(msgs, pred...)
	g := 0
	for i := range r.fields {
		if !r.fields[i].join || i == 0 {
			g++
		}
		r.fields[i].g = g
	}
	return true
}

// requestMessage appends a message's prompt fields in walkRequest's order:
// content, refusal, name, tool call names and arguments, function call
// name and arguments.
func (p *jscan) requestMessage(out *[]field) bool {
	if p.peek() != '{' {
		return false
	}
	var content, refusal, name, tools, fc []field
	ok := p.object(func(key string) bool {
		switch key {
		case "role":
			return p.strOrNull(nil)
		case "content":
			return p.contentValue(&content)
		case "refusal":
			return p.strOrNull(&refusal)
		case "name":
			return p.strOrNull(&name)
		case "tool_calls":
			if p.peek() != '[' {
				return p.null()
			}
			return p.array(func() bool {
				if p.peek() != '{' {
					return false
				}
				return p.object(func(k string) bool {
					switch k {
					case "function":
						return p.nameArgs(&tools)
					case "type":
						return p.strOrNull(nil)
					case "custom":
						return false // the generic path reads custom tool calls
					}
					return clash(k, toolCallKeys) == "" && p.value()
				})
			})
		case "function_call":
			return p.nameArgs(&fc)
		case "audio", "reasoning_content":
			return p.null() // the generic path records or reads them
		}
		return clash(key, messageKeys) == "" && p.value()
	})
	for _, part := range [][]field{content, refusal, name, tools, fc} {
		*out = append(*out, part...)
	}
	return ok
}

// nameArgs appends the name and arguments of a function call object.
func (p *jscan) nameArgs(out *[]field) bool {
	if p.peek() != '{' {
		return p.null()
	}
	var name, args []field
	ok := p.object(func(k string) bool {
		switch k {
		case "name":
			return p.strOrNull(&name)
		case "arguments":
			return p.strOrNull(&args)
		}
		return clash(k, nameArgsKeys) == "" && p.value()
	})
	*out = append(append(*out, name...), args...)
	return ok
}

// strOrNull appends a string value as a group of its own (to out unless
// nil) or scans a null; any other value fails the scan.
func (p *jscan) strOrNull(out *[]field) bool {
	if p.peek() != '"' {
		return p.null()
	}
	if out == nil {
		_, _, ok := p.str()
		return ok
	}
	t, ok := p.strValue()
	if ok {
		*out = append(*out, field{s: t.val})
	}
	return ok
}

// contentValue appends a content field: a string, or the text and refusal
// of each text part, as one group. A part of another type (an image, a
// file, audio) fails the scan: the generic path records it as unscanned.
func (p *jscan) contentValue(out *[]field) bool {
	switch p.peek() {
	case '"':
		return p.strOrNull(out)
	case '[':
		first := true
		return p.array(func() bool {
			if p.peek() != '{' {
				return false
			}
			var txt, ref []field
			ok := p.object(func(k string) bool {
				switch k {
				case "type":
					if p.peek() != '"' {
						return p.null()
					}
					t, ok := p.strValue()
					return ok && (t.val == "" || textParts[t.val] || t.val == "refusal")
				case "text":
					return p.strOrNull(&txt)
				case "refusal":
					return p.strOrNull(&ref)
				}
				return clash(k, partKeys) == "" && p.value()
			})
			for _, t := range append(txt, ref...) {
				t.join = !first
				first = false
				*out = append(*out, t)
			}
			return ok
		})
	}
	return p.null()
}
