package mask

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

// streamAll feeds text to a new Stream in pieces whose sizes come from next,
// and returns the concatenated output. Each piece is written from one
// buffer, spoiled once Write returns, as a relay lending an event's bytes
// does: a Stream that kept a piece past its Write reads the spoiled bytes.
func streamAll(t testing.TB, m *Masker, text string, next func() int) (string, Counts) {
	t.Helper()
	s := m.NewStream()
	var b strings.Builder
	var buf []byte
	for i := 0; i < len(text); {
		n := max(1, next())
		n = min(n, len(text)-i)
		buf = append(buf[:0], text[i:i+n]...)
		b.WriteString(s.Write(unsafe.String(unsafe.SliceData(buf), len(buf))))
		for j := range buf {
			buf[j] = 0xff
		}
		i += n
		if s.Pending() > MaxHold+ctxLen {
			t.Fatalf("stream holds %d bytes (> %d) after %d of %d bytes", s.Pending(), MaxHold+ctxLen, i, len(text))
		}
	}
	b.WriteString(s.Flush())
	return b.String(), s.Counts()
}

func fixed(n int) func() int { return func() int { return n } }

// corpus mixes every detector, look-alikes and plain prose.
var corpus = []string{
	"Contact john.doe@example.com or jane+tag@sub.example.co.uk today.",
	"call +1 (415) 555-2671, 415-555-2671, 415.555.2671 or +44 20 7946 0958; not 555-1234",
	"cards: 4111 1111 1111 1111, 4111-1111-1111-1111, 378282246310005, 5555555555554444 but not 4111111111111112",
	"ssn 123-45-6789 and 078-05-1120, not 000-12-3456 or 123-45-6789-0",
	"IBAN GB82 WEST 1234 5698 7654 32, DE89370400440532013000, FR1420041010050500013M02606.",
	"hosts 10.0.0.1:8080, 192.168.1.254/24, 2001:db8::1, fe80::1, not 1.2.3 or v1.2.3.4 or 999.1.1.1",
	"OPENAI_API_KEY=sk-proj-" + "Abc123Def456Ghi789Jkl012Mno345Pqr678 and AKIAIOSFODNN7EXAMPLE",
	"token ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789 github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
	"slack xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOp google AIza" + "SyA1234567890abcdefghijklmnopqrstuv",
	"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U. next",
	"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\nafter the key 10.1.2.3",
	"unterminated -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI 4111 1111 1111 1111 john@example.com",
	"git 3f786850e387550fdab836ed7e6dc881de23001b uuid 550e8400-e29b-41d4-a716-446655440000 price $1,234.56 pi 3.14159265358979 semver 1.2.3",
	"The quick brown fox jumps over the lazy dog. Nothing to see here: 2024-01-15, 12:30:45, std::vector, a[1::2].",
	"edge: a@b, x@y.z, @@, sk-short, ghp_short, AKIA123, eyJ.eyJ, ----- BEGIN, ((415) 555, +1, +, 4111 1111",
	"mixed sk-proj-abc123def456ghi789jkl012@example.com and john@example.com.au. 1.2.3.4.",
	"email at end a.b@example.org",
}

