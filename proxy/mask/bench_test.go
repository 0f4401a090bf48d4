package mask

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// proseWords is ordinary assistant prose: some capitals, digits, hyphens,
// colons and parentheses, as found in real completions.
var proseWords = strings.Fields(`the a an of to in and is that for it as with was on be by this are
from at or have not but which can an were their has been more one all would there
model request policy approval token access service deploy cluster region user team
Answer: Here's summary (see above) step-by-step result value config - version 2 in 2024
A As And Also Before After However Note: results were good; it's fine. e.g. i.e. data.`)

func genProse(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(proseWords[r.IntN(len(proseWords))])
		if r.IntN(12) == 0 {
			b.WriteString(". ")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()[:n]
}

var pii = []string{
	"john.doe@example.com", "+1 (415) 555-2671", "4111 1111 1111 1111", "123-45-6789",
	"GB82 WEST 1234 5698 7654 32", "192.168.1.10", "2001:db8::1", "sk-proj-" + "Abc123Def456Ghi789Jkl012Mno345",
	"AKIAIOSFODNN7EXAMPLE", "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789", "xoxb-" + "123456789012-abcdefghij",
	"AIza" + "SyA1234567890abcdefghijklmnopqrstuv",
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
}

// genDense puts a finding about every 80 bytes of prose.
func genDense(n int) string {
	r := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(genProse(40+r.IntN(80), r.Uint64()))
		b.WriteByte(' ')
		b.WriteString(pii[r.IntN(len(pii))])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

// naive is the baseline the prefilter is measured against: each detector's
// regular expression run over the whole text, validators on the matches.
type naive struct {
	res []*regexp.Regexp
}

func newNaive() *naive {
	pats := []string{
		`[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`,
		`(?:\+1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}|\+[1-9]\d{0,2}(?:[ .-]?(?:\(0\)|\d{1,8})){2,6}`,
		`\b(?:\d[ -]?){12,18}\d\b`,
		`\b\d{3}-\d{2}-\d{4}\b`,
		`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}\b`,
		`\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b`,
		`[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]+`,
		`\bsk-[A-Za-z0-9_-]{20,}`,
		`\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b`,
		`\b(?:gh[pousr]_[A-Za-z0-9_]{30,}|github_pat_[A-Za-z0-9_]{22,})`,
		`\bxox[baprose]-[A-Za-z0-9-]{10,}`,
		`\bAIza[A-Za-z0-9_-]{35,}`,
		`\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)?`,
		`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)`,
	}
	n := &naive{}
	for _, p := range pats {
		n.res = append(n.res, regexp.MustCompile(p))
	}
	return n
}

func (n *naive) count(text string) int {
	c := 0
	for _, re := range n.res {
		c += len(re.FindAllStringIndex(text, -1))
	}
	return c
}

var benchSink int

func BenchmarkMask(b *testing.B) {
	m := testMasker(b, Config{Default: ActionMask})
	nv := newNaive()
	texts := map[string]string{"clean": genProse(64<<10, 1), "dense": genDense(64 << 10)}
	for _, name := range []string{"clean", "dense"} {
		text := texts[name]
		b.Run("prefilter/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				out, _ := m.Mask(text)
				benchSink += len(out)
			}
		})
		b.Run("naive/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				benchSink += nv.count(text)
			}
		})
		b.Run("stream8/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				s := m.NewStream()
				for i := 0; i < len(text); i += 8 {
					benchSink += len(s.Write(text[i:min(i+8, len(text))]))
				}
				benchSink += len(s.Flush())
			}
		})
	}
}

// TestNaiveBaselineFindsDense keeps the baseline honest: it must find at
// least as many candidates as the masker masks in the dense text.
func TestNaiveBaselineFindsDense(t *testing.T) {
	m := testMasker(t, Config{Default: ActionMask})
	text := genDense(16 << 10)
	_, c := m.Mask(text)
	if n := newNaive().count(text); n < c.Total() || c.Total() < 100 {
		t.Errorf("naive found %d, masker %d", n, c.Total())
	}
	if _, c := m.Mask(genProse(64<<10, 1)); c.Total() != 0 {
		t.Errorf("clean prose has findings: %v", c)
	}
}
