package scrub

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

const key = "sk-proj-Abc123/def+456_GHI-jkl789"

// naive is the reference: one regular expression of every spelling of
// every pattern (key or base64 spelling), longest first, replaced
// leftmost-first, never from inside an escape pair (scan).
func naive(keys []string, text string) string {
	set := New(keys...)
	if set.Empty() {
		return text
	}
	var alts []string
	for _, k := range set.pats {
		var b strings.Builder
		for _, c := range k {
			b.WriteString("(?:")
			b.WriteString(regexp.QuoteMeta(string([]byte{c})))
			b.WriteString("|%")
			for _, d := range fmt.Sprintf("%02x", c) {
				if d >= 'a' {
					fmt.Fprintf(&b, "[%c%c]", d, d-'a'+'A')
				} else {
					b.WriteRune(d)
				}
			}
			if c < 0x80 {
				h := fmt.Sprintf("%04x", c)
				b.WriteString(`|\\u`)
				for _, d := range h {
					if d >= 'a' {
						fmt.Fprintf(&b, "[%c%c]", d, d-'a'+'A')
					} else {
						b.WriteRune(d)
					}
				}
			}
			if e := escapes[c]; e != 0 {
				b.WriteString(`|\\` + regexp.QuoteMeta(string([]byte{e})))
			}
			if c != '\\' {
				// A second-level escape: its backslash as \\ or \u005c.
				second := ""
				if c < 0x80 {
					second = `u00` + hexAlt(fmt.Sprintf("%02x", c))
				}
				if e := escapes[c]; e != 0 && c != '"' {
					if second != "" {
						second += "|"
					}
					second += regexp.QuoteMeta(string([]byte{e}))
				}
				if second != "" {
					b.WriteString(`|(?:\\\\|\\u005[cC])(?:` + second + `)`)
				}
			}
			b.WriteString(")")
		}
		alts = append(alts, b.String())
	}
	// Leftmost-first, position by position, never inside an escape pair:
	// after an odd run of backslashes a backslash starts nothing, and a
	// match of another byte takes the pair's backslash along.
	re := regexp.MustCompile(`\A(?:` + strings.Join(alts, "|") + `)`)
	var out strings.Builder
	last, run := 0, 0
	for i := 0; i < len(text); {
		from := i
		if run%2 == 1 {
			if text[i] == '\\' {
				run++
				i++
				continue
			}
			from = i - 1
		}
		if loc := re.FindStringIndex(text[i:]); loc != nil && loc[1] > 0 {
			out.WriteString(text[last:from])
			out.WriteString(Marker)
			i += loc[1]
			last, run = i, 0
			continue
		}
		if text[i] == '\\' {
			run++
		} else {
			run = 0
		}
		i++
	}
	out.WriteString(text[last:])
	return out.String()
}

// hexAlt is a pattern of hex digits h in either case.
func hexAlt(h string) string {
	var b strings.Builder
	for _, d := range h {
		if d >= 'a' {
			fmt.Fprintf(&b, "[%c%c]", d, d-'a'+'A')
		} else {
			b.WriteRune(d)
		}
	}
	return b.String()
}

// jsonEscape spells every byte of s as \uXXXX, alternating hex case.
func jsonEscape(s string, upper bool) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if upper {
			fmt.Fprintf(&b, `\u%04X`, c)
		} else {
			fmt.Fprintf(&b, `\u%04x`, c)
		}
	}
	return b.String()
}

func TestBytesSpellings(t *testing.T) {
	s := New(key)
	for name, text := range map[string]string{
		"literal":        "x " + key + " y",
		"u-lower":        `{"a":"` + jsonEscape(key, false) + `"}`,
		"u-upper":        `{"a":"` + jsonEscape(key, true) + `"}`,
		"u-first-only":   `"\u0073` + key[1:] + `"`,
		"slash-escaped":  strings.ReplaceAll(key, "/", `\/`),
		"mixed":          `\u0073k-proj-Abc123\/def+456_GHI-jk\u006C789`,
		"header":         "Bearer " + key,
		"twice adjacent": key + key,
	} {
		out := s.String(text)
		if strings.Contains(out, key) || strings.Contains(out, "Abc123") {
			t.Errorf("%s: key survived: %q", name, out)
		}
		if !strings.Contains(out, Marker) {
			t.Errorf("%s: no marker in %q", name, out)
		}
		if out != naive([]string{key}, text) {
			t.Errorf("%s: %q differs from the reference %q", name, out, naive([]string{key}, text))
		}
	}
	if got := s.String("nothing here sk-proj-Abc"); got != "nothing here sk-proj-Abc" {
		t.Errorf("clean text changed: %q", got)
	}
	// A \u escape never spells a UTF-8 byte of a non-ASCII key.
	if New("clé-secrète-1234").Contains([]byte(`cl\u00e9-secr\u00e8te-1234`)) {
		t.Error("a rune escape matched bytes")
	}
}