func testMasker(t testing.TB, cfg Config) *Masker {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStreamEqualsMask(t *testing.T) {
	cfgs := map[string]Config{
		"all":    {Default: ActionMask},
		"redact": {Default: ActionRedact, Detectors: map[string]Action{"PHONE": ActionMask}},
		"email":  {Detectors: map[string]Action{"email": ActionMask}},
		"custom": {Default: ActionMask, Custom: []Custom{{Name: "EMP", Pattern: `\bEMP-\d{4,6}\b`}, {Name: "WORD", Pattern: `(?i)confidential`}}},
	}
	for name, cfg := range cfgs {
		m := testMasker(t, cfg)
		for _, text := range append(corpus, strings.Join(corpus, "\n"), "EMP-1234 is confidential; EMP-12 is not") {
			want, wantCounts := m.Mask(text)
			for _, n := range []int{1, 2, 3, 7, 64, len(text)} {
				got, gotCounts := streamAll(t, m, text, fixed(n))
				if got != want {
					t.Errorf("%s: deltas of %d bytes:\n got %q\nwant %q", name, n, got, want)
				}
				if gotCounts.Total() != wantCounts.Total() {
					t.Errorf("%s: deltas of %d bytes: counts %v, want %v", name, n, gotCounts, wantCounts)
				}
			}
			r := rand.New(rand.NewPCG(uint64(len(text)), 7))
			for range 20 {
				got, _ := streamAll(t, m, text, func() int { return 1 + r.IntN(12) })
				if got != want {
					t.Fatalf("%s: random split:\n got %q\nwant %q", name, got, want)
				}
			}
		}
	}
}

// TestStreamBoundedHold feeds adversarial input byte by byte: long runs that
// keep detectors undecided must not make a stream buffer them whole.
func TestStreamBoundedHold(t *testing.T) {
	m := testMasker(t, Config{Default: ActionMask})
	inputs := []string{
		strings.Repeat("a", 10000),
		strings.Repeat("1 ", 5000),
		strings.Repeat("sk-", 3000),
		"sk-" + strings.Repeat("-", 5000),
		"eyJ" + strings.Repeat("A", 5000),
		strings.Repeat("fe80:", 2000),
		"-----BEGIN PRIVATE KEY-----\n" + strings.Repeat("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", 1000),
		strings.Repeat("a.", 5000) + "@example.com",
		"x@" + strings.Repeat("a-", 5000),
	}
	for _, in := range inputs {
		got, _ := streamAll(t, m, in, fixed(1))
		want, _ := m.Mask(in)
		if got != want {
			t.Errorf("input %.20q...: stream differs from Mask", in)
		}
	}
	// A PEM block longer than any buffer is masked from its BEGIN line on.
	s := m.NewStream()
	out := s.Write("key: -----BEGIN RSA PRIVATE KEY-----\n")
	for range 1000 {
		out += s.Write("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n")
		if s.Pending() > MaxHold {
			t.Fatalf("PEM body buffered: %d bytes pending", s.Pending())
		}
	}
	if out != "key: [PRIVATE_KEY]" {
		t.Errorf("PEM stream released %q", out)
	}
	out += s.Write("-----END RSA PRIVATE KEY-----\nbye") + s.Flush()
	if out != "key: [PRIVATE_KEY]\nbye" {
		t.Errorf("PEM stream output %q", out)
	}
}

func FuzzStream(f *testing.F) {
	for _, c := range corpus {
		f.Add(c, uint64(1))
		f.Add(c, uint64(7))
	}
	f.Add("x sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1 y", uint64(3))
	f.Add("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----", uint64(2))
	m := testMasker(f, Config{Default: ActionMask, Custom: []Custom{{Name: "EMP", Pattern: `EMP-\d{4}`}}})
	secret := "sk-proj-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"
	f.Fuzz(func(t *testing.T, text string, seed uint64) {
		if len(text) > 4096 {
			return
		}
		r := rand.New(rand.NewPCG(seed, seed>>7))
		want, _ := m.Mask(text)
		got, _ := streamAll(t, m, text, func() int { return 1 + r.IntN(9) })
		if got != want {
			t.Fatalf("stream != Mask\ntext %q\n got %q\nwant %q", text, got, want)
		}
		// A key planted after a separator is never released.
		planted := text + " " + secret + " "
		got, _ = streamAll(t, m, planted, func() int { return 1 + r.IntN(9) })
		if strings.Contains(got, secret) {
			t.Fatalf("planted key leaked: %q", got)
		}
	})
}

// TestStreamKeepsRunes: for rune-aligned deltas every release is valid
// UTF-8, since callers re-encode releases as JSON strings.
func TestStreamKeepsRunes(t *testing.T) {
	m := testMasker(t, Config{Default: ActionMask, Custom: []Custom{{Name: "EMP", Pattern: `EMP-\d{4}`}}})
	text := strings.Repeat("héllo wörld — 日本語 EMP-1234 ", 60)
	s := m.NewStream()
	var b strings.Builder
	for _, r := range text {
		out := s.Write(string(r))
		if !utf8.ValidString(out) {
			t.Fatalf("release %q is not valid UTF-8", out)
		}
		b.WriteString(out)
	}
	b.WriteString(s.Flush())
	if want, _ := m.Mask(text); b.String() != want {
		t.Errorf("stream differs from Mask")
	}
}
