package mask

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strings"
)

// Every detector reads the window through explicit bounds checks: reaching
// the end of a window that is not final means "undecided" (sc.need), so a
// stream waits for more bytes and decides exactly as Mask would on the whole
// text. Each detector reads a bounded number of bytes past its start, which
// bounds a stream's hold-back.

// litAt reports whether lit occurs at w[i:]; stNeed when the window ends
// inside a matching prefix.
func (sc *scanner) litAt(i int, lit string) status {
	w := sc.w
	n := min(len(w)-i, len(lit))
	if w[i:i+n] != lit[:n] {
		return stNone
	}
	if n < len(lit) {
		if sc.final {
			return stNone
		}
		return stNeed
	}
	return stMatch
}

// ---- EMAIL -------------------------------------------------------------

// email is anchored at '@'. The local part is the maximal run of
// [A-Za-z0-9._%+-] before it (at most 64 bytes, leading punctuation
// dropped, no "..", not ending in '.'); the domain is two or more labels of
// [A-Za-z0-9-] (no leading or trailing '-', at most 63 bytes each, 253 in
// all) ending in an alphabetic TLD of two or more letters.
func (sc *scanner) email(at int) {
	w := sc.w
	i := at
	for i > 0 && is(w[i-1], cLocal) {
		i--
		if at-i > maxLocal {
			return
		}
	}
	s := i
	for s < at && !is(w[s], cAlnum) {
		s++
	}
	if s == at || w[at-1] == '.' || strings.Contains(w[s:at], "..") {
		return
	}
	j := at + 1
	end, labels, tldOK := 0, 0, false
	for {
		k := j
		for k < len(w) && is(w[k], cDomain) {
			k++
			if k-at-1 > maxDomain {
				return
			}
		}
		if k == len(w) && !sc.final {
			sc.need(s)
			return
		}
		lab := w[j:k]
		if lab == "" || len(lab) > 63 || lab[0] == '-' || lab[len(lab)-1] == '-' {
			break
		}
		labels++
		end = k
		tldOK = len(lab) >= 2 && allAlpha(lab)
		if k < len(w) && w[k] == '.' {
			if k+1 == len(w) {
				if !sc.final {
					sc.need(s)
					return
				}
				break
			}
			if is(w[k+1], cAlnum) {
				j = k + 1
				continue
			}
		}
		break
	}
	if labels >= 2 && tldOK {
		sc.add(s, end, kEmail)
	}
}

func allAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if !is(s[i], cAlpha) {
			return false
		}
	}
	return true
}

// ---- numbers: CREDIT_CARD, SSN, IP_ADDRESS (v4), PHONE ------------------

const maxGroups = 8

// group is a run of digits, or "(digits)".
type group struct {
	s, e   int // span, parentheses included
	ds, de int // the digits
	sep    byte
	paren  bool
}

func (g *group) n() int { return g.de - g.ds }

// numTok is a numeric token: digit groups separated by one ' ', '-' or '.'
// (or nothing after a parenthesised group), optionally after a '+'.
type numTok struct {
	plus  bool
	g     [maxGroups]group
	n     int
	glued bool // the last group is followed by a letter or '_'
	more  byte // separator before a continuation that was not recorded
}

// endOK reports whether a match may end after the first k groups: either
// the token ends there (not glued to a word), or it goes on after a space.
// Hard separators ('-', '.') continuing the token forbid a match ending
// there: "123-45-6789-0" is not an SSN, "1.2.3.4.5" not an address.
func (t *numTok) endOK(k int) bool {
	if k < t.n {
		return t.g[k].sep == ' '
	}
	return !t.glued && (t.more == 0 || t.more == ' ')
}

