package mask

import (
	"strings"
	"testing"
)

type maskCase struct {
	in, want string
}

func runCases(t *testing.T, m *Masker, cases []maskCase) {
	t.Helper()
	for _, c := range cases {
		got, _ := m.Mask(c.in)
		if got != c.want {
			t.Errorf("Mask(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
		// Every table case also holds for a byte-by-byte stream.
		if s, _ := streamAll(t, m, c.in, fixed(1)); s != got {
			t.Errorf("stream(%q) = %q, Mask = %q", c.in, s, got)
		}
	}
}

// only returns a masker with just the named detector on.
func only(t *testing.T, name string) *Masker {
	return testMasker(t, Config{Detectors: map[string]Action{name: ActionMask}})
}

func TestEmail(t *testing.T) {
	runCases(t, only(t, TypeEmail), []maskCase{
		{"mail john.doe@example.com now", "mail [EMAIL] now"},
		{"<jane+news@sub.example.co.uk>", "<[EMAIL]>"},
		{"end of sentence: a_b%c@example.org.", "end of sentence: [EMAIL]."},
		{"mailto:ops-team@corp.example.io?subject=x", "mailto:[EMAIL]?subject=x"},
		{"--john@example.com", "--[EMAIL]"},
		{"two a@example.com,b@example.net", "two [EMAIL],[EMAIL]"},
		// negatives
		{"user@localhost", "user@localhost"},
		{"@handle and foo@bar and x@y.z", "@handle and foo@bar and x@y.z"},
		{"john..doe@example.com", "john..doe@example.com"},
		{"john.@example.com", "john.@example.com"},
		{"a@-example.com a@example.c0m", "a@-example.com a@example.c0m"},
		{"x@1.2.3.4", "x@1.2.3.4"},
		{strings.Repeat("a", 65) + "@example.com", strings.Repeat("a", 65) + "@example.com"},
	})
}

func TestPhone(t *testing.T) {
	runCases(t, only(t, TypePhone), []maskCase{
		{"call (415) 555-2671", "call [PHONE]"},
		{"call 415-555-2671.", "call [PHONE]."},
		{"415.555.2671 or 415 555 2671", "[PHONE] or [PHONE]"},
		{"+1 415 555 2671, +1-415-555-2671, +1 (415) 555-2671", "[PHONE], [PHONE], [PHONE]"},
		{"1-800-555-0199", "[PHONE]"},
		{"+14155552671", "[PHONE]"},
		{"+44 20 7946 0958", "[PHONE]"},
		{"+44 (0)20 7946 0958", "[PHONE]"},
		{"+442079460958", "[PHONE]"},
		{"+33 1 23 45 67 89", "[PHONE]"},
		{"+91 98765 43210", "[PHONE]"},
		{"+81-3-1234-5678", "[PHONE]"},
		// negatives
		{"555-1234", "555-1234"},
		{"date 2024-01-15", "date 2024-01-15"},
		{"4155552671", "4155552671"},
		{"(115) 555-2671 and 415-155-2671", "(115) 555-2671 and 415-155-2671"},
		{"415-555-2671-99", "415-555-2671-99"},
		{"price $415.55, 3.14159", "price $415.55, 3.14159"},
		{"+1 234", "+1 234"},
		{"1+1=2", "1+1=2"},
		{"ISBN 978-3-16-148410-0", "ISBN 978-3-16-148410-0"},
		{"+0 123 456 789", "+0 123 456 789"},
	})
}

func TestCreditCard(t *testing.T) {
	runCases(t, only(t, TypeCreditCard), []maskCase{
		{"4111111111111111", "[CREDIT_CARD]"},
		{"card 4111 1111 1111 1111 exp 12/29", "card [CREDIT_CARD] exp 12/29"},
		{"4111-1111-1111-1111", "[CREDIT_CARD]"},
		{"amex 3782 822463 10005", "amex [CREDIT_CARD]"},
		{"5555555555554444 and 6011111111111117", "[CREDIT_CARD] and [CREDIT_CARD]"},
		{"4111 1111 1111 1111 2025", "[CREDIT_CARD] 2025"},
		{"visa13 4222222222222", "visa13 [CREDIT_CARD]"},
		// negatives: Luhn failures, look-alikes
		{"order 4111111111111112", "order 4111111111111112"},
		{"id 1234567812345678", "id 1234567812345678"},
		{"epoch 1700000000000005", "epoch 1700000000000005"},
		{"0000 0000 0000 0000", "0000 0000 0000 0000"},
		{"4111-1111 1111-1111", "4111-1111 1111-1111"},
		{"4111.1111.1111.1111", "4111.1111.1111.1111"},
		{"x4111111111111111", "x4111111111111111"},
		{"4111111111111111abc", "4111111111111111abc"},
		{"3.4111111111111111", "3.4111111111111111"},
		{"41111111111111111111111", "41111111111111111111111"},
		{"sha 3f786850e387550fdab836ed7e6dc881de23001b", "sha 3f786850e387550fdab836ed7e6dc881de23001b"},
	})
}

func TestSSN(t *testing.T) {
	runCases(t, only(t, TypeSSN), []maskCase{
		{"ssn 123-45-6789", "ssn [SSN]"},
		{"078-05-1120.", "[SSN]."},
		{"000-12-3456 666-12-3456 900-12-3456", "000-12-3456 666-12-3456 900-12-3456"},
		{"123-00-4567 123-45-0000", "123-00-4567 123-45-0000"},
		{"123-45-6789-0 123 45 6789 123456789", "123-45-6789-0 123 45 6789 123456789"},
		{"a123-45-6789", "a123-45-6789"},
	})
}

func TestIBAN(t *testing.T) {
	runCases(t, only(t, TypeIBAN), []maskCase{
		{"GB82 WEST 1234 5698 7654 32", "[IBAN]"},
		{"iban: DE89370400440532013000.", "iban: [IBAN]."},
		{"DE89 3704 0044 0532 0130 00 EUR", "[IBAN] EUR"},
		{"FR1420041010050500013M02606", "[IBAN]"},
		{"NO9386011117947", "[IBAN]"},
		// negatives
		{"GB83 WEST 1234 5698 7654 32", "GB83 WEST 1234 5698 7654 32"}, // checksum
		{"DE8937040044053201300", "DE8937040044053201300"},             // length
		{"ZZ89370400440532013000", "ZZ89370400440532013000"},           // country
		{"gb82west12345698765432", "gb82west12345698765432"},           // lower case
		{"XDE89370400440532013000", "XDE89370400440532013000"},         // glued
		{"DE89370400440532013000X", "DE89370400440532013000X"},         // glued
		{"GB82 WEST 123 45698 7654 32", "GB82 WEST 123 45698 7654 32"}, // grouping
		{"model GPT4 and AB12 are not ibans", "model GPT4 and AB12 are not ibans"},
	})
}

func TestIPAddress(t *testing.T) {
	runCases(t, only(t, TypeIPAddress), []maskCase{
		{"host 192.168.1.10 up", "host [IP_ADDRESS] up"},
		{"10.0.0.1:8080 and 172.16.0.0/12.", "[IP_ADDRESS]:8080 and [IP_ADDRESS]/12."},
		{"0.0.0.0 255.255.255.255", "[IP_ADDRESS] [IP_ADDRESS]"},
		{"version 1.2.3.4", "version [IP_ADDRESS]"},
		{"2001:db8::1 and fe80::1ff:fe23:4567:890a", "[IP_ADDRESS] and [IP_ADDRESS]"},
		{"[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:443", "[[IP_ADDRESS]]:443"},
		{"::ffff:192.0.2.128", "[IP_ADDRESS]"},
		{"at 2001:db8::1: refused", "at [IP_ADDRESS]: refused"},
		// negatives
		{"semver 1.2.3, v1.2.3.4, 1.2.3.4.5", "semver 1.2.3, v1.2.3.4, 1.2.3.4.5"},
		{"256.1.1.1 1.2.3.999 01.02.03.04", "256.1.1.1 1.2.3.999 01.02.03.04"},
		{"time 12:30:45, mac 00:1a:2b:3c:4d:5e", "time 12:30:45, mac 00:1a:2b:3c:4d:5e"},
		{"std::vector a[1::2] ::1 dead::beef", "std::vector a[1::2] ::1 dead::beef"},
		{"fe80::1%eth0x", "fe80::1%eth0x"},
	})
}

func TestKeys(t *testing.T) {
	runCases(t, testMasker(t, Config{Default: ActionMask, Detectors: map[string]Action{
		"EMAIL": ActionOff, "PHONE": ActionOff, "CREDIT_CARD": ActionOff, "SSN": ActionOff, "IBAN": ActionOff, "IP_ADDRESS": ActionOff,
	}}), []maskCase{
		{"OPENAI_API_KEY=sk-proj-Abc123Def456Ghi789Jkl012Mno345", "OPENAI_API_KEY=[OPENAI_KEY]"},
		{`"sk-svcacct-AAAA1111BBBB2222CCCC3333"`, `"[OPENAI_KEY]"`},
		{"sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL.", "[OPENAI_KEY]."},
		{"aws AKIAIOSFODNN7EXAMPLE, ASIAY34FZKBOKMUTVV7A", "aws [AWS_ACCESS_KEY], [AWS_ACCESS_KEY]"},
		{"ghp_abcdefghijklmnopqrstuvwxyz0123456789 gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "[GITHUB_TOKEN] [GITHUB_TOKEN]"},
		{"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123", "[GITHUB_TOKEN]"},
		{"SLACK=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "SLACK=[SLACK_TOKEN]"},
		{"xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAx and xapp-1-A0123456789-1234", "[SLACK_TOKEN] and [SLACK_TOKEN]"},
		{"key=AIzaSyA1234567890abcdefghijklmnopqrstuv&x=1", "key=[GOOGLE_API_KEY]&x=1"},
		{"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
			"Authorization: Bearer [JWT]"},
		{"unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. done", "unsigned [JWT]. done"},
		{"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\nok", "[PRIVATE_KEY]\nok"},
		{`{"k":"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"}`, `{"k":"[PRIVATE_KEY]\n"}`},
		{"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----", "[PRIVATE_KEY]"},
		{"cut -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE never ends", "cut [PRIVATE_KEY]"},
		// negatives
		{"risk-free task-sk-abc sk-short sk-aaaaaaaaaaaaaaaaaaaaaaaaa sk-1111111111111111111111", "risk-free task-sk-abc sk-short sk-aaaaaaaaaaaaaaaaaaaaaaaaa sk-1111111111111111111111"},
		{"AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX xAKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX xAKIAIOSFODNN7EXAMPLE"},
		{"ghp_short myghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_short myghp_abcdefghijklmnopqrstuvwxyz0123456789"},
		{"xoxb-short xoxz-1234567890123", "xoxb-short xoxz-1234567890123"},
		{"AIzaShort", "AIzaShort"},
		{"eyJub3QiOiJhIGp3dCJ9.eyJ4IjoxfQ.sig eyJhbGciOiJIUzI1NiJ9 alone", "eyJub3QiOiJhIGp3dCJ9.eyJ4IjoxfQ.sig eyJhbGciOiJIUzI1NiJ9 alone"},
		{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
	})
}

func TestActions(t *testing.T) {
	m := testMasker(t, Config{Default: ActionMask, Detectors: map[string]Action{"email": ActionRedact, "Phone": ActionOff}})
	got, counts := m.Mask("a@example.com 415-555-2671 123-45-6789")
	if want := "[REDACTED] 415-555-2671 [SSN]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if counts[TypeEmail] != 1 || counts[TypeSSN] != 1 || counts.Total() != 2 {
		t.Errorf("counts %v", counts)
	}

	off := testMasker(t, Config{})
	if off.Enabled() {
		t.Error("empty config enables masking")
	}
	if got, _ := off.Mask("a@example.com"); got != "a@example.com" {
		t.Errorf("disabled masker changed text: %q", got)
	}
	var nilM *Masker
	if got, _ := nilM.Mask("a@example.com"); got != "a@example.com" || nilM.Enabled() {
		t.Errorf("nil masker changed text: %q", got)
	}
	if s := nilM.NewStream(); s.Write("abc")+s.Flush() != "abc" {
		t.Error("nil masker stream changed text")
	}

	// Clean text comes back as the same string, no copy.
	clean := "nothing to see"
	if got, c := m.Mask(clean); got != clean || c.Total() != 0 {
		t.Errorf("clean text changed: %q %v", got, c)
	}
}

func TestCustom(t *testing.T) {
	m := testMasker(t, Config{
		Detectors: map[string]Action{"emp_id": ActionRedact},
		Custom: []Custom{
			{Name: "emp_id", Pattern: `\bEMP-\d{6}\b`},
			{Name: "PROJECT", Pattern: `(?i)project (?:falcon|osprey)`, Action: ActionMask},
			{Name: "DISABLED", Pattern: `secret`, Action: ActionOff},
		},
	})
	got, counts := m.Mask("EMP-123456 on Project Falcon, not XEMP-123456 or EMP-1234567; secret")
	if want := "[REDACTED] on [PROJECT], not XEMP-123456 or EMP-1234567; secret"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if counts["EMP_ID"] != 1 || counts["PROJECT"] != 1 {
		t.Errorf("counts %v", counts)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Config{
		Default:   "hide",
		Detectors: map[string]Action{"EMAILS": ActionMask, "PHONE": "blur"},
		Custom: []Custom{
			{Name: "EMAIL", Pattern: `x`},
			{Name: "BAD", Pattern: `(`},
			{Name: "EMPTY", Pattern: `a*`},
			{Name: "WORDB", Pattern: `\b`},
			{Name: "ORB", Pattern: `x|\b`},
			{Name: "ANCHOR", Pattern: `^id-\d+$`},
			{Name: "9lives", Pattern: `x`},
			{Name: "DUP", Pattern: `y`},
			{Name: "DUP", Pattern: `z`},
		},
	})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{`"hide"`, `unknown detector "EMAILS"`, `"blur"`, `"EMAIL": name clashes`, `"BAD": bad pattern`,
		`"EMPTY": pattern can match the empty string`, `"WORDB": pattern can match the empty string`, `"ORB": pattern can match the empty string`, `"ANCHOR": text anchors`, `"9lives"`, `"DUP": defined twice`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
	if _, err := New(Config{Custom: []Custom{{Name: "LINE", Pattern: `(?m)^id-\d+$`}}}); err != nil {
		t.Errorf("line anchors rejected: %v", err)
	}
}

func TestTypes(t *testing.T) {
	got := strings.Join(Types(), ",")
	want := "AWS_ACCESS_KEY,CREDIT_CARD,EMAIL,GITHUB_TOKEN,GOOGLE_API_KEY,IBAN,IP_ADDRESS,JWT,OPENAI_KEY,PHONE,PRIVATE_KEY,SLACK_TOKEN,SSN"
	if got != want {
		t.Errorf("Types() = %s", got)
	}
}

// TestOverlap checks leftmost-first selection between detectors.
func TestOverlap(t *testing.T) {
	m := testMasker(t, Config{Default: ActionMask})
	runCases(t, m, []maskCase{
		// A key glued to an email domain: the key starts first and wins.
		{"sk-proj-abc123def456ghi789jkl012@example.com", "[OPENAI_KEY]@example.com"},
		// An address inside an email domain is part of the email.
		{"root@10.0.0.1 vs admin@db1.example.com", "root@[IP_ADDRESS] vs [EMAIL]"},
		// At the same start the longer finding wins.
		{"415-555-2671@example.com", "[EMAIL]"},
		// A card followed by a phone-looking tail.
		{"4111 1111 1111 1111 415-555-2671", "[CREDIT_CARD] [PHONE]"},
	})
}

// MaskOffsets masks as Mask does and finds offsets of the text again in
// its masked form: the start of each part of a text made of parts lands
// where that part's masked form begins, and an offset inside a finding
// (a secret split over two parts) after its placeholder.
func TestMaskOffsets(t *testing.T) {
	m := testMasker(t, Config{Default: ActionMask, Custom: []Custom{{Name: "CODE", Pattern: `\bX-\d+\b`}}})
	parts := []string{"mail bob@example.com now", "", "key AKIAIOSFODNN7EXAMPLE and X-42", "plain", "a@b.example and 123-45-6789"}
	var text string
	var starts []int
	for i, p := range parts {
		if i > 0 {
			text += "\n"
		}
		starts = append(starts, len(text))
		text += p
	}
	got, at := m.MaskOffsets(text, starts)
	if want, _ := m.Mask(text); got != want {
		t.Fatalf("MaskOffsets masks to %q, Mask to %q", got, want)
	}
	for i, p := range parts {
		mp, _ := m.Mask(p)
		if !strings.HasPrefix(got[at[i]:], mp) || (at[i] > 0 && got[at[i]-1] != '\n') {
			t.Errorf("part %d (%q) found at %d: %q", i, mp, at[i], got[at[i]:])
		}
	}

	// A finding across an offset: the offset lands after its placeholder.
	text = "mail bob@exa" + "mple.com here"
	got, at = m.MaskOffsets(text, []int{0, 5, 12, 17, len(text)})
	if got != "mail [EMAIL] here" || at[0] != 0 || at[1] != 5 || at[2] != 12 || at[3] != 12 || at[4] != len(got) {
		t.Fatalf("a finding across an offset: %q %v", got, at)
	}

	// Nothing found, or masking off: the offsets as given.
	for _, mk := range []*Masker{m, testMasker(t, Config{}), nil} {
		if got, at := mk.MaskOffsets("nothing here", []int{0, 3, 12}); got != "nothing here" || at[0] != 0 || at[1] != 3 || at[2] != 12 {
			t.Errorf("clean text: %q %v", got, at)
		}
	}
}