// pctEncode spells every byte of s as %HH, upper hex when upper.
func pctEncode(s string, upper bool) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if upper {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}

// TestPercentAndBase64Spellings: a key percent-encoded (fully, partly,
// either hex case, mixed with JSON escapes) or base64-encoded (either
// alphabet, at any alignment inside a longer base64 text) is found.
func TestPercentAndBase64Spellings(t *testing.T) {
	keys := []string{key, "QWERTYsecretVAULT42"}
	s := New(keys...)
	texts := map[string]string{}
	for _, k := range keys {
		texts[k+"/pct upper"] = "u=" + pctEncode(k, true) + "&x"
		texts[k+"/pct lower"] = "u=" + pctEncode(k, false)
		texts[k+"/pct mixed with literal"] = pctEncode(k[:3], true) + k[3:7] + pctEncode(k[7:], false)
		texts[k+"/pct and json escape"] = jsonEscape(k[:4], false) + pctEncode(k[4:], true)
		for pre := 0; pre < 3; pre++ {
			plain := strings.Repeat("z", pre) + k + "tail"
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
				texts[fmt.Sprintf("%s/base64 %d %p", k, pre, enc)] = `{"b64":"` + enc.EncodeToString([]byte(plain)) + `"}`
			}
		}
		texts[k+"/base64 json-escaped slash"] = strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte("\xff\xfe"+k)), "/", `\/`)
	}
	for name, text := range texts {
		out := s.String(text)
		if !strings.Contains(out, Marker) {
			t.Errorf("%s: not found in %q", name, text)
		}
		if want := naive(keys, text); out != want {
			t.Errorf("%s: %q differs from the reference %q", name, out, want)
		}
		for _, n := range []int{1, 2, 5} {
			if got := streamAll(s, text, n); got != out {
				t.Errorf("%s split %d: %q, want %q", name, n, got, out)
			}
		}
	}
	for _, clean := range []string{"100%25 sure %41%42", "aGVsbG8gd29ybGQ=", "%zz%4"} {
		if got := s.String(clean); got != clean {
			t.Errorf("clean text changed: %q -> %q", clean, got)
		}
	}
}

// TestContainsFold: a header name Go canonicalised still shows the key.
func TestContainsFold(t *testing.T) {
	s := New("QWERTYsecretVAULT42")
	for _, name := range []string{"X-Qwertysecretvault42", "x-qwertysecretvault42", "X-QWERTYSECRETVAULT42", "qWeRtY%73ecretvault42"} {
		if !s.ContainsFold(name) {
			t.Errorf("%q not found", name)
		}
		if s.ContainsString(name) {
			t.Errorf("%q: the case-sensitive check must not be what finds it", name)
		}
	}
	if s.ContainsFold("X-Qwertysecret") || New().ContainsFold("X-Anything-Long") {
		t.Error("false positive")
	}
}

// TestNoAllocsWhenClean: scanning text with no key allocates nothing.
func TestNoAllocsWhenClean(t *testing.T) {
	s := New(key, "QWERTYsecretVAULT42")
	text := []byte(strings.Repeat(`data: {"content":"100% of A words, c2st and %51 here"}`+"\n", 50))
	if n := testing.AllocsPerRun(100, func() {
		if s.ContainsFold("Content-Type") || s.ContainsFold("application/json; charset=utf-8") {
			sink++
		}
	}); n != 0 {
		t.Errorf("ContainsFold allocates %v per run", n)
	}
	if n := testing.AllocsPerRun(100, func() { sink += len(s.Bytes(text)) }); n != 0 {
		t.Errorf("Bytes allocates %v per run", n)
	}
	st := s.NewStream()
	buf := make([]byte, 0, 2*len(text))
	st.Write(buf[:0], text)
	if n := testing.AllocsPerRun(100, func() { buf = st.Write(buf[:0], text) }); n != 0 {
		t.Errorf("Stream.Write allocates %v per run", n)
	}
}

func TestShortAndDuplicateKeys(t *testing.T) {
	if !New("short", "").Empty() {
		t.Error("keys under MinKeyLen must be ignored")
	}
	s := New(key, key, "abcdefgh")
	if len(s.keys) != 2 {
		t.Errorf("keys = %d, want 2", len(s.keys))
	}
	if s.With(key) != s {
		t.Error("With of a known key must return the same set")
	}
	if got := s.With("zyxwvutsrq").String("a zyxwvutsrq b"); got != "a "+Marker+" b" {
		t.Errorf("With: %q", got)
	}
	var nilSet *Set
	if nilSet.String(key) != key || nilSet.Contains([]byte(key)) {
		t.Error("a nil set must scrub nothing")
	}
}