// digit handles a digit: a numeric token starts here when the previous byte
// is not a letter, digit or '_', and not a '.', ',' or '-' that follows one
// ("v1.2", "1,234", "ab-12" continue a word). IBANs are anchored on their
// check digits.
func (sc *scanner) digit(i int) {
	w := sc.w
	on := &sc.m.on
	if i > 0 {
		p := w[i-1]
		if is(p, cWord) {
			if on[kIBAN] && i >= 2 && is(p, cUpper) && is(w[i-2], cUpper) && tokenStart(w, i-2) {
				sc.iban(i - 2)
			}
			return
		}
		if (p == '.' || p == ',' || p == '-') && i >= 2 && is(w[i-2], cAlnum) {
			return
		}
	}
	if on[kCard] || on[kPhone] || on[kSSN] || on[kIP] {
		sc.number(i)
	}
}

func (sc *scanner) number(i int) {
	t := &sc.tok
	switch sc.lex(i, t) {
	case stNeed:
		sc.need(i)
		return
	case stNone:
		return
	}
	on := &sc.m.on
	if on[kCard] {
		sc.card(t)
	}
	if on[kSSN] {
		sc.ssn(t)
	}
	if on[kIP] {
		sc.ipv4(t)
	}
	if on[kPhone] {
		sc.phone(t, i)
	}
}

func (sc *scanner) lex(i int, t *numTok) status {
	w := sc.w
	t.plus, t.n, t.glued, t.more = false, 0, false, 0
	j := i
	if w[j] == '+' {
		t.plus = true
		j++
		if j >= len(w) {
			if sc.final {
				return stNone
			}
			return stNeed
		}
		if !isDigit(w[j]) {
			return stNone
		}
	}
	var sep byte
	for {
		g, st, long := sc.lexGroup(j)
		if st == stNeed {
			return stNeed
		}
		if st == stNone || long {
			if t.n == 0 {
				return stNone
			}
			if long {
				t.more = sep
			}
			return stMatch
		}
		if t.n == maxGroups {
			t.more = sep
			return stMatch
		}
		g.sep = sep
		t.g[t.n] = g
		t.n++
		k := g.e
		if k >= len(w) {
			if sc.final {
				return stMatch
			}
			return stNeed
		}
		c := w[k]
		switch {
		case c == '(' || (g.paren && isDigit(c)):
			sep, j = 0, k
			continue
		case c == ' ' || c == '-' || c == '.':
			if k+1 >= len(w) {
				if sc.final {
					return stMatch
				}
				return stNeed
			}
			if d := w[k+1]; isDigit(d) || (d == '(' && c == ' ') {
				sep, j = c, k+1
				continue
			}
		case is(c, cWord):
			t.glued = true
		}
		return stMatch
	}
}

// lexGroup reads a group at j; long reports a digit run over 20 digits.
func (sc *scanner) lexGroup(j int) (g group, st status, long bool) {
	w := sc.w
	if w[j] == '(' {
		k := j + 1
		for k < len(w) && isDigit(w[k]) && k-j <= 4 {
			k++
		}
		if k >= len(w) {
			if sc.final {
				return g, stNone, false
			}
			return g, stNeed, false
		}
		if w[k] != ')' || k == j+1 {
			return g, stNone, false
		}
		return group{s: j, e: k + 1, ds: j + 1, de: k, paren: true}, stMatch, false
	}
	k := j
	for k < len(w) && isDigit(w[k]) {
		k++
		if k-j > 20 {
			return g, stNone, true
		}
	}
	if k == j {
		return g, stNone, false
	}
	if k >= len(w) && !sc.final {
		return g, stNeed, false
	}
	return group{s: j, e: k, ds: j, de: k}, stMatch, false
}

// card: 13-19 digits, Luhn-valid, first digit 2-6 (Visa, Mastercard, Amex,
// Diners, JCB, Discover, UnionPay, Maestro); written unbroken or in groups
// separated by one kind of separator (space or dash): 4-4-4-4 (last group
// 1-4 digits, up to 5 groups), 4-6-5 or 4-6-4.
func (sc *scanner) card(t *numTok) {
	if t.plus {
		return
	}
	w := sc.w
	for k := t.n; k >= 1; k-- {
		if !t.endOK(k) || !cardLayout(t, k) {
			continue
		}
		if f := w[t.g[0].ds]; f < '2' || f > '6' {
			return
		}
		if luhn(w, t, k) {
			sc.add(t.g[0].s, t.g[k-1].e, kCard)
			return
		}
	}
}

func cardLayout(t *numTok, k int) bool {
	d := 0
	for i := 0; i < k; i++ {
		g := &t.g[i]
		if g.paren || (i > 0 && (g.sep != t.g[1].sep || (g.sep != ' ' && g.sep != '-'))) {
			return false
		}
		d += g.n()
	}
	if d < 13 || d > 19 {
		return false
	}
	if k == 1 {
		return true
	}
	if t.g[0].n() != 4 {
		return false
	}
	if k == 3 && t.g[1].n() == 6 && (t.g[2].n() == 5 || t.g[2].n() == 4) {
		return true
	}
	for i := 1; i < k-1; i++ {
		if t.g[i].n() != 4 {
			return false
		}
	}
	return k <= 5 && t.g[k-1].n() <= 4
}

func luhn(w string, t *numTok, k int) bool {
	sum, dbl := 0, false
	for i := k - 1; i >= 0; i-- {
		g := &t.g[i]
		for j := g.de - 1; j >= g.ds; j-- {
			d := int(w[j] - '0')
			if dbl {
				d *= 2
				if d > 9 {
					d -= 9
				}
			}
			sum += d
			dbl = !dbl
		}
	}
	return sum%10 == 0
}

// ssn: ddd-dd-dddd with area not 000, 666 or 9xx, group not 00, serial not
// 0000. Other spellings (spaces, no separators) are too ambiguous.
func (sc *scanner) ssn(t *numTok) {
	if t.plus || t.n < 3 || !t.endOK(3) {
		return
	}
	w := sc.w
	a, g, s := &t.g[0], &t.g[1], &t.g[2]
	if a.paren || g.paren || s.paren || a.n() != 3 || g.n() != 2 || s.n() != 4 || g.sep != '-' || s.sep != '-' {
		return
	}
	area := w[a.ds:a.de]
	if area == "000" || area == "666" || area[0] == '9' || w[g.ds:g.de] == "00" || w[s.ds:s.de] == "0000" {
		return
	}
	sc.add(a.s, s.e, kSSN)
}

// ipv4: four dot-separated decimal octets 0-255 without leading zeros, not
// continued by ".digit" nor glued to a word ("v1.2.3.4", "1.2.3.4.5" and
// "01.02.03.04" are not addresses; "1.2.3" is a version).
func (sc *scanner) ipv4(t *numTok) {
	if t.plus || t.n < 4 || !t.endOK(4) {
		return
	}
	w := sc.w
	for i := 0; i < 4; i++ {
		g := &t.g[i]
		if g.paren || (i > 0 && g.sep != '.') || g.n() > 3 || (g.n() > 1 && w[g.ds] == '0') {
			return
		}
		v := 0
		for j := g.ds; j < g.de; j++ {
			v = v*10 + int(w[j]-'0')
		}
		if v > 255 {
			return
		}
	}
	sc.add(t.g[0].s, t.g[3].e, kIP)
}

// phone: North American numbers ([+]1, area code, exchange, line, area and
// exchange starting 2-9, e.g. "(415) 555-2671", "415-555-2671",
// "+1 415 555 2671", "+14155552671") and international numbers written with
// '+' and a country code ("+44 20 7946 0958", "+44 (0)20 7946 0958",
// "+442079460958": 8-15 digits). Bare digit runs without '+' and local
// 7-digit numbers are not phones.
func (sc *scanner) phone(t *numTok, start int) {
	w := sc.w
	g0 := &t.g[0]
	if t.plus {
		if w[g0.ds] == '1' {
			switch {
			case g0.n() == 1:
				sc.nanp(t, 1, start)
			case g0.n() == 11 && t.endOK(1) && w[g0.ds+1] >= '2' && w[g0.ds+4] >= '2':
				sc.add(start, g0.e, kPhone)
			}
			return
		}
		sc.intl(t, start)
		return
	}
	if !g0.paren && g0.n() == 1 && w[g0.ds] == '1' {
		sc.nanp(t, 1, start)
		return
	}
	sc.nanp(t, 0, start)
}