// streamAll scrubs text written in pieces of size n.
func streamAll(s *Set, text string, n int) string {
	st := s.NewStream()
	var out []byte
	for i := 0; i < len(text); i += n {
		out = st.Write(out, []byte(text[i:min(i+n, len(text))]))
	}
	return string(st.Flush(out))
}

// streamAllLent is streamAll through WriteLent, each piece read from a
// buffer that is overwritten once its result is taken.
func streamAllLent(s *Set, text string, n int) string {
	st := s.NewStream()
	var out, scratch []byte
	piece := make([]byte, n)
	for i := 0; i < len(text); i += n {
		p := piece[:copy(piece, text[i:min(i+n, len(text))])]
		r := st.WriteLent(scratch[:0], p)
		out = append(out, r...)
		if len(r) > 0 && &r[0] != &p[0] {
			scratch = r
		}
		for j := range p {
			p[j] = '#'
		}
	}
	return string(st.Flush(out))
}

func TestStreamSplits(t *testing.T) {
	keys := []string{key, "AZURE0123456789abcdef", "sk-proj-Abc"}
	s := New(keys...)
	texts := []string{
		"data: {\"x\":\"" + key + "\"}\n\n",
		`data: {"content":"` + jsonEscape(key, true) + `"}` + "\n\n",
		"the azure key AZURE0123456789abcdef and sk-proj-Abc12 and " + key[:20],
		strings.Repeat("sk-proj-", 50) + key,
		`\\\\\u00` + strings.Repeat(`\u0073`, 10),
		// Second-level escapes: JSON text in a JSON string (tool-call
		// arguments), its backslashes escaped once.
		`{"arguments":"{\"k\":\"` + strings.ReplaceAll(jsonEscape(key, false), `\`, `\\`) + `\"}"}`,
		`{"arguments":"` + strings.ReplaceAll(jsonEscape(key[:9], true), `\`, `\u005C`) + key[9:] + `"}`,
		`\\/` + key + ` \\\\u0073` + key[1:] + ` \\u0073\\u007` + strings.Repeat(`\\u0073`, 9),
	}
	for _, text := range texts {
		want := naive(keys, text)
		for _, n := range []int{1, 2, 3, 5, 7, 64, 4096} {
			if got := streamAll(s, text, n); got != want {
				t.Errorf("split %d of %q:\n got %q\nwant %q", n, text, got, want)
			}
			if got := streamAllLent(s, text, n); got != want {
				t.Errorf("split %d of %q, lent:\n got %q\nwant %q", n, text, got, want)
			}
		}
	}
}

// TestStreamHoldsOnlyPartialMatches: bytes that cannot start a key leave at
// once, and what is held is bounded by the encoded key length.
func TestStreamHoldsOnlyPartialMatches(t *testing.T) {
	s := New(key)
	st := s.NewStream()
	out := st.Write(nil, []byte("hello world, nothing to see\n"))
	if string(out) != "hello world, nothing to see\n" || st.Pending() != 0 {
		t.Errorf("clean text held back: out %q pending %d", out, st.Pending())
	}
	out = st.Write(nil, []byte("a sk-proj-Abc"))
	if string(out) != "a " || st.Pending() != len("sk-proj-Abc") {
		t.Errorf("partial: out %q pending %d", out, st.Pending())
	}
	for i := 0; i < 1000; i++ {
		st.Write(nil, []byte(`\u0073`))
		if st.Pending() > 6*len(key) {
			t.Fatalf("held %d bytes", st.Pending())
		}
	}
	st = s.NewStream()
	for i := 0; i < 1000; i++ {
		st.Write(nil, []byte(`\u005cu0073`))
		if st.Pending() > 11*len(key) {
			t.Fatalf("held %d bytes of second-level escapes", st.Pending())
		}
	}
}

// A key's bytes spelled at the second level (11 bytes each, the longest
// spelling of a byte) are held back as long as they may still be the key:
// all of a 32-byte prefix, which is the most a stream ever holds of a
// 33-byte key (under 11× its length), then the whole is scrubbed.
func TestStreamHoldsSecondLevelPrefix(t *testing.T) {
	s := New(key)
	forms := []string{`\u005cu%04x`, `\u005Cu%04X`, `\\u%04x`}
	var spelled []string
	for i := 0; i < len(key); i++ {
		spelled = append(spelled, fmt.Sprintf(forms[i%len(forms)], key[i]))
	}
	prefix := strings.Join(spelled[:len(key)-1], "")
	for _, step := range []int{1, 7, len(prefix)} {
		st := s.NewStream()
		var out []byte
		for i := 0; i < len(prefix); i += step {
			out = st.Write(out, []byte(prefix[i:min(i+step, len(prefix))]))
		}
		if len(out) != 0 || st.Pending() != len(prefix) {
			t.Fatalf("step %d: released %q, held %d of the %d-byte prefix", step, out, st.Pending(), len(prefix))
		}
		if st.Pending() > 11*len(key) {
			t.Fatalf("step %d: held %d bytes, more than 11x the key", step, st.Pending())
		}
		out = st.Write(out, []byte(spelled[len(key)-1]+" end"))
		out = st.Flush(out)
		if string(out) != Marker+" end" {
			t.Fatalf("step %d: %q", step, out)
		}
	}
}

// WriteLent copies nothing of clean text, and holds back what Write holds.
func TestWriteLentCopiesCleanText(t *testing.T) {
	s := New(key)
	st := s.NewStream()
	p := []byte("hello world, nothing to see\n")
	if out := st.WriteLent(nil, p); &out[0] != &p[0] || len(out) != len(p) {
		t.Errorf("clean text copied: %q", out)
	}
	if out := st.WriteLent(nil, []byte("a sk-proj-Abc")); string(out) != "a " || st.Pending() != len("sk-proj-Abc") {
		t.Errorf("partial: out %q pending %d", out, st.Pending())
	}
	p = []byte("def, and on")
	if out := st.WriteLent(nil, p); len(out) > 0 && &out[0] == &p[0] {
		t.Errorf("lent its input while it held bytes before it: %q", out)
	}
}

func FuzzStream(f *testing.F) {
	f.Add("xx sk-proj-Abc123/def+456_GHI-jkl789 yy", uint8(3))
	f.Add(`\u0073k-proj-Abc123\/def+456_GHI-jkl789`, uint8(1))
	f.Add(`"AZURE0123456789ab\u0063def"`, uint8(2))
	f.Add(`\\\u0073k-proj-Abc123/def+456_GHI-jkl789`, uint8(1)) // a match after an escaped backslash
	f.Add(`\sk-proj-Abc123/def+456_GHI-jkl789 \\\\u0073k-proj-Abc`, uint8(2))
	f.Fuzz(func(t *testing.T, text string, n uint8) {
		keys := []string{key, "AZURE0123456789abcdef", "sk-proj-Abc", "a\"b\\c\nd/e\tf"}
		s := New(keys...)
		want := naive(keys, text)
		if got := s.String(text); got != want {
			t.Fatalf("String(%q) = %q, want %q", text, got, want)
		}
		if got := streamAll(s, text, int(n%16)+1); got != want {
			t.Fatalf("stream(%q, %d) = %q, want %q", text, n%16+1, got, want)
		}
		if got := streamAllLent(s, text, int(n%16)+1); got != want {
			t.Fatalf("lent stream(%q, %d) = %q, want %q", text, n%16+1, got, want)
		}
	})
}

var sink int

func BenchmarkScrub(b *testing.B) {
	s := New(key, "AZURE0123456789abcdef")
	event := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":" some streamed words, see"},"finish_reason":null}]}` + "\n\n")
	prose := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog; she sells sea shells. ", 1000))
	for name, text := range map[string][]byte{"event": event, "prose64k": prose} {
		b.Run("bytes/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				sink += len(s.Bytes(text))
			}
		})
		b.Run("stream/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			st := s.NewStream()
			buf := make([]byte, 0, len(text)+64)
			for b.Loop() {
				buf = st.Write(buf[:0], text)
				sink += len(buf)
			}
		})
	}
}