func (sc *scanner) nanp(t *numTok, a, start int) {
	if t.n < a+3 || !t.endOK(a+3) {
		return
	}
	w := sc.w
	area, ex, line := &t.g[a], &t.g[a+1], &t.g[a+2]
	if area.n() != 3 || ex.n() != 3 || line.n() != 4 || ex.paren || line.paren {
		return
	}
	if a == 1 && (area.sep == 0 && !area.paren) {
		return
	}
	if area.paren {
		if ex.sep == '.' {
			return
		}
	} else if ex.sep == 0 {
		return
	}
	if line.sep == 0 || w[area.ds] < '2' || w[ex.ds] < '2' {
		return
	}
	sc.add(start, line.e, kPhone)
}

func (sc *scanner) intl(t *numTok, start int) {
	w := sc.w
	g0 := &t.g[0]
	if g0.paren || w[g0.ds] == '0' {
		return
	}
	for k := t.n; k >= 2; k-- {
		if g0.n() > 3 || !t.endOK(k) {
			continue
		}
		d, ok := g0.n(), true
		for i := 1; i < k && ok; i++ {
			g := &t.g[i]
			switch {
			case g.n() > 8:
				ok = false
			case g.paren && g.n() == 1 && w[g.ds] == '0':
				// trunk prefix "(0)": not part of the E.164 number
			default:
				d += g.n()
			}
		}
		if ok && d >= 8 && d <= 15 {
			sc.add(start, t.g[k-1].e, kPhone)
			return
		}
	}
	if n := g0.n(); n >= 8 && n <= 15 && t.endOK(1) {
		sc.add(start, g0.e, kPhone)
	}
}

// ---- IBAN ----------------------------------------------------------------

// iban: country code, two check digits and the BBAN, either unbroken or in
// groups of four separated by single spaces, upper case, with the length
// registered for the country and a valid mod-97 checksum.
func (sc *scanner) iban(s int) {
	w := sc.w
	L := ibanLen(w[s], w[s+1])
	if L == 0 {
		return
	}
	need := func() {
		if !sc.final {
			sc.need(s)
		}
	}
	if s+3 >= len(w) {
		need()
		return
	}
	if !isDigit(w[s+3]) {
		return
	}
	var buf [34]byte
	copy(buf[:], w[s:s+4])
	nb, j := 4, s+4
	if j >= len(w) {
		need()
		return
	}
	if w[j] == ' ' {
		for nb < L {
			if j >= len(w) {
				need()
				return
			}
			if w[j] != ' ' {
				return
			}
			j++
			g := 0
			for g < 4 && nb < L {
				if j >= len(w) {
					need()
					return
				}
				if !is(w[j], cUpper|cDigit) {
					break
				}
				buf[nb] = w[j]
				nb, j, g = nb+1, j+1, g+1
			}
			if g == 0 || (g < 4 && nb < L) {
				return
			}
		}
	} else {
		for nb < L {
			if j >= len(w) {
				need()
				return
			}
			if !is(w[j], cUpper|cDigit) {
				return
			}
			buf[nb] = w[j]
			nb, j = nb+1, j+1
		}
	}
	if j >= len(w) {
		if !sc.final {
			sc.need(s)
			return
		}
	} else if is(w[j], cWord) {
		return
	}
	if ibanValid(buf[:L]) {
		sc.add(s, j, kIBAN)
	}
}

func ibanValid(b []byte) bool {
	r := 0
	for i := range b {
		c := b[(i+4)%len(b)]
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return r == 1
}

// ibanLengths is the IBAN length per country (SWIFT IBAN registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
	"BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
	"DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
	"FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
	"GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
	"LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
	"MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
	"PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
	"SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
	"SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
	"YE": 30,
}

func ibanLen(a, b byte) int { return ibanLengths[string([]byte{a, b})] }

// ---- IP_ADDRESS (v6) -----------------------------------------------------

// ipv6 is anchored at ':'. The candidate is the maximal run of hex digits,
// ':' and '.' (at most 45 bytes, not glued to a word, trailing '.' and a
// single trailing ':' dropped) that parses as an IPv6 address, has at least
// two colons, a group of three or more hex digits, and a decimal digit
// unless all eight groups are written. So "2001:db8::1" and "fe80::1" are
// addresses; "::1", "1::2" (slices), "12:30:45" (times), MAC addresses,
// "dead::beef" and "std::vector" are not.
func (sc *scanner) ipv6(c int) {
	w := sc.w
	s := c
	for s > 0 && is(w[s-1], cV6) {
		s--
		if c-s > maxV6 {
			return
		}
	}
	e := c + 1
	for e < len(w) && is(w[e], cV6) {
		e++
		if e-s > maxV6 {
			return
		}
	}
	if e == len(w) && !sc.final {
		sc.need(s)
		return
	}
	sc.v6end = e
	if (s > 0 && is(w[s-1], cWord)) || (e < len(w) && (is(w[e], cWord) || w[e] == '%')) {
		return
	}
	tok := w[s:e]
	for strings.HasPrefix(tok, ".") {
		tok, s = tok[1:], s+1
	}
	tok = strings.TrimRight(tok, ".")
	if strings.HasSuffix(tok, ":") && !strings.HasSuffix(tok, "::") {
		tok = tok[:len(tok)-1]
	}
	if strings.Count(tok, ":") < 2 {
		return
	}
	addr, err := netip.ParseAddr(tok)
	if err != nil || !addr.Is6() {
		return
	}
	long, digit := false, false
	run := 0
	for i := 0; i < len(tok); i++ {
		switch b := tok[i]; {
		case b == ':' || b == '.':
			run = 0
		default:
			run++
			long = long || run >= 3
			digit = digit || isDigit(b)
		}
	}
	full := strings.Count(tok, ":") == 7 && !strings.Contains(tok, "::")
	if long && (digit || full) {
		sc.add(s, s+len(tok), kIP)
	}
}

// ---- PRIVATE_KEY -----------------------------------------------------------

const (
	pemBegin = "-----BEGIN "
	pemEnd   = "-----END "
	maxLabel = 64
)

// pem: "-----BEGIN <label>-----" where the label ends in "PRIVATE KEY" or
// "PRIVATE KEY BLOCK" (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ...). The match
// runs through the first "-----END <label>-----" private-key line, however
// far; with no END line it runs to the end of the text (fail closed).
func (sc *scanner) pem(d int) {
	switch sc.litAt(d, pemBegin) {
	case stNone:
		return
	case stNeed:
		sc.need(d)
		return
	}
	w := sc.w
	j := d + len(pemBegin)
	k := j
	for k < len(w) && (is(w[k], cUpper|cDigit) || w[k] == ' ') && k-j <= maxLabel {
		k++
	}
	if k >= len(w) {
		if !sc.final {
			sc.need(d)
		}
		return
	}
	if k-j > maxLabel || !privateLabel(w[j:k]) {
		return
	}
	switch sc.litAt(k, "-----") {
	case stNone:
		return
	case stNeed:
		sc.need(d)
		return
	}
	sc.open(d, k+5, kPEM, 0)
}

func privateLabel(l string) bool {
	return strings.HasSuffix(l, "PRIVATE KEY") || strings.HasSuffix(l, "PRIVATE KEY BLOCK")
}

// ---- tokens ----------------------------------------------------------------

// maxUnconfirmed bounds how far a token detector reads before giving up.
const maxUnconfirmed = 256