// A key in JSON text inside a JSON string (a tool call's arguments, which
// the agent decodes twice) is found: each byte may be escaped in the inner
// text, that escape's backslash escaped in the outer (\\u0073 or
// \u005cu0073), mixed with bytes escaped once or not at all.
func TestSecondLevelEscapes(t *testing.T) {
	s := New(key)
	inner := func(bs string) string {
		var b strings.Builder
		for i, c := range []byte(key) {
			switch i % 3 {
			case 0:
				fmt.Fprintf(&b, `%su%04x`, bs, c)
			case 1:
				fmt.Fprintf(&b, `\u%04X`, c)
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	}
	for _, text := range []string{
		`{"arguments":"{\"k\":\"` + inner(`\\`) + `\"}"}`,
		`{"arguments":"{\"k\":\"` + inner(`\u005c`) + `\"}"}`,
		`{"arguments":"{\"k\":\"` + inner(`\u005C`) + `\"}"}`,
		`{"arguments":"{\"k\":\"` + strings.ReplaceAll(key, "/", `\\/`) + `\"}"}`,
	} {
		got := s.String(text)
		if !strings.Contains(got, Marker) || strings.Contains(got, "GHI") {
			t.Errorf("%s: %s", text, got)
		}
		if streamAll(s, text, 3) != got {
			t.Errorf("%s: streamed differs", text)
		}
	}
}