// openai: "sk-" then at least 20 of [A-Za-z0-9_-] including a letter and a
// digit (sk-proj-, sk-svcacct-, sk-admin- and legacy keys). The match is the
// whole run.
func (sc *scanner) openai(s int) {
	w := sc.w
	j := s + 3
	digit, letter := false, false
	for n := 0; ; {
		if j >= len(w) {
			if !sc.final {
				sc.need(s)
			}
			return
		}
		c := w[j]
		if !is(c, cB64URL) || n > maxUnconfirmed {
			return
		}
		n, j = n+1, j+1
		digit = digit || isDigit(c)
		letter = letter || is(c, cAlpha)
		if n >= 20 && digit && letter {
			break
		}
	}
	sc.open(s, j, kOpenAI, 0)
}

// github is anchored at '_': ghp_, gho_, ghu_, ghs_, ghr_ then 30+ of
// [A-Za-z0-9_], or github_pat_ then 22+ of them.
func (sc *scanner) github(u int) {
	w := sc.w
	var s, body, minLen int
	switch {
	case u >= 3 && w[u-3] == 'g' && w[u-2] == 'h' && strings.IndexByte("pousr", w[u-1]) >= 0:
		s, body, minLen = u-3, u+1, 30
	case u >= 6 && w[u-6:u] == "github":
		s, body, minLen = u-6, u+5, 22
	default:
		return
	}
	if !tokenStart(w, s) {
		return
	}
	if minLen == 22 {
		switch sc.litAt(u, "_pat_") {
		case stNone:
			return
		case stNeed:
			sc.need(s)
			return
		}
	}
	j := body
	for j-body < minLen {
		if j >= len(w) {
			if !sc.final {
				sc.need(s)
			}
			return
		}
		if !is(w[j], cWord) {
			return
		}
		j++
	}
	sc.open(s, j, kGitHub, 0)
}

var slackPrefixes = []string{"xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xoxe.xoxp-", "xapp-"}

// slack: xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr-, xoxe-, xoxe.xoxp- or
// xapp- then 10+ of [A-Za-z0-9-] including a digit.
func (sc *scanner) slack(s int) {
	w := sc.w
	j := -1
	undecided := false
	for _, p := range slackPrefixes {
		switch sc.litAt(s, p) {
		case stMatch:
			j = s + len(p)
		case stNeed:
			undecided = true
		}
	}
	if j < 0 {
		if undecided {
			sc.need(s)
		}
		return
	}
	body, digit := j, false
	for j-body < 10 || !digit {
		if j >= len(w) {
			if !sc.final {
				sc.need(s)
			}
			return
		}
		if !is(w[j], cDomain) || j-body > maxUnconfirmed {
			return
		}
		digit = digit || isDigit(w[j])
		j++
	}
	sc.open(s, j, kSlack, 0)
}

// google: "AIza" then 35+ of [A-Za-z0-9_-].
func (sc *scanner) google(s int) {
	switch sc.litAt(s, "AIza") {
	case stNone:
		return
	case stNeed:
		sc.need(s)
		return
	}
	w := sc.w
	j := s + 4
	for j-s-4 < 35 {
		if j >= len(w) {
			if !sc.final {
				sc.need(s)
			}
			return
		}
		if !is(w[j], cB64URL) {
			return
		}
		j++
	}
	sc.open(s, j, kGoogle, 0)
}

var awsPrefixes = []string{"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA", "ASCA"}

var awsPrefix = func() map[string]bool {
	m := map[string]bool{}
	for _, p := range awsPrefixes {
		m[p] = true
	}
	return m
}()

// aws: an access key id, a known four-letter prefix (AKIA, ASIA, ...) and
// 16 of [A-Z0-9], not followed by a letter or digit.
func (sc *scanner) aws(s int) {
	w := sc.w
	if s+4 <= len(w) {
		if !awsPrefix[w[s:s+4]] {
			return
		}
		sc.awsBody(s)
		return
	}
	ok, undecided := false, false
	for _, p := range awsPrefixes {
		switch sc.litAt(s, p) {
		case stMatch:
			ok = true
		case stNeed:
			undecided = true
		}
	}
	if !ok {
		if undecided {
			sc.need(s)
		}
		return
	}
	sc.awsBody(s)
}

func (sc *scanner) awsBody(s int) {
	w := sc.w
	for j := s + 4; j <= s+20; j++ {
		if j >= len(w) {
			if !sc.final {
				sc.need(s)
				return
			}
			if j < s+20 {
				return
			}
			break
		}
		if j == s+20 {
			if is(w[j], cAlnum) {
				return
			}
			break
		}
		if !is(w[j], cUpper|cDigit) {
			return
		}
	}
	sc.add(s, s+20, kAWS)
}

// jwt: a base64url header that decodes to a JSON object with "alg", a '.',
// and a payload starting "eyJ" (a JSON object); the match runs through the
// payload and the signature segment. A trailing '.' (unsigned token) is
// left outside the match.
func (sc *scanner) jwt(s int) {
	w := sc.w
	j := s
	for j < len(w) && is(w[j], cB64URL) {
		j++
		if j-s > maxJWTHeader {
			return
		}
	}
	if j >= len(w) {
		if !sc.final {
			sc.need(s)
		}
		return
	}
	if w[j] != '.' || !jwtHeader(w[s:j]) {
		return
	}
	switch sc.litAt(j+1, "eyJ") {
	case stNone:
		return
	case stNeed:
		sc.need(s)
		return
	}
	sc.open(s, j+4, kJWT, 1)
}

func jwtHeader(seg string) bool {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return false
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(b, &h) != nil {
		return false
	}
	_, ok := h["alg"]
	return ok
}

// ---- open-ended matches -----------------------------------------------------

// extend continues an open-ended match of kind over text, from extender
// state st. It returns how many bytes of text belong to the match and
// whether the match ended there. When it has not ended, text[n:] (a few
// bytes at most) must be presented again, followed by more text.
func extend(kind, st int, text string, final bool) (n, st2 int, done bool) {
	switch kind {
	case kPEM:
		n, done = extendPEM(text, final)
		return n, st, done
	case kJWT:
		return extendJWT(st, text, final)
	case kGitHub:
		n, done = extendRun(text, cWord, final)
	case kSlack:
		n, done = extendRun(text, cDomain, final)
	default: // kOpenAI, kGoogle
		n, done = extendRun(text, cB64URL, final)
	}
	return n, st, done
}

func extendRun(text string, c uint16, final bool) (int, bool) {
	n := 0
	for n < len(text) && is(text[n], c) {
		n++
	}
	return n, n < len(text) || final
}

// extendJWT: st is the index of the current segment (1 payload, 2 signature).
func extendJWT(st int, text string, final bool) (int, int, bool) {
	n := 0
	for {
		for n < len(text) && is(text[n], cB64URL) {
			n++
		}
		if n == len(text) {
			return n, st, final
		}
		if text[n] != '.' || st >= 2 {
			return n, st, true
		}
		if n+1 == len(text) {
			return n, st, final
		}
		if !is(text[n+1], cB64URL) {
			return n, st, true
		}
		n, st = n+1, st+1
	}
}

func extendPEM(text string, final bool) (int, bool) {
	for i := 0; ; {
		k := strings.Index(text[i:], pemEnd)
		if k < 0 {
			break
		}
		e := i + k
		j := e + len(pemEnd)
		l := j
		for l < len(text) && (is(text[l], cUpper|cDigit) || text[l] == ' ') && l-j <= maxLabel {
			l++
		}
		if l >= len(text) && !final {
			return e, false
		}
		if l-j <= maxLabel && privateLabel(text[j:l]) {
			n := min(len(text)-l, 5)
			if text[l:l+n] == "-----"[:n] {
				if n == 5 {
					return l + 5, true
				}
				if !final {
					return e, false
				}
			}
		}
		i = e + 1
	}
	if final {
		return len(text), true
	}
	for k := min(len(pemEnd)-1, len(text)); k > 0; k-- {
		if strings.HasSuffix(text, pemEnd[:k]) {
			return len(text) - k, false
		}
	}
	return len(text), false
}
